//! Failure semantics: Err and panic fail a step, downstream is skipped, independent
//! branches finish, and a rerun resumes from the cache. On threads and in worker
//! processes (`ExecutorKind::Processes`, acceptance 7 of issue 16): the same scenario.
//!
//! Steps may run in another process, so what they share with the test (whether the
//! sensor is broken, how often a step ran) is in files of the scenario's folder, named by
//! `PIPELINE_FAILURE_DIR` (set before each run; the scenarios run one at a time).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::{on_backend, status_of, temp_store};
use pipeline::config::ExecutorKind;
use pipeline::prelude::*;
use pipeline::Reason;

const DIR: &str = "PIPELINE_FAILURE_DIR";

/// The scenarios share `PIPELINE_FAILURE_DIR`, so they run one at a time.
static SCENARIO: Mutex<()> = Mutex::new(());

fn scenario_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("the scenario's folder"))
}

fn broken() -> bool {
    !scenario_dir().join("fixed").exists()
}

/// Counts a call of `step` (one line per call, appended in one write).
fn count_call(step: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(scenario_dir().join("calls"))
        .unwrap();
    f.write_all(format!("{step}\n").as_bytes()).unwrap();
}

fn calls(step: &str) -> usize {
    std::fs::read_to_string(scenario_dir().join("calls"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == step)
        .count()
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

#[derive(Debug)]
struct Flaky;

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sensor is offline")
    }
}
impl std::error::Error for Flaky {}

#[step]
fn source() -> Vec<i64> {
    count_call("source");
    vec![1, 2, 3]
}

#[step]
fn fallible(xs: &[i64]) -> Result<i64, Flaky> {
    if broken() {
        Err(Flaky)
    } else {
        Ok(xs.iter().sum())
    }
}

#[step]
fn explosive(xs: &[i64]) -> i64 {
    if broken() {
        panic!("division by zero in explosive");
    }
    xs.iter().product()
}

#[step]
fn after_fallible(x: i64) -> i64 {
    x + 1
}

#[step]
fn after_explosive(x: &i64) -> i64 {
    x * 2
}

#[step]
fn independent(xs: &[i64]) -> usize {
    count_call("independent");
    xs.len()
}

#[pipeline]
fn fragile() -> (Artifact<i64>, Artifact<i64>, Artifact<usize>) {
    let xs = source();
    let a = fallible(&xs);
    let b = explosive(&xs);
    (after_fallible(&a), after_explosive(&b), independent(&xs))
}

#[test]
fn failures_skip_downstream_and_a_rerun_resumes_on_threads() {
    failures_skip_downstream_and_a_rerun_resumes(ExecutorKind::Threads);
}

#[test]
fn failures_skip_downstream_and_a_rerun_resumes_in_processes() {
    failures_skip_downstream_and_a_rerun_resumes(ExecutorKind::Processes);
}

fn failures_skip_downstream_and_a_rerun_resumes(backend: ExecutorKind) {
    let _one_at_a_time = SCENARIO.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, store) = temp_store();
    std::env::set_var(DIR, dir.path());
    let p = on_backend(fragile().store(store.clone()).max_parallelism(2), backend);

    let err = p.run().expect_err("two steps fail");
    let Error::StepFailed {
        step,
        message,
        run,
        others,
        source,
    } = &err
    else {
        panic!("expected StepFailed, got {err:?}");
    };
    assert!(
        (step == "fallible" && message.contains("the sensor is offline"))
            || (step == "explosive" && message.contains("division by zero")),
        "{err}"
    );
    // The returned error is kept as the source; a panic has none. A worker process
    // reports its error as text (with the end of its stderr).
    match step.as_str() {
        "fallible" if backend == ExecutorKind::Processes => assert!(
            message.contains("the worker's stderr ends with"),
            "{message}"
        ),
        "fallible" => assert!(
            source.as_ref().is_some_and(|s| s.is::<Flaky>()),
            "{source:?}"
        ),
        _ => assert!(source.is_none(), "{source:?}"),
    }
    assert_eq!(others.len(), 1, "the other failure is listed too: {err}");
    assert!(err.to_string().contains(step.as_str()));

    // The run is recorded: statuses, error messages, the independent branch's output.
    let steps = store.run_steps(run).unwrap();
    let status = |name: &str| steps.iter().find(|s| s.name == name).unwrap().status;
    assert_eq!(status("source"), StepStatus::Executed);
    assert_eq!(status("fallible"), StepStatus::Failed);
    assert_eq!(status("explosive"), StepStatus::Failed);
    assert_eq!(status("after_fallible"), StepStatus::Skipped);
    assert_eq!(status("after_explosive"), StepStatus::Skipped);
    assert_eq!(status("independent"), StepStatus::Executed);
    let explosive = steps.iter().find(|s| s.name == "explosive").unwrap();
    assert!(explosive
        .error
        .as_deref()
        .unwrap()
        .contains("division by zero"));
    let skipped = steps.iter().find(|s| s.name == "after_fallible").unwrap();
    assert!(skipped.reason.as_deref().unwrap().contains("`fallible`"));
    let len: usize = store.load(run, "independent", "output").unwrap();
    assert_eq!(len, 3);
    let source_calls = calls("source");
    let branch_calls = calls("independent");
    assert_eq!((source_calls, branch_calls), (1, 1));

    // Fixed: only the failed and skipped steps execute.
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let rerun = p.run().unwrap();
    assert_eq!(status_of(&rerun, "source"), StepStatus::Cached);
    assert_eq!(status_of(&rerun, "independent"), StepStatus::Cached);
    for name in ["fallible", "explosive", "after_fallible", "after_explosive"] {
        assert_eq!(status_of(&rerun, name), StepStatus::Executed, "{name}");
    }
    assert_eq!(calls("source"), source_calls);
    assert_eq!(calls("independent"), branch_calls);
    assert!(matches!(
        rerun.step("fallible").unwrap().reason(),
        Reason::FirstExecution
    ));
    let (a, b, n) = rerun.output();
    assert_eq!(a.load().unwrap(), 7);
    assert_eq!(b.load().unwrap(), 12);
    assert_eq!(n.load().unwrap(), 3);
}
