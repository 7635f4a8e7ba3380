//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use pipeline::prelude::*;

/// A fresh temporary store directory (removed on drop).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    (dir, store)
}

/// The arguments a worker process of a test binary is started with: they select the
/// binary's `worker_entry` test, which calls `pipeline::worker::enter()` (the harness's
/// `main` is not ours).
pub const WORKER_ENTRY: [&str; 4] = ["--exact", "worker_entry", "--nocapture", "--test-threads=1"];

/// `p` with its steps run on `backend`; a test binary that uses
/// [`ExecutorKind::Processes`](pipeline::config::ExecutorKind) has a `worker_entry` test.
pub fn on_backend<O: pipeline::PipelineOutput>(
    p: pipeline::Pipeline<O>,
    backend: pipeline::config::ExecutorKind,
) -> pipeline::Pipeline<O> {
    p.executor(backend).worker_args(WORKER_ENTRY)
}

/// Statuses of a run's steps by name, in pipeline order.
pub fn statuses<O>(run: &Run<O>) -> Vec<(String, StepStatus)> {
    run.steps()
        .iter()
        .map(|s| (s.name().to_string(), s.status()))
        .collect()
}

pub fn status_of<O>(run: &Run<O>, step: &str) -> StepStatus {
    run.step(step)
        .unwrap_or_else(|| panic!("no step `{step}` in run"))
        .status()
}

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }
}

/// Installs (once per test binary) a global subscriber that records `pipeline` events as
/// bare lines (`LEVEL message`), and returns the buffer.
pub fn capture_logs() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            captured
        })
        .clone()
}

/// Makes every blob of `store` an hour old, so gc with the default minimum age may take
/// it.
pub fn age_all_blobs(store: &Store) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for fanout in std::fs::read_dir(store.path().join("artifacts"))
        .unwrap()
        .flatten()
    {
        if fanout.file_name() == "tmp" {
            continue;
        }
        for blob in std::fs::read_dir(fanout.path()).unwrap().flatten() {
            let times = std::fs::FileTimes::new()
                .set_modified(old)
                .set_accessed(old);
            std::fs::File::options()
                .write(true)
                .open(blob.path())
                .unwrap()
                .set_times(times)
                .unwrap();
        }
    }
}

/// Executions per label (e.g. `"fit 0.5"`) since the test process started: a step body
/// calls [`count`], a test reads [`executed`]. Labels carry a per-test tag, so tests that
/// run at once in one process do not see each other's counts.
fn executions() -> &'static Mutex<std::collections::HashMap<String, usize>> {
    static COUNTS: OnceLock<Mutex<std::collections::HashMap<String, usize>>> = OnceLock::new();
    COUNTS.get_or_init(|| Mutex::new(std::collections::HashMap::new()))
}

/// Counts one execution of `what` (see [`executed`]).
pub fn count(what: String) {
    *executions()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(what)
        .or_default() += 1;
}

/// How many times `what` was counted in this process.
pub fn executed(what: &str) -> usize {
    executions()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(what)
        .copied()
        .unwrap_or(0)
}
