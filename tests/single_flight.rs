//! Nothing computed twice: four processes run the same pipeline on one fresh store at
//! once, and every step body runs exactly once in total; the others wait and reuse.
//!
//! Under load too: two processes run the same wide pipeline with one worker each and a
//! lease TTL far shorter than the queue, and each key is still executed once.
//!
//! The children are this test binary, started with `--exact child_pipeline` (or
//! `child_wide_pipeline`). Each scenario runs twice: the children run their steps on
//! threads, then in worker processes (`ExecutorKind::Processes`, acceptance 7 of issue
//! 16), which are this test binary again, started with `--exact worker_entry`.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::on_backend;
use pipeline::config::ExecutorKind;
use pipeline::prelude::*;

const CHILD: &str = "PIPELINE_SINGLE_FLIGHT_CHILD";
/// The backend a child runs its steps on (`threads` or `processes`).
const BACKEND: &str = "PIPELINE_SINGLE_FLIGHT_BACKEND";

fn child_backend() -> ExecutorKind {
    std::env::var(BACKEND).unwrap().parse().unwrap()
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}
const WIDE_CHILD: &str = "PIPELINE_SINGLE_FLIGHT_WIDE_CHILD";
const LOG: &str = "PIPELINE_SINGLE_FLIGHT_LOG";

/// Appends a line to the shared call log in one write (O_APPEND writes do not interleave;
/// `writeln!` may split a line into several writes, which do).
fn append_to_log(line: &str) {
    let path = std::env::var(LOG).expect("log path");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line} {}\n", std::process::id()).as_bytes())
        .unwrap();
}

/// Logs a call of `step`, then takes long enough that the other processes arrive.
fn log_call(step: &str) {
    append_to_log(step);
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
    let run = on_backend(single_flight(100), child_backend())
        .run()
        .unwrap();
    let total: u64 = run.output().load().unwrap();
    let statuses: Vec<String> = run.steps().iter().map(|s| s.status().to_string()).collect();
    println!("RESULT {total} {}", statuses.join(","));
}

#[test]
fn four_processes_compute_each_step_once_on_threads() {
    four_processes_compute_each_step_once(ExecutorKind::Threads);
}

#[test]
fn four_processes_compute_each_step_once_in_worker_processes() {
    four_processes_compute_each_step_once(ExecutorKind::Processes);
}

fn four_processes_compute_each_step_once(backend: ExecutorKind) {
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
                .env(BACKEND, backend.to_string())
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
        results.push(child_result(child, &mut logs));
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

/// Steps of the wide pipeline; each takes 100 ms, so 40 in a row take 4 s.
const WIDE: u64 = 40;

#[step]
fn sf_slow(i: u64) -> u64 {
    append_to_log(&format!("sf_slow#{i}"));
    std::thread::sleep(Duration::from_millis(100));
    i * 10
}

#[pipeline]
fn single_flight_wide(n: u64) -> Vec<Artifact<u64>> {
    (0..n).map(sf_slow).collect()
}

#[test]
fn child_wide_pipeline() {
    let Some(home) = std::env::var_os(WIDE_CHILD) else {
        return; // only does work when started by the test below
    };
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::stdout)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // Every key of the pipeline waits in a queue up to 4 s, four lease TTLs.
    let store = Store::open_with(
        &home,
        pipeline::StoreOptions {
            lease_ttl: Duration::from_secs(1),
            ..pipeline::StoreOptions::default()
        },
    )
    .unwrap();
    let run = on_backend(
        single_flight_wide(WIDE).store(store).max_parallelism(1),
        child_backend(),
    )
    .run()
    .unwrap();
    let values: Vec<u64> = run.output().iter().map(|a| a.load().unwrap()).collect();
    let executed = run
        .steps()
        .iter()
        .filter(|s| s.status().to_string() == "executed")
        .count();
    let sum: u64 = values.iter().sum();
    println!("RESULT {sum} {executed}");
}

#[test]
fn two_processes_with_short_leases_and_one_worker_execute_each_key_once_on_threads() {
    two_processes_with_short_leases_and_one_worker_execute_each_key_once(ExecutorKind::Threads);
}

#[test]
fn two_processes_with_short_leases_and_one_worker_execute_each_key_once_in_worker_processes() {
    two_processes_with_short_leases_and_one_worker_execute_each_key_once(ExecutorKind::Processes);
}

fn two_processes_with_short_leases_and_one_worker_execute_each_key_once(backend: ExecutorKind) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let log = dir.path().join("calls.log");
    // Created first, so the two children race on claims, not on creating the store.
    drop(Store::open(&home).unwrap());
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_wide_pipeline",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WIDE_CHILD, &home)
                .env(BACKEND, backend.to_string())
                .env(LOG, &log)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut executed_by_children = 0;
    let mut logs = String::new();
    for child in children {
        let line = child_result(child, &mut logs);
        let mut fields = line.split(' ').skip(1);
        let sum: u64 = fields.next().unwrap().parse().unwrap();
        assert_eq!(sum, (0..WIDE).map(|i| i * 10).sum::<u64>(), "{line}");
        executed_by_children += fields.next().unwrap().parse::<usize>().unwrap();
    }
    // Each body ran once in all.
    let calls = std::fs::read_to_string(&log).unwrap();
    for i in 0..WIDE {
        let tag = format!("sf_slow#{i}");
        let n = calls
            .lines()
            .filter(|l| l.split(' ').next() == Some(tag.as_str()))
            .count();
        assert_eq!(n, 1, "{tag} ran {n} times:\n{calls}\n{logs}");
    }
    assert_eq!(executed_by_children, WIDE as usize, "{logs}");
    // And the store holds exactly one executed row per key.
    let db = rusqlite::Connection::open(home.join("metadata.sqlite")).unwrap();
    let per_key: Vec<(String, i64)> = db
        .prepare(
            "SELECT cache_key, count(*) FROM executions WHERE status = 'executed' \
             GROUP BY cache_key",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(per_key.len(), WIDE as usize, "{per_key:?}");
    assert!(per_key.iter().all(|(_, n)| *n == 1), "{per_key:?}");
    let leases: i64 = db
        .query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leases, 0, "every claim ended with its run");
}

/// Waits for a child test process, asserts that it succeeded, appends its stdout to `logs`
/// and returns its `RESULT ..` line (the harness prints `test child_pipeline ... ` before it
/// on the same line).
fn child_result(child: std::process::Child, logs: &mut String) -> String {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    logs.push_str(&stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no result in {stdout}"))
}
