//! Liveness without `/proc`: a process that holds a lease is proven alive or dead by its
//! file lock. A killed holder's lease and run are recovered at once, with no wait for the
//! lease to expire (the stores here keep leases alive for an hour without a heartbeat, so
//! a test that finishes did not wait one out); a live holder's are left alone and waited
//! for.
//!
//! The holders are child processes (this test binary started again) whose step blocks
//! until the parent releases it or kills the child with SIGKILL.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{capture_logs, status_of};
use pipeline::prelude::*;
use pipeline::{RunStatus, StoreOptions};

/// Set in a child: the folder of its `started` and `release` marker files.
const CHILD_DIR: &str = "PIPELINE_LIVENESS_CHILD";
/// Set in a child: which pipeline it runs.
const CHILD_PIPELINE: &str = "PIPELINE_LIVENESS_PIPELINE";

/// In a child process: says that the step runs (its lease is held), then blocks until the
/// parent releases it. In the parent: returns at once.
fn hold() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    fs::write(dir.join("started"), b"").unwrap();
    // Bounded, so that a child whose parent died does not linger.
    let until = Instant::now() + Duration::from_secs(300);
    while !dir.join("release").exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[step]
fn lv_killed(tag: u64) -> u64 {
    hold();
    tag + 1
}

#[step]
fn lv_reopened(tag: u64) -> u64 {
    hold();
    tag + 2
}

#[step]
fn lv_live(tag: u64) -> u64 {
    hold();
    tag + 3
}

#[pipeline]
fn killed(tag: u64) -> Artifact<u64> {
    lv_killed(tag)
}

#[pipeline]
fn reopened(tag: u64) -> Artifact<u64> {
    lv_reopened(tag)
}

#[pipeline]
fn live(tag: u64) -> Artifact<u64> {
    lv_live(tag)
}

/// The tag every run uses, so that parent and child compute the same cache key.
const TAG: u64 = 7;

#[test]
fn child_holds_a_lease() {
    let Ok(which) = std::env::var(CHILD_PIPELINE) else {
        return; // only does work when started by the tests below
    };
    let p = match which.as_str() {
        "killed" => killed(TAG),
        "reopened" => reopened(TAG),
        _ => live(TAG),
    };
    p.run().unwrap();
}

/// Starts a child running pipeline `which` on the store at `home`.
fn spawn_child(which: &str, home: &Path, markers: &Path) -> Child {
    fs::create_dir_all(markers).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_a_lease", "--test-threads=1"])
        .env(CHILD_DIR, markers)
        .env(CHILD_PIPELINE, which)
        .env("PIPELINE_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `done` until it holds. The bound only keeps a broken build from hanging; the
/// tests assert nothing about time.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < until, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A handle whose leases live an hour without a heartbeat.
fn hour_long_leases(home: &Path) -> Store {
    Store::open_with(
        home,
        StoreOptions {
            lease_ttl: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn leases(home: &Path) -> i64 {
    rusqlite::Connection::open(home.join("metadata.sqlite"))
        .unwrap()
        .query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
        .unwrap()
}

/// The status of the one run of `pipeline` that is not `except`.
fn child_run_status(store: &Store, pipeline: &str, except: Option<&str>) -> RunStatus {
    let runs: Vec<_> = store
        .runs(Some(pipeline))
        .unwrap()
        .into_iter()
        .filter(|r| Some(r.id.as_str()) != except)
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].status
}

#[test]
fn a_killed_holder_is_taken_over_at_once_and_its_run_failed() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    // Opened before the child exists: its own recovery finds nothing, so the takeover
    // below happens when the run claims the key.
    let store = hour_long_leases(&home);
    let markers = dir.path().join("markers");
    let mut child = spawn_child("killed", &home, &markers);
    wait_until("the child holds its lease", || {
        markers.join("started").exists()
    });
    child.kill().unwrap(); // SIGKILL: no cleanup of its own
    child.wait().unwrap();
    assert_eq!(leases(&home), 1, "the killed child left its lease");
    assert_eq!(
        child_run_status(&store, "killed", None),
        RunStatus::Running,
        "and its run marked running"
    );

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn({
        let store = store.clone();
        move || {
            // The receiver is gone only when the test already failed.
            let _ = done.send(killed(TAG).store(store).run().unwrap());
        }
    });
    // A run that waited out the lease would take an hour; the bound only turns that into
    // a failure instead of a hang.
    let run = finished
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "the run is waiting for the killed holder's lease: {:#?}",
                logs.lines()
            )
        });
    assert_eq!(status_of(&run, "lv_killed"), StepStatus::Executed);
    assert_eq!(run.output().load().unwrap(), TAG + 1);
    assert!(
        !logs
            .lines()
            .iter()
            .any(|l| l.contains("`lv_killed` is waiting for")),
        "the run waited for a dead holder: {:#?}",
        logs.lines()
    );
    assert_eq!(
        child_run_status(&store, "killed", Some(run.id())),
        RunStatus::Failed,
        "the dead holder's run is failed when its key is taken over"
    );
    assert_eq!(leases(&home), 0);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn reopening_the_store_after_a_kill_recovers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let markers = dir.path().join("markers");
    let mut child = spawn_child("reopened", &home, &markers);
    wait_until("the child holds its lease", || {
        markers.join("started").exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let store = hour_long_leases(&home);
    assert_eq!(
        child_run_status(&store, "reopened", None),
        RunStatus::Failed
    );
    assert_eq!(leases(&home), 0, "the killed child's lease is gone");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let run = reopened(TAG).store(store).run().unwrap();
    assert_eq!(status_of(&run, "lv_reopened"), StepStatus::Executed);
}

#[test]
fn a_live_holder_keeps_its_lease_and_run_and_is_waited_for() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let markers = dir.path().join("markers");
    let mut child = spawn_child("live", &home, &markers);
    wait_until("the child holds its lease", || {
        markers.join("started").exists()
    });

    // Opening runs recovery: it must leave a live process's run and lease alone.
    let store = hour_long_leases(&home);
    assert_eq!(child_run_status(&store, "live", None), RunStatus::Running);
    assert_eq!(leases(&home), 1);
    let report = store.verify().unwrap();
    assert!(
        report.is_ok(),
        "a live run is no problem: {:?}",
        report.problems
    );

    let waiting = std::thread::spawn({
        let store = store.clone();
        move || live(TAG).store(store).run().unwrap()
    });
    wait_until("the run waits for the child", || {
        logs.lines().iter().any(|l| {
            l.contains("Step `lv_live` is waiting for step `lv_live` of run `live-")
                && l.contains("(pid ")
        })
    });
    fs::write(markers.join("release"), b"").unwrap();
    assert!(child.wait().unwrap().success());

    let run = waiting.join().unwrap();
    assert_eq!(
        status_of(&run, "lv_live"),
        StepStatus::Cached,
        "the live holder's result is reused, not computed again"
    );
    assert_eq!(run.output().load().unwrap(), TAG + 3);
    assert_eq!(
        child_run_status(&store, "live", Some(run.id())),
        RunStatus::Completed
    );
    assert_eq!(leases(&home), 0);
}
