//! Measures the library's own cost against plain-Rust baselines, side by side in one process
//! run, and prints one table (the figures of issue 7; see BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --example perf                 # all figures, under 3 minutes on 2 cores
//! cargo run --release --example perf -- --no-compile # skip figure 7 (compile time)
//! cargo run --release --example perf -- --dir PATH   # keep the stores in PATH (default: a temp dir)
//! cargo run --release --example perf -- --only 1,5   # only figures 1 and 5
//! cargo run --release --example perf --features tokio -- --only 17  # async steps
//! eval "$(scripts/services.sh start)"; cargo run --release --example perf -- --only 11,12,14
//!                                                    # S3, PostgreSQL and Slurm figures
//! ```
//!
//! Every figure is measured against its own baseline in the same run, repeated, and reported
//! as a median (or a minimum for the long, I/O-bound ones): these machines are shared and
//! noisy, so ratios are what to compare, not absolute times.

#[path = "common/digits.rs"]
mod digits;
#[path = "common/digits_pipeline.rs"]
mod digits_pipeline;
#[path = "common/trivial.rs"]
mod trivial;

use trivial::{chain, fan, inc, seed};

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::cacher::Raw;
use pipeline::prelude::*;
use pipeline::store::HashingWriter;

// ---------------------------------------------------------------------------------------
// Steps and pipelines under test.

fn make_floats(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 1024) as f32).collect()
}

/// Figures 2 and 3: a `Vec<f32>` of `n` values.
#[step]
fn floats(n: usize) -> Vec<f32> {
    make_floats(n)
}

#[step]
fn halve(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v * 0.5).collect()
}

#[step]
fn shift(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v + 1.0).collect()
}

/// Figure 2: three steps, each with an output of `n` floats.
#[pipeline]
fn float_chain(n: usize) -> Artifact<Vec<f32>> {
    let a = floats(n);
    let b = halve(&a);
    shift(&b)
}

/// Figure 3: one step with an output of `n` floats.
#[pipeline]
fn one_output(n: usize) -> Artifact<Vec<f32>> {
    floats(n)
}

fn spin_work(iters: u64, tag: u64) -> u64 {
    let mut x = tag.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Figure 8: a `Vec<f64>` stored by the raw cacher.
#[step(cacher = Raw)]
fn doubles(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.5).collect()
}

#[pipeline]
fn raw_output(n: usize) -> Artifact<Vec<f64>> {
    doubles(n)
}

/// Figure 6: a CPU-bound step.
#[step(enable_cache = false)]
fn spin(iters: u64, tag: u64) -> u64 {
    spin_work(iters, tag)
}

#[pipeline]
fn two_spins(iters: u64) -> (Artifact<u64>, Artifact<u64>) {
    (spin(iters, 1), spin(iters, 2))
}

/// Figure 16: a list of `n` numbers, mapped with one step per item.
#[step]
fn numbers_up_to(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[step]
fn plus_one(x: &u64) -> u64 {
    x + 1
}

#[pipeline]
fn mapped(n: u64) -> Artifact<Vec<u64>> {
    numbers_up_to(n).map(|x| plus_one(x))
}

// ---------------------------------------------------------------------------------------
// Measuring helpers.

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} us", s * 1e6)
    } else {
        format!("{:.1} ns", s * 1e9)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

struct Row {
    figure: String,
    measured: String,
    baseline: String,
    ratio: String,
    goal: String,
    met: Option<bool>,
}

struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn add(
        &mut self,
        figure: impl Into<String>,
        measured: impl Into<String>,
        baseline: impl Into<String>,
        ratio: impl Into<String>,
        goal: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            figure: figure.into(),
            measured: measured.into(),
            baseline: baseline.into(),
            ratio: ratio.into(),
            goal: goal.into(),
            met,
        };
        // Progress on stderr, so a slow figure shows which one it is.
        eprintln!(
            "  {}: {} vs {} ({})",
            row.figure, row.measured, row.baseline, row.ratio
        );
        self.rows.push(row);
    }

    fn print(&self) {
        let widths = [
            self.rows
                .iter()
                .map(|r| r.figure.len())
                .max()
                .unwrap_or(0)
                .max(6),
            self.rows
                .iter()
                .map(|r| r.measured.len())
                .max()
                .unwrap_or(0)
                .max(8),
            self.rows
                .iter()
                .map(|r| r.baseline.len())
                .max()
                .unwrap_or(0)
                .max(8),
            self.rows
                .iter()
                .map(|r| r.ratio.len())
                .max()
                .unwrap_or(0)
                .max(5),
            self.rows
                .iter()
                .map(|r| r.goal.len())
                .max()
                .unwrap_or(0)
                .max(4),
        ];
        let line = |cells: [&str; 6]| {
            println!(
                "| {:<w0$} | {:>w1$} | {:>w2$} | {:>w3$} | {:<w4$} | {:<4} |",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[5],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            )
        };
        line(["figure", "measured", "baseline", "ratio", "goal", "met"]);
        println!(
            "|{}|{}|{}|{}|{}|------|",
            "-".repeat(widths[0] + 2),
            "-".repeat(widths[1] + 2),
            "-".repeat(widths[2] + 2),
            "-".repeat(widths[3] + 2),
            "-".repeat(widths[4] + 2),
        );
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            line([&r.figure, &r.measured, &r.baseline, &r.ratio, &r.goal, met]);
        }
    }
}

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `p` (expected to be fully cached) and checks that no step executed.
fn cached_run<O: pipeline::PipelineOutput>(p: &Pipeline<O>) -> AnyResult<Duration> {
    let (d, run) = time(|| p.run());
    let run = run?;
    if let Some(s) = run
        .steps()
        .iter()
        .find(|s| s.status() != StepStatus::Cached)
    {
        return Err(format!("step `{}` was not cached: {}", s.name(), s.reason()).into());
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------
// The figures.

/// Figure 1: cached step overhead per step, chains of 10, 100 and 1000 trivial steps.
fn figure_1(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let store = Store::open(dir.join("chains"))?;
    // The 10- and 100-step chains are prefixes of the 1000-step one (same keys), so one
    // executed run of the longest chain fills the cache for all three.
    chain(1000).store(store.clone()).max_parallelism(8).run()?;
    for (n, reps) in [(10usize, 60), (100, 30), (1000, 15)] {
        let p = chain(n).store(store.clone());
        cached_run(&p)?; // warm-up
        let mut ours = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..reps {
            ours.push(cached_run(&p)?);
            plain.push(
                time(|| {
                    // Each call goes through black_box so the chain is not folded away.
                    let mut x = seed::call(black_box(0));
                    for _ in 1..n {
                        x = inc::call(black_box(&x));
                    }
                    black_box(x)
                })
                .0,
            );
        }
        let per_step = median(ours).as_secs_f64() / n as f64;
        let plain_per_step = median(plain).as_secs_f64() / n as f64;
        let (goal, met) = if n == 1000 {
            ("<= 10 us/step", Some(per_step <= 10e-6))
        } else {
            ("", None)
        };
        table.add(
            format!("1. cached step, chain of {n}"),
            format!("{:.2} us/step", per_step * 1e6),
            format!("{:.1} ns/call", plain_per_step * 1e9),
            fmt_ratio(per_step / plain_per_step.max(1e-12)),
            goal,
            met,
        );
    }
    Ok(())
}

const MB: usize = 1 << 20;

/// Figure 2: fully cached run with 1 KB outputs vs 256 MB outputs.
fn figure_2(table: &mut Table, dir: &Path, big_floats: usize) -> AnyResult<()> {
    let store = Store::open(dir.join("sizes"))?;
    let small = float_chain(256).store(store.clone());
    let big = float_chain(big_floats).store(store.clone());
    small.run()?;
    big.run()?;
    cached_run(&small)?;
    cached_run(&big)?;
    let (mut s, mut b) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        s.push(cached_run(&small)?);
        b.push(cached_run(&big)?);
    }
    let (s, b) = (median(s), median(b));
    let ratio = b.as_secs_f64() / s.as_secs_f64();
    table.add(
        format!(
            "2. cached run, 3 steps x {} MB vs x 1 KB",
            big_floats * 4 / MB
        ),
        fmt_dur(b),
        fmt_dur(s),
        fmt_ratio(ratio),
        "<= 1.5x",
        Some(ratio <= 1.5),
    );
    Ok(())
}

/// The baseline of figure 3: the same value, serialized with bincode into a buffered file by
/// hand, fsynced and renamed into place.
fn write_by_hand(n: usize, dir: &Path) -> AnyResult<()> {
    let value = make_floats(black_box(n));
    let tmp = dir.join("by-hand.tmp");
    let mut out = BufWriter::with_capacity(MB, File::create(&tmp)?);
    bincode::serde::encode_into_std_write(&value, &mut out, bincode::config::standard())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join("by-hand.bin"))?;
    Ok(())
}

/// Figure 3: executing a step with a 256 MB `Vec<f32>` output vs doing the same by hand.
fn figure_3(table: &mut Table, dir: &Path, big_floats: usize) -> AnyResult<()> {
    let store = Store::open(dir.join("miss"))?;
    let p = one_output(big_floats)
        .store(store.clone())
        .enable_cache(false);
    let hand_dir = dir.join("by-hand");
    fs::create_dir_all(&hand_dir)?;
    // Both write over a file of the same bytes written once before.
    p.run()?;
    write_by_hand(big_floats, &hand_dir)?;
    let (mut ours, mut hand) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        hand.push(time(|| write_by_hand(big_floats, &hand_dir)).0);
        ours.push(time(|| p.run()).0);
    }
    let (ours, hand) = (min(&ours), min(&hand));
    let ratio = ours.as_secs_f64() / hand.as_secs_f64();
    table.add(
        format!("3. cache miss, {} MB Vec<f32> output", big_floats * 4 / MB),
        fmt_dur(ours),
        fmt_dur(hand),
        fmt_ratio(ratio),
        "<= 1.15x",
        Some(ratio <= 1.15),
    );
    Ok(())
}

/// Figure 4: content hashing (the store's hashing writer) vs xxh3-128 over the same bytes.
fn figure_4(table: &mut Table, bytes: usize) -> AnyResult<()> {
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[7])
        .collect();
    let plain_hash = || xxhash_rust::xxh3::xxh3_128(black_box(&data));
    let ours_hash = |chunk: usize| -> io::Result<u128> {
        let mut w = HashingWriter::new(io::sink());
        for c in black_box(&data).chunks(chunk) {
            w.write_all(c)?;
        }
        let (_, hash, _) = w.finish()?;
        Ok(hash.0)
    };
    let expected = plain_hash();
    for (chunk, label) in [(MB, "1 MiB writes")] {
        if ours_hash(chunk)? != expected {
            return Err("the store's content hash differs from xxh3-128".into());
        }
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            plain.push(time(plain_hash).0);
            ours.push(time(|| ours_hash(chunk)).0);
        }
        let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
        let (o, p) = (gbps(min(&ours)), gbps(min(&plain)));
        table.add(
            format!("4. content hash, {} MB in {label}", bytes / MB),
            format!("{o:.2} GB/s"),
            format!("{p:.2} GB/s"),
            fmt_ratio(o / p),
            ">= 0.8x",
            Some(o / p >= 0.8),
        );
    }
    Ok(())
}

/// Figure 5: build and fully cached run of 1,000 and 10,000 steps (a fan of 10-step chains).
fn figure_5(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let store = Store::open(dir.join("chains"))?;
    const DEPTH: usize = 10;
    // Fill the cache once; chains repeat the values of figure 1's chain, so mostly the
    // heads execute. Many at once, to overlap their fsyncs.
    fan(1000, DEPTH)
        .store(store.clone())
        .max_parallelism(16)
        .run()?;
    let mut build = [Vec::new(), Vec::new()];
    let mut run = [Vec::new(), Vec::new()];
    for rep in 0..6 {
        for (i, width) in [100usize, 1000].into_iter().enumerate() {
            let (b, p) = time(|| fan(width, DEPTH));
            let r = cached_run(&p.store(store.clone()))?;
            if rep > 0 {
                build[i].push(b);
                run[i].push(r);
            }
        }
    }
    let [b1, b10] = build.map(median);
    let [r1, r10] = run.map(median);
    let total10 = b10 + r10;
    let growth = (b10 + r10).as_secs_f64() / (b1 + r1).as_secs_f64();
    table.add(
        "5. graph build, 10,000 vs 1,000 steps",
        fmt_dur(b10),
        fmt_dur(b1),
        fmt_ratio(b10.as_secs_f64() / b1.as_secs_f64()),
        "linear (~10x)",
        None,
    );
    table.add(
        "5. cached run, 10,000 vs 1,000 steps",
        fmt_dur(r10),
        fmt_dur(r1),
        fmt_ratio(r10.as_secs_f64() / r1.as_secs_f64()),
        "linear (~10x)",
        None,
    );
    table.add(
        "5. build + cached run, 10,000 vs 1,000",
        fmt_dur(total10),
        fmt_dur(b1 + r1),
        fmt_ratio(growth),
        "<= ~12x and < 1 s",
        Some(growth <= 12.0 && total10 < Duration::from_secs(1)),
    );
    Ok(())
}

/// Figure 6: two independent CPU-bound steps, `max_parallelism(2)` vs `(1)`.
fn figure_6(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let store = Store::open(dir.join("parallel"))?;
    // About 0.25 s of work per step.
    let (d, _) = time(|| black_box(spin_work(black_box(10_000_000), 1)));
    let iters = (10_000_000.0 * 0.25 / d.as_secs_f64().max(1e-6)) as u64;
    let p = two_spins(iters).store(store);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        one.push(time(|| p.clone().max_parallelism(1).run()).0);
        two.push(time(|| p.clone().max_parallelism(2).run()).0);
    }
    let (one, two) = (min(&one), min(&two));
    let speedup = one.as_secs_f64() / two.as_secs_f64();
    table.add(
        "6. 2 CPU-bound steps, parallelism 2 vs 1",
        fmt_dur(two),
        fmt_dur(one),
        format!("{speedup:.2}x faster"),
        "~2x faster (2 cores)",
        None,
    );
    Ok(())
}

/// The crate root of a generated crate of 100 functions, with or without `#[step]`.
fn generated_crate(steps: bool) -> String {
    let mut src = String::from("#![allow(dead_code)]\nuse pipeline::prelude::*;\n\n");
    if !steps {
        src = String::from("#![allow(dead_code, unused_imports)]\nuse pipeline::prelude::*;\n\n");
    }
    for i in 0..100 {
        if steps {
            src.push_str("#[step]\n");
        }
        src.push_str(&format!(
            "pub fn f{i}(x: &[f32], k: f32) -> Vec<f32> {{\n    \
             x.iter().map(|v| v * k + {i}.0).collect()\n}}\n\n"
        ));
    }
    src
}

/// Builds `dir` with cargo and returns the wall time.
fn cargo_build(dir: &Path, target: &Path) -> AnyResult<Duration> {
    let (d, out) = time(|| {
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--lib"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_INCREMENTAL", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    });
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "cargo build in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(d)
}

/// Figure 7: compile time of 100 `#[step]` functions vs the same 100 plain functions.
fn figure_7(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The dependencies are built once into a target dir that outlives this run, so only the
    // first run of perf pays for them.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("perf-compile"),
        None => workspace.join("target").join("perf-compile"),
    };
    let mut crates = Vec::new();
    for (name, steps) in [("with_steps", true), ("plain_fns", false)] {
        let root = dir.join("compile").join(name);
        fs::create_dir_all(root.join("src"))?;
        fs::write(
            root.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\ncached-pipeline = {{ path = {:?} }}\n\n[workspace]\n",
                workspace.display().to_string()
            ),
        )?;
        // Same dependency versions as the workspace, so its downloads are reused.
        let _ = fs::copy(workspace.join("Cargo.lock"), root.join("Cargo.lock"));
        fs::write(root.join("src/lib.rs"), generated_crate(steps))?;
        // Builds the dependencies and the crate once.
        cargo_build(&root, &target)?;
        crates.push(root);
    }
    let (mut with, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (i, root) in crates.iter().enumerate() {
            // A changed mtime makes cargo rebuild this crate only, from scratch
            // (CARGO_INCREMENTAL=0).
            let lib = root.join("src/lib.rs");
            let text = fs::read(&lib)?;
            fs::write(&lib, text)?;
            let d = cargo_build(root, &target)?;
            if i == 0 {
                with.push(d);
            } else {
                plain.push(d);
            }
        }
    }
    let (with, plain) = (min(&with), min(&plain));
    let ratio = with.as_secs_f64() / plain.as_secs_f64();
    table.add(
        "7. compile 100 #[step] fns vs 100 plain fns",
        fmt_dur(with),
        fmt_dur(plain),
        fmt_ratio(ratio),
        "<= 2.0x (issue 14)",
        Some(ratio <= 2.0),
    );
    Ok(())
}

/// Figure 8: loading a cached 100 MB `Vec<f64>` stored by the raw cacher vs `std::fs::read` of its
/// blob (both from the page cache; loading also verifies the content hash).
fn figure_8(table: &mut Table, dir: &Path, n: usize) -> AnyResult<()> {
    let store = Store::open(dir.join("raw"))?;
    let p = raw_output(n).store(store);
    p.run()?;
    let run = p.run()?;
    let artifact = run.output();
    let path = artifact.path()?;
    let expected = artifact.size()? as usize;
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let (d, bytes) = time(|| fs::read(&path));
        if bytes?.len() != expected {
            return Err("the blob's size differs from its record".into());
        }
        plain.push(d);
        let (d, values) = time(|| artifact.load());
        if values?.len() != n {
            return Err("the loaded vector has the wrong length".into());
        }
        ours.push(d);
    }
    let (ours, plain) = (median(ours), median(plain));
    let ratio = ours.as_secs_f64() / plain.as_secs_f64();
    table.add(
        format!("8. load cached {} MB Vec<f64>, raw cacher", n * 8 / MB),
        fmt_dur(ours),
        format!("{} (fs::read)", fmt_dur(plain)),
        fmt_ratio(ratio),
        "<= 1.3x (joblib: 11 ms)",
        Some(ratio <= 1.3),
    );
    Ok(())
}

/// The hidden child mode of figure 9: open the store, run the seed pipeline (fully cached),
/// load its output, exit.
fn seed_child(store: &Path) -> AnyResult<()> {
    let store = Store::open(store)?;
    let run = seed_pipeline().store(store).run()?;
    let accuracy: f64 = run.output().load()?;
    black_box(accuracy);
    Ok(())
}

fn seed_pipeline() -> Pipeline<Artifact<f64>> {
    digits_pipeline::digits_pipeline(digits::DEFAULT_GAMMA, digits::DEFAULT_C, None, true)
}

/// Figure 9: a fully cached run of the seed example as a new process, start to exit.
fn figure_9(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let store_dir = dir.join("seed");
    // Executes the seed pipeline once (trains the model) to fill the store.
    seed_pipeline().store_path(&store_dir).run()?;
    let exe = std::env::current_exe()?;
    let spawn = |args: &[&std::ffi::OsStr]| -> AnyResult<Duration> {
        let (d, status) = time(|| {
            Command::new(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
        });
        if !status?.success() {
            return Err("the child process failed".into());
        }
        Ok(d)
    };
    let cached = [std::ffi::OsStr::new("--seed-child"), store_dir.as_os_str()];
    let noop = [std::ffi::OsStr::new("--noop-child")];
    spawn(&cached)?;
    let (mut ours, mut empty) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        ours.push(spawn(&cached)?);
        empty.push(spawn(&noop)?);
    }
    let fastest = min(&ours);
    let (ours, empty) = (median(ours), median(empty));
    table.add(
        "9. seed example fully cached, new process",
        format!("{} (min {})", fmt_dur(ours), fmt_dur(fastest)),
        format!("{} (no-op process)", fmt_dur(empty)),
        fmt_ratio(ours.as_secs_f64() / empty.as_secs_f64()),
        "< 10 ms (ZenML: 4.9 s)",
        Some(ours < Duration::from_millis(10)),
    );
    table.add(
        "9. the same vs ZenML 0.98 (4.9 s, issue 7)",
        fmt_dur(ours),
        "4.90 s",
        format!("{:.0}x faster", 4.9 / ours.as_secs_f64()),
        "",
        None,
    );
    Ok(())
}

/// Figure 10: `n` independent trivial steps, each with its own cache key.
#[pipeline]
fn wide(n: usize) -> Vec<Artifact<u64>> {
    (0..n).map(|i| seed(i as u64)).collect()
}

/// The hidden child mode of figure 10: run `shape` (`chain` or `wide`, 1,500 trivial steps
/// with distinct keys either way) on the store at `store`, and print the run's wall time in seconds and how
/// many of its steps it executed itself.
fn race_child(store: &Path, shape: &str) -> AnyResult<()> {
    let store = Store::open(store)?;
    let (d, executed) = match shape {
        "chain" => {
            let (d, run) = time(|| chain(RACE_STEPS).store(store).run());
            (d, count_executed(run?.steps()))
        }
        "wide" => {
            let (d, run) = time(|| wide(RACE_STEPS).store(store).run());
            (d, count_executed(run?.steps()))
        }
        other => return Err(format!("unknown shape {other:?}; use chain or wide").into()),
    };
    println!("{} {executed}", d.as_secs_f64());
    Ok(())
}

fn count_executed(steps: &[pipeline::StepReport]) -> usize {
    steps
        .iter()
        .filter(|s| s.status() == StepStatus::Executed)
        .count()
}

/// Steps of each run in figure 10.
const RACE_STEPS: usize = 1500;

/// Figure 10: two processes run the same 1,500 trivial steps on one fresh store at once; the
/// slower of the two (the one that waits for the other's claims) against one process alone
/// on a fresh store. Single-flight must not cost a poll interval per waited key.
fn figure_10(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let exe = std::env::current_exe()?;
    let mut fresh = 0;
    // Starts `count` children on one fresh store at once; their (seconds, executed) each.
    let mut race = |shape: &str, count: usize| -> AnyResult<Vec<(Duration, usize)>> {
        fresh += 1;
        let store = dir.join(format!("race-{fresh}"));
        drop(Store::open(&store)?);
        let children = (0..count)
            .map(|_| {
                Command::new(&exe)
                    .arg("--race-child")
                    .arg(&store)
                    .arg(shape)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut results = Vec::new();
        for child in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err("a figure 10 child process failed".into());
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            let secs: f64 = fields.next().ok_or("no time")?.parse()?;
            let executed: usize = fields.next().ok_or("no count")?.parse()?;
            results.push((Duration::from_secs_f64(secs), executed));
        }
        Ok(results)
    };
    for (shape, label) in [
        ("chain", "chain of 1,500"),
        ("wide", "1,500 independent steps"),
    ] {
        let (mut alone, mut waiting) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            alone.push(race(shape, 1)?[0].0);
            let pair = race(shape, 2)?;
            let executed: usize = pair.iter().map(|(_, e)| e).sum();
            if executed != RACE_STEPS {
                return Err(format!(
                    "two runs of {RACE_STEPS} steps executed {executed} steps between them"
                )
                .into());
            }
            waiting.push(pair.iter().map(|(d, _)| *d).max().unwrap_or_default());
        }
        let (waiting, alone) = (median(waiting), median(alone));
        let ratio = waiting.as_secs_f64() / alone.as_secs_f64();
        table.add(
            format!("10. slower of 2 runs at once vs alone, {label}"),
            fmt_dur(waiting),
            format!("{} (alone)", fmt_dur(alone)),
            fmt_ratio(ratio),
            "<= 2x",
            Some(ratio <= 2.0),
        );
    }
    Ok(())
}

/// Figure 11: executing a step with a 256 MB `Vec<f32>` output on a store whose artifacts are
/// in S3 (SQLite metadata here, bytes in the bucket `PIPELINE_ARTIFACTS` names, client from
/// the `AWS_*` variables) vs a plain `object_store` put of the same bytes to that bucket.
/// Each miss is a real one: the blob is deleted before it runs again.
fn figure_11(table: &mut Table, dir: &Path, big_floats: usize) -> AnyResult<()> {
    use object_store::{aws::AmazonS3Builder, path::Path as Key, ObjectStore, ObjectStoreExt};
    use pipeline::config::{ArtifactLocation, StoreConfig};
    use std::sync::Arc;

    let label = format!("11. cache miss to S3, {} MB Vec<f32>", big_floats * 4 / MB);
    let url = std::env::var("PIPELINE_ARTIFACTS").unwrap_or_default();
    if !url.starts_with("s3://") {
        let why =
            "skipped: PIPELINE_ARTIFACTS is not s3://.. (eval \"$(scripts/services.sh start s3)\")";
        table.add(label, why, "", "", "<= 1.2x", None);
        return Ok(());
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let prefix = format!(
        "{}/perf-{}-{}",
        url.trim_end_matches('/'),
        std::process::id(),
        stamp.as_nanos()
    );
    let db = dir.join("s3-miss").join("metadata.sqlite");
    let config = StoreConfig::new(&format!("sqlite:{}", db.display()), Some(&prefix))?;
    let ArtifactLocation::S3 { bucket, prefix } = config.artifacts().clone() else {
        return Err("PIPELINE_ARTIFACTS is not an s3:// URL".into());
    };
    let store = Store::connect(&config)?;
    let p = one_output(big_floats)
        .store(store.clone())
        .enable_cache(false);
    let runtime = tokio::runtime::Runtime::new()?;
    let s3: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()?,
    );
    let key = Key::from(format!("{prefix}/plain-put"));
    let encoded = || -> AnyResult<Vec<u8>> {
        let value = make_floats(black_box(big_floats));
        Ok(bincode::serde::encode_to_vec(
            &value,
            bincode::config::standard(),
        )?)
    };
    // One PUT of the whole value; and object_store's multipart writer with the parts and
    // concurrency the store uses (8 MB, 4 at once), the fastest plain upload.
    let plain_put = || -> AnyResult<()> {
        runtime.block_on(s3.put(&key, encoded()?.into()))?;
        Ok(())
    };
    let multipart = || -> AnyResult<()> {
        let bytes = bytes::Bytes::from(encoded()?);
        runtime.block_on(async {
            let mut w =
                object_store::buffered::BufWriter::with_capacity(s3.clone(), key.clone(), 8 * MB)
                    .with_max_concurrency(4);
            for chunk in bytes.chunks(MB) {
                w.put(bytes.slice_ref(chunk)).await?;
            }
            tokio::io::AsyncWriteExt::shutdown(&mut w).await
        })?;
        Ok(())
    };
    let (mut ours, mut plain, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(time(plain_put).0);
        parts.push(time(multipart).0);
        let (d, run) = time(|| p.run());
        ours.push(d);
        // Gone before the next run, which then uploads and places it again.
        let hash = run?.output().content_hash()?;
        store.artifact_store().delete(hash)?;
    }
    runtime.block_on(s3.delete(&key))?;
    let ours = min(&ours);
    for (baseline, what, goal) in [
        (min(&plain), "put", "<= 1.2x"),
        (min(&parts), "multipart", ""),
    ] {
        let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
        let met = (!goal.is_empty()).then_some(ratio <= 1.2);
        table.add(
            &label,
            fmt_dur(ours),
            format!("{} ({what})", fmt_dur(baseline)),
            fmt_ratio(ratio),
            goal,
            met,
        );
    }
    Ok(())
}

struct Options {
    dir: Option<PathBuf>,
    compile: bool,
    /// Figures to measure (all when empty).
    only: Vec<u32>,
}

impl Options {
    fn wants(&self, figure: u32) -> bool {
        self.only.is_empty() || self.only.contains(&figure)
    }
}

fn parse_args() -> AnyResult<Options> {
    let mut args = std::env::args_os().skip(1);
    let mut options = Options {
        dir: None,
        compile: true,
        only: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--seed-child") => {
                let store = args.next().ok_or("--seed-child needs a store path")?;
                seed_child(Path::new(&store))?;
                std::process::exit(0);
            }
            Some("--noop-child") => std::process::exit(0),
            Some("--race-child") => {
                let store = args.next().ok_or("--race-child needs a store path")?;
                let shape = args.next().ok_or("--race-child needs a shape")?;
                race_child(Path::new(&store), &shape.to_string_lossy())?;
                std::process::exit(0);
            }
            Some("--dir") => options.dir = Some(args.next().ok_or("--dir needs a path")?.into()),
            Some("--no-compile") => options.compile = false,
            Some("--only") => {
                let list = args.next().ok_or("--only needs figure numbers, e.g. 1,5")?;
                for n in list.to_string_lossy().split(',') {
                    options
                        .only
                        .push(n.trim().parse().map_err(|_| "bad figure number")?);
                }
            }
            _ => {
                return Err(format!(
                "unknown argument {arg:?}; usage: perf [--dir PATH] [--no-compile] [--only 1,5,..]"
            )
                .into())
            }
        }
    }
    Ok(options)
}

/// Figure 12: a cached step with the metadata in PostgreSQL (the server
/// `PIPELINE_METADATA=postgres://..` names, in a database of its own created and dropped
/// here; blobs in a local folder) vs the same pipeline on SQLite, side by side: a chain of
/// 1000 trivial steps (a wave of one step each: one transaction per step) and a fan of 1000
/// independent steps (one wave: one transaction for all). A PostgreSQL pass costs `BEGIN`,
/// one lookup per cached step (prepared once per pass from its second lookup on, so the
/// server plans it once), one statement for all its cached rows, and `COMMIT`, each a round
/// trip to the server.
fn figure_12(table: &mut Table, dir: &Path) -> AnyResult<()> {
    use pipeline::config::StoreConfig;

    let label = |shape: &str| format!("12. cached step on PostgreSQL, {shape} of 1000");
    let server = std::env::var("PIPELINE_METADATA").unwrap_or_default();
    if !server.starts_with("postgres://") && !server.starts_with("postgresql://") {
        let why = "skipped: PIPELINE_METADATA is not postgres://.. (eval \"$(scripts/services.sh start postgres)\")";
        table.add(label("chain"), why, "", "", "<= 1 ms/step", None);
        return Ok(());
    }
    let name = format!("pipeline_perf_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls)?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let n = 1000;
    let measured = (|| -> AnyResult<Vec<(String, Duration, Duration)>> {
        let mut url = url::Url::parse(&server)?;
        url.set_path(&name);
        let blobs = dir.join("pg-blobs");
        let config = StoreConfig::new(url.as_str(), Some(blobs.to_str().ok_or("path")?))?;
        let pg = Store::connect_with(
            &config,
            pipeline::StoreOptions {
                local_dir: Some(dir.join("pg-local")),
                ..Default::default()
            },
        )?;
        let sqlite = Store::open(dir.join("pg-sqlite"))?;
        let chains = side_by_side(chain(n).store(pg.clone()), chain(n).store(sqlite.clone()))?;
        let fans = side_by_side(
            fan(n, 1).store(pg.clone()).max_parallelism(8),
            fan(n, 1).store(sqlite.clone()).max_parallelism(8),
        )?;
        let rows = [("chain", chains), ("fan", fans)]
            .into_iter()
            .map(|(shape, (a, b))| (label(shape), a / n as u32, b / n as u32))
            .collect();
        Ok(rows)
    })();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    for (label, pg, sqlite) in measured? {
        table.add(
            label,
            format!("{:.2} us/step", pg.as_secs_f64() * 1e6),
            format!("SQLite {:.2} us/step", sqlite.as_secs_f64() * 1e6),
            fmt_ratio(pg.as_secs_f64() / sqlite.as_secs_f64().max(1e-12)),
            "<= 1 ms/step",
            Some(pg <= Duration::from_millis(1)),
        );
    }
    Ok(())
}

/// Median times of fully cached runs of `a` and `b`, alternated (after one executed run
/// and one warm-up cached run each).
fn side_by_side<O: pipeline::PipelineOutput>(
    a: Pipeline<O>,
    b: Pipeline<O>,
) -> AnyResult<(Duration, Duration)> {
    a.run()?;
    b.run()?;
    cached_run(&a)?;
    cached_run(&b)?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        ta.push(cached_run(&a)?);
        tb.push(cached_run(&b)?);
    }
    Ok((median(ta), median(tb)))
}

/// Figure 13: the per-step cost of the process backend (a worker process of this binary
/// per step: start, open the store, adopt the lease, load the input, commit) against the
/// thread backend: a chain of `n` trivial steps, executed in a fresh store each time, on
/// `ExecutorKind::Processes` and on threads, alternated; medians over 5 runs.
fn figure_13(table: &mut Table, dir: &Path) -> AnyResult<()> {
    use pipeline::config::ExecutorKind;

    let n = 20;
    let (mut processes, mut threads) = (Vec::new(), Vec::new());
    for i in 0..5 {
        for (kind, times) in [
            (ExecutorKind::Processes, &mut processes),
            (ExecutorKind::Threads, &mut threads),
        ] {
            let store = Store::open(dir.join(format!("backend-{kind}-{i}")))?;
            let p = chain(n).store(store).executor(kind);
            let (d, run) = time(|| p.run());
            run?;
            times.push(d / n as u32);
        }
    }
    let (processes, threads) = (median(processes), median(threads));
    table.add(
        "13. executed trivial step: process backend vs threads",
        format!("{}/step", fmt_dur(processes)),
        format!("{}/step", fmt_dur(threads)),
        fmt_ratio(processes.as_secs_f64() / threads.as_secs_f64().max(1e-12)),
        "(figure only; issue 16)",
        None,
    );
    Ok(())
}

/// Figure 14: 1,000 trivial independent steps, each a Slurm job on the cluster `SLURM_CONF`
/// names (this binary as its worker), on a store with metadata in a fresh database of the
/// `PIPELINE_METADATA=postgres://..` server and artifacts under a fresh prefix of
/// `PIPELINE_ARTIFACTS=s3://..`: wall time from the first submission to the last commit
/// (goal <= 3 min, issue 16), and the fully cached second run, which submits nothing.
fn figure_14(table: &mut Table, dir: &Path) -> AnyResult<()> {
    use pipeline::cluster::Slurm;
    use pipeline::config::StoreConfig;

    let label = "14. 1,000 trivial steps as Slurm jobs (PostgreSQL + S3)";
    let server = std::env::var("PIPELINE_METADATA").unwrap_or_default();
    let bucket = std::env::var("PIPELINE_ARTIFACTS").unwrap_or_default();
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    if !server.starts_with("postgres") || !bucket.starts_with("s3://") || conf.is_empty() {
        let why = "skipped: needs PIPELINE_METADATA=postgres://.., PIPELINE_ARTIFACTS=s3://.. and SLURM_CONF (eval \"$(scripts/services.sh start)\")";
        table.add(label, why, "", "", "<= 3 min", None);
        return Ok(());
    }
    let name = format!("pipeline_perf_slurm_{}", std::process::id());
    let mut admin = postgres::Client::connect(&server, postgres::NoTls)?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let n = 1000;
    let measured = (|| -> AnyResult<(Duration, Duration)> {
        let mut url = url::Url::parse(&server)?;
        url.set_path(&name);
        let prefix = format!(
            "{}/perf-slurm-{}",
            bucket.trim_end_matches('/'),
            std::process::id()
        );
        let config = StoreConfig::new(url.as_str(), Some(&prefix))?;
        let store = Store::connect_with(
            &config,
            pipeline::StoreOptions {
                local_dir: Some(dir.join("slurm-local")),
                ..Default::default()
            },
        )?;
        let slurm = Slurm::new().conf(&conf).log_dir(dir.join("slurm-logs"));
        let p = wide(n).store(store).executor(slurm);
        let (executed, run) = time(|| p.run());
        let run = run?;
        let ran = run
            .steps()
            .iter()
            .filter(|s| s.status() == StepStatus::Executed)
            .count();
        if ran != n {
            return Err(format!("{ran} of {n} steps executed").into());
        }
        let cached = cached_run(&p)?;
        Ok((executed, cached))
    })();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let (executed, cached) = measured?;
    table.add(
        label,
        fmt_dur(executed),
        format!("{:.1} steps/s", n as f64 / executed.as_secs_f64()),
        "",
        "<= 3 min",
        Some(executed <= Duration::from_secs(180)),
    );
    table.add(
        "14. the same, fully cached (no job submitted)",
        fmt_dur(cached),
        "",
        "",
        "",
        None,
    );
    Ok(())
}

/// A step that sleeps `seconds` under a 1 s timeout (figure 15).
#[step(timeout = "1s")]
fn oversleeps(seconds: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(seconds));
    seconds
}

#[pipeline]
fn oversleeping(seconds: u64) -> Artifact<u64> {
    oversleeps(seconds)
}

/// Figure 16: a fully cached run of a map over 10,000 items vs 1,000 items (issue 18): the
/// list's split is reused from its record, each item's call is a cache hit, and no item's
/// bytes are read (checked with the store's counters).
fn figure_16(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let path = dir.join("map");
    let store = Store::open(&path)?;
    for n in [1_000u64, 10_000] {
        mapped(n).store(store.clone()).max_parallelism(8).run()?;
    }
    let mut runs = [Vec::new(), Vec::new()];
    for rep in 0..4 {
        for (i, n) in [1_000u64, 10_000].into_iter().enumerate() {
            // A new handle per run: its counters say what this run read.
            let fresh = Store::open(&path)?;
            let d = cached_run(&mapped(n).store(fresh.clone()))?;
            let read = fresh.stats().bytes_read;
            if read != 0 {
                return Err(format!("a fully cached map of {n} items read {read} bytes").into());
            }
            if rep > 0 {
                runs[i].push(d);
            }
        }
    }
    let [small, big] = runs.map(median);
    let ratio = big.as_secs_f64() / small.as_secs_f64();
    table.add(
        "16. cached map, 10,000 vs 1,000 items (0 bytes read)",
        fmt_dur(big),
        fmt_dur(small),
        fmt_ratio(ratio),
        "linear (<= ~12x)",
        Some(ratio <= 12.0),
    );
    Ok(())
}

/// Figure 15: a step with `timeout = "1s"` that sleeps 10 s: how long its run takes to end
/// (recorded as timed out) on threads (the step is given up; its thread sleeps on) and in a
/// worker process (the worker records the timeout and exits). Issue 17, acceptance 2.
fn figure_15(table: &mut Table, dir: &Path) -> AnyResult<()> {
    use pipeline::config::ExecutorKind;

    let mut took = Vec::new();
    for kind in [ExecutorKind::Threads, ExecutorKind::Processes] {
        let store = Store::open(dir.join(format!("timeout-{kind}")))?;
        let p = oversleeping(10).store(store.clone()).executor(kind);
        let (d, run) = time(|| p.run());
        match run {
            Err(pipeline::Error::StepFailed { message, .. })
                if message.contains("timed out after 1s") => {}
            other => {
                return Err(
                    format!("figure 15 on {kind}: expected a timeout, got {other:?}").into(),
                )
            }
        }
        took.push(d);
    }
    table.add(
        "15. 10 s step, timeout 1s: run ends after (threads | processes)",
        fmt_dur(took[0]),
        fmt_dur(took[1]),
        fmt_ratio(took[1].as_secs_f64() / took[0].as_secs_f64().max(1e-12)),
        "(figure only; issue 17)",
        None,
    );
    Ok(())
}

/// Figure 17: an async step that sleeps 300 ms (feature `tokio`).
#[cfg(feature = "tokio")]
#[step]
async fn nap_300ms(i: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    i
}

#[cfg(feature = "tokio")]
#[pipeline]
fn naps(n: u32) -> Vec<Artifact<u32>> {
    (0..n).map(nap_300ms).collect()
}

/// Figure 17: 300 async steps that sleep 300 ms with `max_parallelism(2)`, caching on and
/// off, against 300 such sleeps joined on a plain 2-worker Tokio runtime.
#[cfg(feature = "tokio")]
fn figure_17(table: &mut Table, dir: &Path) -> AnyResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (baseline, ()) = time(|| {
        rt.block_on(async {
            let tasks: Vec<_> = (0..300)
                .map(|_| tokio::spawn(tokio::time::sleep(Duration::from_millis(300))))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        })
    });
    let mut took = Vec::new();
    for cache in [true, false] {
        let store = Store::open(dir.join(format!("async-naps-{cache}")))?;
        let p = naps(300)
            .store(store)
            .enable_cache(cache)
            .max_parallelism(2);
        let (d, run) = time(|| p.run());
        run?;
        took.push(d);
    }
    table.add(
        "17. 300 async steps sleeping 300 ms, max_parallelism(2): caching on / off",
        format!("{} / {}", fmt_dur(took[0]), fmt_dur(took[1])),
        fmt_dur(baseline),
        fmt_ratio(took[1].as_secs_f64() / baseline.as_secs_f64().max(1e-12)),
        "(figure only; issue 17)",
        None,
    );
    Ok(())
}

/// Figure 18: a sweep of `n` calls of `seed`, each labelled by its value (`seed[x]`) or
/// not (`seed`, `seed_2`, ...).
#[pipeline]
fn seed_sweep(xs: Vec<u64>, labelled: bool) -> Vec<Artifact<u64>> {
    xs.into_iter()
        .map(|x| {
            let a = seed(x);
            if labelled {
                a.named(format!("seed[{x}]"))
            } else {
                a
            }
        })
        .collect()
}

/// Figure 18: `RunDiff` of two runs of a sweep of 10,000 calls, the second with one value
/// inserted at the front, against the same for 1,000 calls: pairing calls across runs
/// (labels, then equal keys, then key components) stays linear. Each diff must find the
/// one new call and every other call the same.
fn figure_18(table: &mut Table, dir: &Path) -> AnyResult<()> {
    use pipeline::report::RunDiff;

    for labelled in [true, false] {
        let mut took = Vec::new();
        for n in [1_000u64, 10_000] {
            let store = Store::open(dir.join(format!("diff-{n}-{labelled}")))?;
            seed_sweep((1..=n).collect(), labelled)
                .store(store.clone())
                .run_name("a")
                .run()?;
            seed_sweep((0..=n).collect(), labelled)
                .store(store.clone())
                .run_name("b")
                .run()?;
            let mut times = Vec::new();
            for _ in 0..3 {
                let (d, diff) = time(|| RunDiff::new(&store, "a", "b"));
                let diff = diff?;
                let changed: Vec<&str> = diff.changed().map(|s| s.verdict()).collect();
                if changed != ["only in B"] || diff.steps.len() as u64 != n + 1 {
                    return Err(format!(
                        "figure 18 ({n} calls): expected one call only in B, got {changed:?}"
                    )
                    .into());
                }
                times.push(d);
            }
            took.push(median(times));
        }
        let ratio = took[1].as_secs_f64() / took[0].as_secs_f64().max(1e-12);
        table.add(
            format!(
                "18. diff, 10,000 vs 1,000 calls, one inserted ({})",
                if labelled { "labelled" } else { "unlabelled" }
            ),
            fmt_dur(took[1]),
            fmt_dur(took[0]),
            fmt_ratio(ratio),
            "linear (~10x)",
            Some(ratio <= 15.0),
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Figure 13 runs steps in worker processes of this binary.
    pipeline::worker::enter();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> AnyResult<()> {
    let options = parse_args()?;
    let temp;
    let dir = match &options.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let big_floats = 64 * MB; // 256 MB of f32
    let mut table = Table { rows: Vec::new() };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("perf: {cores} cores, stores in {}", dir.display());

    if options.wants(1) {
        figure_1(&mut table, &dir)?;
    }
    if options.wants(2) {
        figure_2(&mut table, &dir, big_floats)?;
    }
    if options.wants(3) {
        figure_3(&mut table, &dir, big_floats)?;
    }
    if options.wants(4) {
        figure_4(&mut table, 256 * MB)?;
    }
    if options.wants(5) {
        figure_5(&mut table, &dir)?;
    }
    if options.wants(6) {
        figure_6(&mut table, &dir)?;
    }
    if options.wants(7) {
        if options.compile {
            figure_7(&mut table, &dir)?;
        } else {
            table.add(
                "7. compile time",
                "skipped (--no-compile)",
                "",
                "",
                "<= 2.0x (issue 14)",
                None,
            );
        }
    }
    if options.wants(8) {
        figure_8(&mut table, &dir, 100 * MB / 8)?;
    }
    if options.wants(9) {
        figure_9(&mut table, &dir)?;
    }
    if options.wants(10) {
        figure_10(&mut table, &dir)?;
    }
    if options.wants(11) {
        figure_11(&mut table, &dir, big_floats)?;
    }
    if options.wants(12) {
        figure_12(&mut table, &dir)?;
    }
    if options.wants(13) {
        figure_13(&mut table, &dir)?;
    }
    if options.wants(14) {
        figure_14(&mut table, &dir)?;
    }
    if options.wants(15) {
        figure_15(&mut table, &dir)?;
    }
    if options.wants(16) {
        figure_16(&mut table, &dir)?;
    }
    if options.wants(17) {
        #[cfg(feature = "tokio")]
        figure_17(&mut table, &dir)?;
        #[cfg(not(feature = "tokio"))]
        table.add(
            "17. 300 async steps sleeping 300 ms",
            "skipped (build with --features tokio)",
            "",
            "",
            "(figure only; issue 17)",
            None,
        );
    }
    if options.wants(18) {
        figure_18(&mut table, &dir)?;
    }
    println!();
    println!(
        "pipeline perf: {cores} cores, {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    println!();
    table.print();
    Ok(())
}
