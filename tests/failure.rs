//! Failure semantics: Err and panic fail a step, downstream is skipped, independent
//! branches finish, and a rerun resumes from the cache.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use common::{status_of, temp_store};
use pipeline::prelude::*;
use pipeline::Reason;

static BROKEN: AtomicBool = AtomicBool::new(true);
static SOURCE_CALLS: AtomicUsize = AtomicUsize::new(0);
static BRANCH_CALLS: AtomicUsize = AtomicUsize::new(0);

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
    SOURCE_CALLS.fetch_add(1, SeqCst);
    vec![1, 2, 3]
}

#[step]
fn fallible(xs: &[i64]) -> Result<i64, Flaky> {
    if BROKEN.load(SeqCst) {
        Err(Flaky)
    } else {
        Ok(xs.iter().sum())
    }
}

#[step]
fn explosive(xs: &[i64]) -> i64 {
    if BROKEN.load(SeqCst) {
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
    BRANCH_CALLS.fetch_add(1, SeqCst);
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
fn failures_skip_downstream_and_a_rerun_resumes() {
    let (_dir, store) = temp_store();
    let p = fragile().store(store.clone()).max_parallelism(2);

    BROKEN.store(true, SeqCst);
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
    // The returned error is kept as the source; a panic has none.
    match step.as_str() {
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
    let source_calls = SOURCE_CALLS.load(SeqCst);
    let branch_calls = BRANCH_CALLS.load(SeqCst);

    // Fixed: only the failed and skipped steps execute.
    BROKEN.store(false, SeqCst);
    let rerun = p.run().unwrap();
    assert_eq!(status_of(&rerun, "source"), StepStatus::Cached);
    assert_eq!(status_of(&rerun, "independent"), StepStatus::Cached);
    for name in ["fallible", "explosive", "after_fallible", "after_explosive"] {
        assert_eq!(status_of(&rerun, name), StepStatus::Executed, "{name}");
    }
    assert_eq!(SOURCE_CALLS.load(SeqCst), source_calls);
    assert_eq!(BRANCH_CALLS.load(SeqCst), branch_calls);
    assert!(matches!(
        rerun.step("fallible").unwrap().reason(),
        Reason::FirstExecution
    ));
    let (a, b, n) = rerun.output();
    assert_eq!(a.load().unwrap(), 7);
    assert_eq!(b.load().unwrap(), 12);
    assert_eq!(n.load().unwrap(), 3);
}
