//! Nothing computed twice: four processes run the same pipeline on one fresh store at
//! once, and every step body runs exactly once in total; the others wait and reuse.
//!
//! The children are this test binary, started with `--exact child_pipeline`.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use pipeline::prelude::*;

const CHILD: &str = "PIPELINE_SINGLE_FLIGHT_CHILD";
const LOG: &str = "PIPELINE_SINGLE_FLIGHT_LOG";

/// Appends a line to the shared call log (O_APPEND writes of one line do not interleave).
fn log_call(step: &str) {
    let path = std::env::var(LOG).expect("log path");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{step} {}", std::process::id()).unwrap();
    // Long enough that the other processes arrive while this one computes.
    std::thread::sleep(Duration::from_millis(300));
}

#[step]
fn sf_load(n: u64) -> Vec<u64> {
    log_call("sf_load");
    (1..=n).collect()
}

#[step]
fn sf_square(xs: &[u64]) -> Vec<u64> {
    log_call("sf_square");
    xs.iter().map(|x| x * x).collect()
}

#[step]
fn sf_total(xs: &[u64]) -> u64 {
    log_call("sf_total");
    xs.iter().sum()
}

#[pipeline]
fn single_flight(n: u64) -> Artifact<u64> {
    let xs = sf_load(n);
    let sq = sf_square(&xs);
    sf_total(&sq)
}

#[test]
fn child_pipeline() {
    if std::env::var_os(CHILD).is_none() {
        return; // only does work when started by the test below
    }
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stdout)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let run = single_flight(100).run().unwrap();
    let total: u64 = run.output().load().unwrap();
    let statuses: Vec<String> = run.steps().iter().map(|s| s.status().to_string()).collect();
    println!("RESULT {total} {}", statuses.join(","));
}

#[test]
fn four_processes_compute_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let log = dir.path().join("calls.log");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_pipeline",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .env(LOG, &log)
                .env("PIPELINE_HOME", &home)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    let mut logs = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        logs.push_str(&stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints `test child_pipeline ... ` on the same line.
        let line = stdout
            .lines()
            .find_map(|l| l.find("RESULT ").map(|i| l[i..].to_string()))
            .unwrap_or_else(|| panic!("no result in {stdout}"));
        results.push(line);
    }
    // Waiting steps say so, and for whom.
    assert!(
        logs.lines().any(|l| l.contains("is waiting for step `")
            && l.contains("(pid ")
            && l.contains("which is computing the same cache key")),
        "{logs}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    for step in ["sf_load", "sf_square", "sf_total"] {
        let n = calls
            .lines()
            .filter(|l| l.split(' ').next() == Some(step))
            .count();
        assert_eq!(n, 1, "{step} ran {n} times:\n{calls}");
    }
    let totals: Vec<&str> = results
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap())
        .collect();
    assert!(totals.iter().all(|t| *t == "338350"), "{results:?}");
    // Exactly one process executed each step; the others reused it.
    for (i, step) in ["sf_load", "sf_square", "sf_total"].iter().enumerate() {
        let executed = results
            .iter()
            .filter(|r| r.split(' ').nth(2).unwrap().split(',').nth(i) == Some("executed"))
            .count();
        assert_eq!(executed, 1, "{step}: {results:?}");
    }
}
