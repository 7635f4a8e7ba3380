//! The cache key sees what the compiler sees: edit one thing a step depends on, rebuild
//! with cargo, rerun, and exactly the steps that depend on it re-execute, with the new
//! value and a reason naming the cause; nothing else does.
//!
//! One small crate (`rebuildcase`, written to a temp dir) has a step per dependency kind:
//! included files (small and large, and one a helper includes), a `build.rs` output read
//! with `include!`, `env!` and
//! `option_env!`, `cfg!` and `#[cfg]` in the body, a `#[cfg]`-switched helper, declared
//! helpers of every kind (`macro_rules!`, `const`, `static`, an inherent `impl`, a `Display`
//! impl called through a generic helper), a constant the body names without declaring it,
//! a path dependency's version (`deps = [..]`) and its `#[helper]`, the build profile, the
//! whole source file, and the crate-wide settings in `Cargo.toml`. Each phase edits, rebuilds
//! (only that crate: its dependencies are compiled once, in a target dir kept between test
//! runs) and runs it against the same store.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CARGO_TOML: &str = r#"[package]
name = "rebuildcase"
version = "0.0.0"
edition = "2021"
publish = false

[features]
fast = []

[dependencies]
pipeline = { package = "cached-pipeline", path = "@WORKSPACE@" }
localdep = { path = "localdep" }

[workspace]
"#;

const LOCALDEP_TOML: &str = r#"[package]
name = "localdep"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
pipeline = { package = "cached-pipeline", path = "@WORKSPACE@" }
"#;

const LOCALDEP_LIB: &str = r#"use pipeline::prelude::*;

/// A path dependency marks its own functions `#[helper]`.
#[helper]
pub fn k() -> u32 {
    7
}
"#;

const BUILD_RS: &str = r#"fn main() {
    println!("cargo::rerun-if-changed=gen_input.txt");
    let input = std::fs::read_to_string("gen_input.txt").unwrap();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("gen.rs");
    std::fs::write(out, input.trim()).unwrap();
}
"#;

const MAIN_RS: &str = r#"use std::fmt;

use pipeline::prelude::*;

mod coarse;

// Not declared anywhere: the step names it, so its value is part of the signature.
const OFFSET: u32 = 5;

#[helper]
macro_rules! factor {
    ($x:expr) => {
        $x * 3
    };
}

#[helper]
const LIMIT: u32 = 30;

#[helper]
static RATE: u32 = 20;

#[cfg(feature = "fast")]
#[helper]
fn pace() -> u32 {
    6
}

#[cfg(not(feature = "fast"))]
#[helper]
fn pace() -> u32 {
    105
}

pub struct Meter(u32);

#[helper(name = meter_methods)]
impl Meter {
    fn read(&self) -> u32 {
        self.0 * 2
    }
}

#[helper(name = meter_display)]
impl fmt::Display for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} m", self.0)
    }
}

#[helper(uses = [meter_display])]
fn show<T: fmt::Display>(t: T) -> String {
    format!("[{t}]")
}

// A helper's own includes are parts of the steps that use it.
#[helper]
fn table() -> &'static str {
    include_str!("../data/table.txt").trim()
}

#[step]
fn small_file(x: u32) -> String {
    include_str!("../data/small.txt").trim().to_string() + &"".repeat(x as usize)
}

#[step]
fn big_file(x: u32) -> String {
    (include_bytes!("../data/big.bin")[0] as u32 + x * 0).to_string()
}

#[step]
fn generated(x: u32) -> String {
    let n: u32 = include!(concat!(env!("OUT_DIR"), "/gen.rs"));
    (n + x * 0).to_string()
}

#[step(uses = [table])]
fn helper_file(x: u32) -> String {
    format!("{}{}", table(), "".repeat(x as usize))
}

#[step]
fn env_mode(x: u32) -> String {
    format!("{}{}", env!("RB_MODE"), "".repeat(x as usize))
}

#[step]
fn env_optional(x: u32) -> String {
    format!("{}{}", option_env!("RB_EXTRA").unwrap_or("unset"), "".repeat(x as usize))
}

#[step]
fn cfg_macro(x: u32) -> String {
    let speed = if cfg!(feature = "fast") { "fast" } else { "slow" };
    format!("{speed}{}", "".repeat(x as usize))
}

#[step]
fn cfg_attr(x: u32) -> String {
    #[cfg(feature = "fast")]
    let n = 1;
    #[cfg(not(feature = "fast"))]
    let n = 10;
    (n + x * 0).to_string()
}

#[step(uses = [pace])]
fn cfg_helper(x: u32) -> String {
    (pace() + x * 0).to_string()
}

#[step(uses = [factor!])]
fn macro_step(x: u32) -> String {
    factor!(10 + x * 0).to_string()
}

#[step(uses = [LIMIT])]
fn const_step(x: u32) -> String {
    (LIMIT + x * 0).to_string()
}

#[step(uses = [RATE])]
fn static_step(x: u32) -> String {
    (RATE + x * 0).to_string()
}

#[step]
fn value_step(x: u32) -> String {
    (OFFSET + x * 0).to_string()
}

#[step(uses = [meter_methods])]
fn method_step(x: u32) -> String {
    Meter(6 + x * 0).read().to_string()
}

#[step(uses = [show])]
fn generic_step(x: u32) -> String {
    show(Meter(9 + x * 0))
}

#[step(deps = [localdep])]
fn dep_version(x: u32) -> String {
    (localdep::k() + x * 0).to_string()
}

#[step(uses = [localdep::k])]
fn dep_helper(x: u32) -> String {
    (localdep::k() * 10 + x * 0).to_string()
}

#[step(build_profile = true)]
fn profiled(x: u32) -> String {
    (if cfg!(debug_assertions) { "debug" } else { "release" }).to_string() + &"".repeat(x as usize)
}

#[pipeline]
fn all(x: u32) {
    small_file(x);
    big_file(x);
    generated(x);
    helper_file(x);
    env_mode(x);
    env_optional(x);
    cfg_macro(x);
    cfg_attr(x);
    cfg_helper(x);
    macro_step(x);
    const_step(x);
    static_step(x);
    value_step(x);
    method_step(x);
    generic_step(x);
    dep_version(x);
    dep_helper(x);
    profiled(x);
    coarse::whole_file(x);
    coarse::plain(x);
}

fn main() {
    let store_path = std::env::args().nth(1).expect("store path");
    let run = all(0).store_path(&store_path).run().expect("run");
    let store = Store::open(&store_path).expect("store");
    for s in run.steps() {
        let value: String = store.load(run.id(), s.name(), "output").expect("load");
        println!("{}\t{}\t{}\t{}", s.name(), s.status(), value, s.reason());
    }
}
"#;

const COARSE_RS: &str = r#"use pipeline::prelude::*;

// A comment that the source-file phase edits.

#[step(source_file = true)]
pub fn whole_file(x: u32) -> String {
    (1 + x * 0).to_string()
}

#[step]
pub fn plain(x: u32) -> String {
    (2 + x * 0).to_string()
}
"#;

/// One step's line of output.
#[derive(Debug)]
struct Outcome {
    status: String,
    value: String,
    reason: String,
}

struct Case {
    dir: PathBuf,
    target: PathBuf,
    store: PathBuf,
    features: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
        fs::write(path, text).expect("write");
    }

    fn edit(&self, path: &str, from: &str, to: &str) {
        let file = self.dir.join(path);
        let text = fs::read_to_string(&file).expect("read");
        assert!(text.contains(from), "`{from}` not in {path}");
        fs::write(file, text.replacen(from, to, 1)).expect("write");
    }

    /// Rebuilds the crate (making sure cargo recompiles it) and runs it.
    fn run(&self, phase: &str) -> BTreeMap<String, Outcome> {
        // A new mtime makes cargo recompile the crate even when no tracked input changed:
        // the point of the no-edit phases is what a recompilation does.
        let main = self.dir.join("src/main.rs");
        let text = fs::read(&main).expect("read");
        fs::write(&main, text).expect("touch");
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "--quiet", "--offline"])
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("RB_EXTRA")
            .env_remove("RB_OTHER");
        if !self.features.is_empty() {
            build.args(["--features", &self.features.join(",")]);
        }
        for (k, v) in &self.env {
            build.env(k, v);
        }
        let out = build.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "phase `{phase}`: cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(self.target.join("debug").join("rebuildcase"))
            .arg(&self.store)
            .output()
            .expect("binary runs");
        assert!(
            out.status.success(),
            "phase `{phase}`: run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Shown with the failure of any later assertion.
        eprintln!("phase `{phase}`:\n{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(4, '\t');
                let name = fields.next()?.to_string();
                Some((
                    name,
                    Outcome {
                        status: fields.next()?.to_string(),
                        value: fields.next()?.to_string(),
                        reason: fields.next()?.to_string(),
                    },
                ))
            })
            .collect()
    }
}

/// Asserts that exactly `expected` steps executed, each with its value and reason; every
/// other step was reused.
fn assert_executed(
    phase: &str,
    outcomes: &BTreeMap<String, Outcome>,
    expected: &[(&str, &str, &str)],
) {
    assert_eq!(outcomes.len(), 20, "phase `{phase}`: {outcomes:#?}");
    for (name, outcome) in outcomes {
        match expected.iter().find(|(n, _, _)| n == name) {
            Some((_, value, reason)) => {
                assert_eq!(
                    outcome.status, "executed",
                    "phase `{phase}`: `{name}` should re-execute: {outcome:?}"
                );
                assert_eq!(outcome.value, *value, "phase `{phase}`: `{name}`");
                assert_eq!(outcome.reason, *reason, "phase `{phase}`: `{name}`");
            }
            None => assert_eq!(
                outcome.status, "cached",
                "phase `{phase}`: `{name}` should stay cached: {outcome:?}"
            ),
        }
    }
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn each_kind_of_edit_re_executes_exactly_its_steps_with_the_cause_named() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut case = Case {
        dir: temp.path().join("rebuildcase"),
        // Kept between runs of this test, so the dependencies compile once.
        target: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rebuild-target"),
        store: temp.path().join("store"),
        features: Vec::new(),
        env: vec![("RB_MODE", "alpha")],
    };
    let ws = workspace().display().to_string();
    case.write("Cargo.toml", &CARGO_TOML.replace("@WORKSPACE@", &ws));
    case.write(
        "localdep/Cargo.toml",
        &LOCALDEP_TOML.replace("@WORKSPACE@", &ws),
    );
    case.write("localdep/src/lib.rs", LOCALDEP_LIB);
    case.write("build.rs", BUILD_RS);
    case.write("gen_input.txt", "30");
    case.write("src/main.rs", MAIN_RS);
    case.write("src/coarse.rs", COARSE_RS);
    case.write("data/small.txt", "3");
    case.write("data/table.txt", "a,b");
    // Over 4 KiB: hashed at run time, not in the compile-time `SIGNATURE`.
    let mut big = vec![17u8; 6000];
    case.write("data/unused.txt", "no step includes this");
    fs::write(case.dir.join("data/big.bin"), &big).expect("write");
    // The workspace's lock file pins the same versions, so nothing is fetched.
    fs::copy(workspace().join("Cargo.lock"), case.dir.join("Cargo.lock")).expect("copy lock");

    let first = case.run("first");
    assert!(first.values().all(|o| o.status == "executed"), "{first:#?}");
    assert_eq!(first["small_file"].value, "3");
    assert_eq!(first["generated"].value, "30");
    assert_eq!(first["cfg_helper"].value, "105");
    assert_eq!(first["generic_step"].value, "[9 m]");

    // Nothing changed: a recompilation alone re-executes nothing.
    assert_executed("no edit", &case.run("no edit"), &[]);

    // A file no step includes, and an environment variable no step reads.
    case.write("data/unused.txt", "edited, still unused");
    case.env = vec![("RB_MODE", "alpha"), ("RB_OTHER", "1")];
    assert_executed("unrelated", &case.run("unrelated"), &[]);
    case.env = vec![("RB_MODE", "alpha")];

    // Included files: small (hashed at compile time), large (at run time), and a
    // `build.rs` output read with `include!`.
    case.write("data/small.txt", "5");
    big[0] = 31;
    fs::write(case.dir.join("data/big.bin"), &big).expect("write");
    case.write("gen_input.txt", "40");
    case.write("data/table.txt", "a,b,c");
    assert_executed(
        "included files",
        &case.run("included files"),
        &[
            (
                "small_file",
                "5",
                "included file `../data/small.txt` changed",
            ),
            ("big_file", "31", "included file `../data/big.bin` changed"),
            (
                "generated",
                "40",
                "included file `concat!(env!(\"OUT_DIR\"), \"/gen.rs\")` changed",
            ),
            (
                "helper_file",
                "a,b,c",
                "included file `../data/table.txt` in helper `table` changed",
            ),
        ],
    );

    // Build-time environment variables.
    case.env = vec![("RB_MODE", "beta"), ("RB_EXTRA", "set")];
    assert_executed(
        "env",
        &case.run("env"),
        &[
            ("env_mode", "beta", "env!(RB_MODE) changed"),
            ("env_optional", "set", "env!(RB_EXTRA) changed"),
        ],
    );

    // A feature switched on: `cfg!`, `#[cfg]` lines, and a `#[cfg]`-switched helper.
    case.features = vec!["fast"];
    assert_executed(
        "features",
        &case.run("features"),
        &[
            (
                "cfg_macro",
                "fast",
                "cfg(feature = \"fast\") changed (false -> true)",
            ),
            (
                "cfg_attr",
                "1",
                // Both predicates in the body flipped: the reason lists each.
                "cfg(feature = \"fast\") changed (false -> true); \
                 cfg(not(feature = \"fast\")) changed (true -> false)",
            ),
            ("cfg_helper", "6", "helper `pace` changed"),
        ],
    );

    // Declared helpers: a macro, a `const`, a `static`; and a constant the body names.
    case.edit("src/main.rs", "$x * 3", "$x * 4");
    case.edit(
        "src/main.rs",
        "const LIMIT: u32 = 30;",
        "const LIMIT: u32 = 50;",
    );
    case.edit(
        "src/main.rs",
        "static RATE: u32 = 20;",
        "static RATE: u32 = 110;",
    );
    case.edit(
        "src/main.rs",
        "const OFFSET: u32 = 5;",
        "const OFFSET: u32 = 8;",
    );
    assert_executed(
        "macro, const, static",
        &case.run("macro, const, static"),
        &[
            ("macro_step", "40", "helper `factor!` changed"),
            // A declared constant's tokens and its value both changed: both are listed.
            (
                "const_step",
                "50",
                "helper `LIMIT` changed; value of helper `LIMIT` changed",
            ),
            (
                "static_step",
                "110",
                "helper `RATE` changed; value of helper `RATE` changed",
            ),
            ("value_step", "8", "value of `OFFSET` changed"),
        ],
    );

    // Impl blocks: an inherent method, and a `Display` impl reached through a generic
    // helper that declares it.
    case.edit("src/main.rs", "self.0 * 2", "self.0 * 3");
    case.edit("src/main.rs", "\"{} m\"", "\"{} metres\"");
    assert_executed(
        "impls",
        &case.run("impls"),
        &[
            ("method_step", "18", "helper `meter_methods` changed"),
            (
                "generic_step",
                "[9 metres]",
                "helper `meter_display` changed",
            ),
        ],
    );

    // A path dependency: its locked version (`deps`) and its own `#[helper]`.
    case.edit("localdep/Cargo.toml", "0.1.0", "0.1.1");
    case.edit("localdep/src/lib.rs", "    7", "    8");
    assert_executed(
        "dependency",
        &case.run("dependency"),
        &[
            ("dep_version", "8", "dependency `localdep` 0.1.0 -> 0.1.1"),
            ("dep_helper", "80", "helper `localdep::k` changed"),
        ],
    );

    // The build profile: debug assertions off (as in a release build) for this crate only.
    case.edit(
        "Cargo.toml",
        "[workspace]",
        "[workspace]\n\n[profile.dev.package.rebuildcase]\ndebug-assertions = false",
    );
    assert_executed(
        "profile",
        &case.run("profile"),
        &[(
            "profiled",
            "release",
            // Its body reads `cfg!(debug_assertions)` too, which is listed as well.
            "build profile changed (debug -> release); \
             cfg(debug_assertions) changed (true -> false)",
        )],
    );

    // The coarse safety net: any edit to the file, even a comment.
    case.edit("src/coarse.rs", "A comment", "An edited comment");
    assert_executed(
        "source file",
        &case.run("source file"),
        &[("whole_file", "1", "source file `src/coarse.rs` changed")],
    );

    // Crate-wide settings: editing `Cargo.toml` alone rebuilds (the macros include it), and
    // the setting applies to every step (`profiled` has its own).
    case.edit(
        "Cargo.toml",
        "[features]",
        "[package.metadata.pipeline]\nbuild_profile = true\n\n[features]",
    );
    let outcomes = case.run("crate-wide");
    for (name, outcome) in &outcomes {
        if name == "profiled" {
            assert_eq!(outcome.status, "cached", "{outcome:?}");
        } else {
            assert_eq!(outcome.status, "executed", "{name}: {outcome:?}");
            assert_eq!(outcome.reason, "build profile added (release)", "{name}");
        }
    }
}
