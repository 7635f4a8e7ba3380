//! Crash safety: a child process running a pipeline with large outputs is killed with
//! SIGKILL at 50 random points. After each kill the store opens, `verify()` finds nothing
//! inconsistent, and a rerun completes with the right output.

use std::process::{Command, Stdio};
use std::time::Duration;

use pipeline::cacher::Raw;
use pipeline::prelude::*;

const CHILD: &str = "PIPELINE_CRASH_CHILD";
const N: usize = 2 << 20; // 2M f64 = 16 MB per output

#[step(cacher = Raw)]
fn crash_source(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

#[step(cacher = Raw)]
fn crash_double(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|x| x * 2.0).collect()
}

#[step]
fn crash_sum(xs: &[f64]) -> f64 {
    xs.iter().sum()
}

#[pipeline]
fn crashing(n: usize) -> Artifact<f64> {
    let xs = crash_source(n);
    let d = crash_double(&xs);
    crash_sum(&d)
}

fn expected() -> f64 {
    (0..N).map(|i| i as f64 * 2.0).sum()
}

#[test]
fn child_runs_until_killed() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    // Caching off: every run writes every blob and record, so kills land in writes,
    // renames and commits.
    let p = crashing(N).enable_cache(false);
    loop {
        p.run().unwrap();
    }
}

/// A small deterministic generator, seeded from the clock and printed for reruns.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn sigkill_at_fifty_random_points_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let mut seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("CRASH_SEED={seed}");
    for round in 0..50 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_runs_until_killed", "--test-threads=1"])
            .env(CHILD, "1")
            .env("PIPELINE_HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = 20 + next(&mut seed) % 400;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&home).unwrap_or_else(|e| {
            panic!("round {round} (after {delay} ms): store does not open: {e}")
        });
        let report = store.verify().unwrap();
        assert!(
            report.is_ok(),
            "round {round} (after {delay} ms): {:?}",
            report.problems
        );
        if round == 49 {
            // The kills really interrupted work: runs were recorded and some cut short.
            let runs = store.runs(None).unwrap();
            let interrupted = runs
                .iter()
                .filter(|r| r.status == pipeline::RunStatus::Failed)
                .count();
            eprintln!("{} runs recorded, {interrupted} interrupted", runs.len());
            assert!(
                interrupted >= 25,
                "only {interrupted} of 50 kills interrupted a run"
            );
        }
        if round % 10 == 9 {
            let run = crashing(N).store(store.clone()).run().unwrap();
            assert_eq!(run.output().load().unwrap(), expected(), "round {round}");
        }
    }
}
