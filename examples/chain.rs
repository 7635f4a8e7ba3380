//! A chain of trivial steps, run twice on a fresh store: how long the first run (every
//! step executes) and the second run (every step cached) take, and their ratio.
//!
//! ```text
//! cargo run --release --example chain -- 100
//! ```

use std::process::ExitCode;
use std::time::Instant;

use pipeline::prelude::*;

#[step]
fn increment(x: u64) -> u64 {
    x + 1
}

#[pipeline]
fn chain(len: usize) -> Artifact<u64> {
    let mut x = increment(0u64);
    for _ in 1..len {
        x = increment(x);
    }
    x
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> pipeline::Result<()> {
    let len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().map_err(|e| pipeline::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let p = chain(len).store_path(dir.path().join("store"));
    p.open_store()?; // opening and creating the store is not part of either run
    let t = Instant::now();
    let first = p.run()?;
    let first_time = t.elapsed();
    let t = Instant::now();
    let second = p.run()?;
    let second_time = t.elapsed();
    assert!(second
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
    assert_eq!(first.output().load()?, len as u64);
    println!(
        "chain of {len} steps: first run {:.2} ms ({:.1} us/step), second run {:.2} ms ({:.1} us/step), second/first = {:.3} ({:.0}x faster)",
        first_time.as_secs_f64() * 1e3,
        first_time.as_secs_f64() * 1e6 / len as f64,
        second_time.as_secs_f64() * 1e3,
        second_time.as_secs_f64() * 1e6 / len as f64,
        second_time.as_secs_f64() / first_time.as_secs_f64(),
        first_time.as_secs_f64() / second_time.as_secs_f64(),
    );
    Ok(())
}
