//! `async fn` steps (issue 17, feature `tokio`): they wait without a `max_parallelism`
//! slot, so 50 sleeping steps overlap with `max_parallelism(2)`.
//!
//! Run with `cargo test --features tokio --test async_steps` (the README's test command
//! does). Without the feature an `async fn` step is a compile error that names it
//! (`tests/ui/step/async-fn.rs`).
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::temp_store;
use pipeline::prelude::*;

/// How many `nap` bodies are between their start and their end right now, and the most
/// there ever were.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

#[step]
async fn nap(i: u32) -> u32 {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    i * 2
}

#[pipeline]
fn naps(n: u32) -> Vec<Artifact<u32>> {
    (0..n).map(nap).collect()
}

#[test]
fn fifty_sleeping_async_steps_overlap_with_max_parallelism_2() {
    let (_dir, store) = temp_store();
    let run = naps(50)
        .store(store.clone())
        .max_parallelism(2)
        .run()
        .unwrap();
    let values: Vec<u32> = run.output().iter().map(|a| a.load().unwrap()).collect();
    assert_eq!(values, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    // Not a timing threshold: the bodies were asleep at the same time, far more of them
    // than the 2 slots.
    let most = MOST.load(Ordering::SeqCst);
    assert!(
        most > 2,
        "at most {most} async steps were in flight at once"
    );

    // Cached like any step.
    let again = naps(50).store(store).max_parallelism(2).run().unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

#[step]
async fn fails_async(n: u32) -> Result<u32, std::fmt::Error> {
    tokio::task::yield_now().await;
    if n == 0 {
        Err(std::fmt::Error)
    } else {
        Ok(n)
    }
}

#[step]
async fn panics_async(n: u32) -> u32 {
    tokio::task::yield_now().await;
    assert!(n > 0, "n must be positive");
    n
}

#[pipeline]
fn broken_async() -> (Artifact<u32>, Artifact<u32>) {
    (fails_async(0), panics_async(0))
}

#[test]
fn an_async_step_fails_with_its_error_or_its_panic() {
    let (_dir, store) = temp_store();
    let err = broken_async().store(store.clone()).run().unwrap_err();
    let Error::StepFailed { run, .. } = &err else {
        panic!("{err:?}");
    };
    let steps = store.run_steps(run).unwrap();
    let error = |name: &str| {
        steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.error.clone())
            .unwrap_or_default()
    };
    assert!(
        error("fails_async").contains("an error occurred"),
        "{steps:?}"
    );
    assert!(
        error("panics_async").contains("n must be positive"),
        "{steps:?}"
    );
}

#[test]
fn the_plain_function_of_an_async_step_is_async() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(nap::call(4)), 8);
}
