//! A store with a three-run history of a small pipeline, and helpers to run the binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

#[path = "../support/mod.rs"]
mod support;
pub use support::*;

use pipeline::prelude::*;

#[step]
fn source(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

/// The first version of `scale`.
pub mod v1 {
    use pipeline::prelude::*;

    #[step(name = "scale")]
    pub fn scale(xs: &[f64], factor: f64) -> Vec<f64> {
        xs.iter().map(|x| x * factor).collect()
    }
}

/// The same step with one token changed: a new code signature (and new output bytes).
pub mod v2 {
    use pipeline::prelude::*;

    #[step(name = "scale")]
    pub fn scale(xs: &[f64], factor: f64) -> Vec<f64> {
        xs.iter().map(|x| x * factor + 1.0).collect()
    }
}

#[step]
fn total(xs: &[f64]) -> f64 {
    xs.iter().sum()
}

#[pipeline(name = "numbers")]
fn numbers_v1(factor: f64) -> Artifact<f64> {
    let xs = source(5);
    let scaled = v1::scale(&xs, factor);
    total(&scaled)
}

#[pipeline(name = "numbers")]
fn numbers_v2(factor: f64) -> Artifact<f64> {
    let xs = source(5);
    let scaled = v2::scale(&xs, factor);
    total(&scaled)
}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the measurement failed")
    }
}

impl std::error::Error for Broken {}

#[step]
fn measure(xs: &[f64]) -> Result<f64, Broken> {
    if xs.is_empty() {
        Ok(0.0)
    } else {
        Err(Broken)
    }
}

#[step]
fn report(value: &f64, xs: &[f64]) -> String {
    format!("{value} over {} values", xs.len())
}

#[step(outputs(low, high))]
fn split(xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = xs.split_at(xs.len() / 2);
    (a.to_vec(), b.to_vec())
}

#[pipeline(name = "fragile")]
fn fragile() -> (Artifact<String>, Artifact<f64>) {
    let xs = source(4);
    let parts = split(&xs);
    let m = measure(&parts.low);
    let r = report(&m, &parts.high);
    let t = total(&parts.high);
    (r, t)
}

#[step]
fn shift(xs: &[f64], k: u32) -> Vec<f64> {
    xs.iter().map(|x| x + f64::from(k)).collect()
}

/// A map over `n` values: one `shift` per item, gathered (`shift[0]`, `shift[1]`, ...).
#[pipeline(name = "mapped")]
fn mapped(n: u32) -> Artifact<Vec<Vec<f64>>> {
    let xs = source(3);
    let ks = numbers_up_to(n);
    ks.map(|k| shift(&xs, k))
}

#[step]
fn numbers_up_to(n: u32) -> Vec<u32> {
    (0..n).collect()
}

/// Runs `mapped(n)` as run `name` in the store at `path`.
pub fn run_mapped(path: &Path, n: u32, name: &str) {
    mapped(n)
        .store_path(path)
        .run_name(name)
        .run()
        .expect("mapped run");
}

/// A model's score for `k`: best at 1.
#[step]
fn fit(k: u32) -> f64 {
    1.0 / (1.0 + (f64::from(k) - 1.0).abs())
}

#[step]
fn select_best(all: &[f64]) -> f64 {
    all.iter().copied().fold(f64::MIN, f64::max)
}

/// A sweep fanned in: one `fit` per value of `ks` (`fit`, `fit_2`, ...), all of them passed
/// to `select_best(&all)` through the built-in `pipeline.gather`.
#[pipeline(name = "fan_in")]
fn fan_in(ks: Vec<u32>) -> Artifact<f64> {
    let all: Vec<Artifact<f64>> = ks.into_iter().map(fit).collect();
    select_best(&all)
}

/// Runs the `fan_in` pipeline over `ks` as run `name` in the store at `path`.
pub fn run_fan_in(path: &Path, ks: &[u32], name: &str) {
    fan_in(ks.to_vec())
        .store_path(path)
        .run_name(name)
        .run()
        .expect("fan-in run");
}

/// One `shift` call per value of `ks`: calls `shift`, `shift_2`, ... in a loop.
#[pipeline(name = "sweep")]
fn sweep(ks: Vec<u32>) -> Vec<Artifact<Vec<f64>>> {
    let xs = source(3);
    ks.into_iter().map(|k| shift(&xs, k)).collect()
}

/// The `sweep` with each call labelled by its value (`shift[k]`), and each result
/// summed by an unlabelled `total`.
#[pipeline(name = "sweep")]
fn labelled_sweep(ks: Vec<u32>) -> Vec<Artifact<f64>> {
    let xs = source(3);
    ks.into_iter()
        .map(|k| total(&shift(&xs, k).named(format!("shift[{k}]"))))
        .collect()
}

/// Runs the `labelled_sweep` pipeline over `ks` as run `name` in the store at `path`.
pub fn run_labelled_sweep(path: &Path, ks: &[u32], name: &str) {
    labelled_sweep(ks.to_vec())
        .store_path(path)
        .run_name(name)
        .run()
        .expect("labelled sweep run");
}

/// Runs the `sweep` pipeline over `ks` as run `name` in the store at `path`.
pub fn run_sweep(path: &Path, ks: &[u32], name: &str) {
    sweep(ks.to_vec())
        .store_path(path)
        .run_name(name)
        .run()
        .expect("sweep run");
}

/// Runs the second version of `numbers` with `factor` as run `name` in the store at `path`.
pub fn run_numbers(path: &Path, factor: f64, name: &str) {
    numbers_v2(factor)
        .store_path(path)
        .run_name(name)
        .run()
        .expect("numbers run");
}

/// Run names of the history, oldest first.
pub const RUNS: [&str; 3] = ["run-alpha", "run-beta", "run-gamma"];

/// A store (kept for the whole test binary) with three runs of `numbers`:
///
/// 1. `run-alpha`: v1 of `scale`, factor 2.0: everything executes;
/// 2. `run-beta`: v2 of `scale` (code changed), factor 2.0: `source` cached, `scale` and
///    `total` execute;
/// 3. `run-gamma`: v2, factor 3.0 (parameter changed): `source` cached, the rest executes.
pub fn history() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let path = fresh_dir("history").join("store");
        build_history(&path);
        path
    })
}

/// Makes the three runs of [`history`] in a new store at `path`.
pub fn build_history(path: &Path) {
    build_history_in(Store::open(path).expect("open store"));
}

/// Makes the three runs of [`history`] in `store`.
pub fn build_history_in(store: Store) {
    numbers_v1(2.0)
        .store(store.clone())
        .run_name(RUNS[0])
        .run()
        .expect("run 1");
    numbers_v2(2.0)
        .store(store.clone())
        .run_name(RUNS[1])
        .run()
        .expect("run 2");
    numbers_v2(3.0)
        .store(store)
        .run_name(RUNS[2])
        .run()
        .expect("run 3");
}

/// A store with one failed run of `fragile`: `measure` fails, `report` is skipped, `total`
/// still executes.
pub fn failed_store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let path = fresh_dir("failed").join("store");
        let err = fragile()
            .store_path(&path)
            .run_name("broken-run")
            .run()
            .expect_err("measure fails");
        assert!(err.to_string().contains("measure"), "{err}");
        path
    })
}

/// What one run of the binary did.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Asserts success and returns standard output.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Asserts exit code 2 with no panic, and returns standard error.
    pub fn fails(self) -> String {
        assert_eq!(
            self.code,
            Some(2),
            "expected exit code 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        self.stderr
    }

    pub fn json(self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }
}

/// Runs `pipeline --store STORE ARGS..` with PIPELINE_HOME unset.
pub fn cli(store: &Path, args: &[&str]) -> Ran {
    let mut all = vec![OsStr::new("--store"), store.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run_raw(&all, None, None)
}

/// Runs the binary with exactly these arguments, in `cwd`, with `PIPELINE_HOME` set to
/// `home` (or unset).
pub fn run_raw(args: &[&std::ffi::OsStr], cwd: Option<&Path>, home: Option<&Path>) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.args(args).env_remove("PIPELINE_HOME");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some(home) = home {
        cmd.env("PIPELINE_HOME", home);
    }
    output(cmd)
}

/// Runs the binary with these arguments and environment variables set (the store's
/// variables unset unless given).
pub fn run_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.args(args);
    for var in ["PIPELINE_HOME", "PIPELINE_METADATA", "PIPELINE_ARTIFACTS"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    output(cmd)
}

fn output(mut cmd: Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run the pipeline binary");
    Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
