//! Cancelling a run: running steps finish, unstarted ones are skipped, the run ends
//! `Cancelled` in the report and in the store, and a rerun resumes.

mod common;

use std::sync::Mutex;

use common::{status_of, temp_store};
use pipeline::prelude::*;
use pipeline::{CancelToken, RunStatus};

/// The token the `first` step cancels while it runs, as a user's watchdog would.
static CANCEL_FROM_STEP: Mutex<Option<CancelToken>> = Mutex::new(None);

#[step]
fn first(n: u64) -> u64 {
    if let Some(token) = CANCEL_FROM_STEP.lock().unwrap().as_ref() {
        token.cancel();
    }
    n + 1
}

#[step]
fn second(x: &u64) -> u64 {
    x * 2
}

#[step]
fn third(x: &u64) -> u64 {
    x + 3
}

#[pipeline]
fn chain(n: u64) -> Artifact<u64> {
    let a = first(n);
    let b = second(&a);
    third(&b)
}

#[test]
fn a_cancelled_run_finishes_its_running_step_and_skips_the_rest() {
    let (_dir, store) = temp_store();
    let token = CancelToken::new();
    *CANCEL_FROM_STEP.lock().unwrap() = Some(token.clone());
    let p = chain(1)
        .store(store.clone())
        .max_parallelism(1)
        .run_name("cancelled");
    let err = p.clone().cancel_token(token.clone()).run().unwrap_err();
    *CANCEL_FROM_STEP.lock().unwrap() = None;
    assert!(token.is_cancelled());
    let Error::Cancelled { run, not_run } = &err else {
        panic!("expected Error::Cancelled, got {err:?}")
    };
    assert_eq!((run.as_str(), *not_run), ("cancelled", 2));
    assert!(err.to_string().contains("run the pipeline again"), "{err}");

    // The store records the running step as executed, the rest as skipped for the
    // cancellation, and the run as cancelled.
    let record = store.run("cancelled").unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    assert_eq!((record.executed, record.skipped), (1, 2));
    let steps = store.run_steps("cancelled").unwrap();
    let recorded: Vec<(&str, StepStatus, Option<&str>)> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.status, s.reason.as_deref()))
        .collect();
    assert_eq!(recorded[0].0, "first");
    assert_eq!(recorded[0].1, StepStatus::Executed);
    for (name, status, reason) in &recorded[1..] {
        assert_eq!(*status, StepStatus::Skipped, "{name}");
        assert_eq!(
            *reason,
            Some("run cancelled before the step started"),
            "{name}"
        );
    }

    // A rerun with a fresh token resumes: `first` is cached, the others execute.
    let rerun = p
        .cancel_token(CancelToken::new())
        .run_name("resumed")
        .run()
        .unwrap();
    assert_eq!(status_of(&rerun, "first"), StepStatus::Cached);
    assert_eq!(status_of(&rerun, "second"), StepStatus::Executed);
    assert_eq!(status_of(&rerun, "third"), StepStatus::Executed);
    assert_eq!(rerun.output().load().unwrap(), 7);
    assert_eq!(store.run("resumed").unwrap().status, RunStatus::Completed);
}

#[step]
fn lone(n: u64) -> u64 {
    n
}

#[pipeline]
fn two_lone(n: u64) -> (Artifact<u64>, Artifact<u64>) {
    (lone(n), lone(n + 1))
}

#[test]
fn a_token_cancelled_before_the_run_starts_no_step_and_a_clone_cancels_too() {
    let (_dir, store) = temp_store();
    let token = CancelToken::new();
    token.clone().cancel();
    let err = two_lone(5)
        .store(store.clone())
        .cancel_token(token)
        .run()
        .unwrap_err();
    assert!(
        matches!(err, Error::Cancelled { not_run: 2, .. }),
        "{err:?}"
    );
    let runs = store.runs(Some("two_lone")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Cancelled);
    assert_eq!(runs[0].executed + runs[0].cached, 0);
    // No cancel token, no cancellation.
    let run = two_lone(5).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&run, "lone"), StepStatus::Executed);
    assert_eq!(status_of(&run, "lone_2"), StepStatus::Executed);
}
