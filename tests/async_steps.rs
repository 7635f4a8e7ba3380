//! `async fn` steps (issue 17, feature `tokio`): they wait without a `max_parallelism`
//! slot and without a thread, so 300 sleeping steps overlap with `max_parallelism(2)` on a
//! handful of threads; retries, timeouts, the step context, panics and cancellation work
//! in the async body as in a plain step.
//!
//! Run with `cargo test --features tokio --test async_steps` (the README's test command
//! does). Without the feature an `async fn` step is a compile error that names it
//! (`tests/ui/step/async-fn.rs`).
#![cfg(feature = "tokio")]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{on_backend, status_of, temp_store};
use pipeline::config::ExecutorKind;
use pipeline::prelude::*;
use pipeline::CancelToken;

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

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
fn a_run_started_inside_a_tokio_runtime_drives_its_async_steps() {
    // `run()` is synchronous; called from a thread of another runtime it still works (the
    // run's own runtime is started and stopped beside that one).
    let (_dir, store) = temp_store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let values: Vec<u32> = rt.block_on(async {
        let run = echoes().store(store).run().unwrap();
        run.output().iter().map(|a| a.load().unwrap()).collect()
    });
    assert_eq!(values, [1, 2, 3]);
}

#[step]
async fn echo_async(i: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    i
}

#[pipeline]
fn echoes() -> Vec<Artifact<u32>> {
    (1..4).map(echo_async).collect()
}

#[test]
fn the_plain_function_of_an_async_step_is_async() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(nap::call(4)), 8);
}

// ---------------------------------------------------------------------------------------
// Waiting without a thread

static DOZING: AtomicUsize = AtomicUsize::new(0);
static DOZING_MOST: AtomicUsize = AtomicUsize::new(0);
/// The most threads the test process had while `doze` bodies slept.
static THREADS_MOST: AtomicUsize = AtomicUsize::new(0);

/// The threads of this process now (Linux: `/proc/self/task`); `None` elsewhere.
fn threads_now() -> Option<usize> {
    if cfg!(target_os = "linux") {
        std::fs::read_dir("/proc/self/task")
            .ok()
            .map(Iterator::count)
    } else {
        None
    }
}

#[step]
async fn doze(i: u32) -> u32 {
    let now = DOZING.fetch_add(1, Ordering::SeqCst) + 1;
    DOZING_MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Half way through the nap, while the others sleep too.
    if let Some(threads) = threads_now() {
        THREADS_MOST.fetch_max(threads, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    DOZING.fetch_sub(1, Ordering::SeqCst);
    i + 1
}

#[pipeline]
fn dozes(n: u32) -> Vec<Artifact<u32>> {
    (0..n).map(doze).collect()
}

#[test]
fn three_hundred_sleeping_async_steps_wait_without_a_thread_each() {
    let (_dir, store) = temp_store();
    // Caching off: a cached step's key is claimed on the coordinator before it starts,
    // one store transaction each (a parameter blob and the claim, ~1-10 ms on this
    // machine's disk), which would space the starts out over more than the naps last.
    // This test is about the waiting, not the claims.
    let run = dozes(300)
        .store(store)
        .enable_cache(false)
        .max_parallelism(2)
        .run()
        .unwrap();
    let values: Vec<u32> = run.output().iter().map(|a| a.load().unwrap()).collect();
    assert_eq!(values, (1..=300).collect::<Vec<_>>());
    // They slept at the same time: nearly all of them, far more than the 2 slots.
    let most = DOZING_MOST.load(Ordering::SeqCst);
    assert!(
        most >= 250,
        "at most {most} of 300 async steps were in flight at once"
    );
    // And no thread waited for each: the runtime's 2 workers, the run's 2 helpers, the
    // coordinator and the test harness's threads (another test may run beside this one).
    if threads_now().is_some() {
        let threads = THREADS_MOST.load(Ordering::SeqCst);
        assert!(
            threads < 40,
            "the process had {threads} threads while 300 async steps waited"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Retries

#[derive(Debug)]
struct Offline(u32);

impl std::fmt::Display for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the sensor is offline (call {})", self.0)
    }
}
impl std::error::Error for Offline {}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails on its first two attempts (an `Err`, then a panic after an await), then succeeds.
#[step(retries = 3, retry_delay = "10ms", backoff = 2.0)]
async fn flaky_fetch(n: u32) -> Result<u32, Offline> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    let attempt = pipeline::context().expect("inside a step").attempt();
    tokio::task::yield_now().await;
    match attempt {
        1 => Err(Offline(1)),
        2 => panic!("the sensor answered garbage"),
        _ => Ok(n * 2),
    }
}

#[pipeline]
fn fetched(n: u32) -> Artifact<u32> {
    flaky_fetch(n)
}

#[test]
fn an_async_step_is_retried_and_every_attempt_is_recorded() {
    let (_dir, store) = temp_store();
    let run = fetched(4).store(store.clone()).run().unwrap();
    assert_eq!(run.output().load().unwrap(), 8);
    assert_eq!(status_of(&run, "flaky_fetch"), StepStatus::Executed);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3, "three attempts ran");

    let steps = store.run_steps(run.id()).unwrap();
    let step = &steps[0];
    let attempts: Vec<(u32, Option<&str>)> = step
        .attempts
        .iter()
        .map(|a| (a.attempt, a.error.as_deref()))
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[0]
        .1
        .unwrap()
        .contains("the sensor is offline (call 1)"));
    assert!(attempts[1]
        .1
        .unwrap()
        .contains("panicked: the sensor answered garbage"));
    assert_eq!(attempts[2], (3, None));
    assert!(step.error.is_none(), "the final outcome decides");
}

// ---------------------------------------------------------------------------------------
// Timeouts and cancellation: the future is dropped

/// Sets its flag when dropped: the async body's future was dropped.
struct SetOnDrop(&'static AtomicBool);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

static STALLS_DROPPED: AtomicBool = AtomicBool::new(false);
static STALLS_WOKE: AtomicBool = AtomicBool::new(false);

#[step(timeout = "1s")]
async fn stalls(seconds: u64) -> u64 {
    let _dropped = SetOnDrop(&STALLS_DROPPED);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    STALLS_WOKE.store(true, Ordering::SeqCst);
    seconds
}

#[step]
fn after_stalls(x: u64) -> u64 {
    x + 1
}

#[pipeline]
fn stalled(seconds: u64) -> Artifact<u64> {
    let x = stalls(seconds);
    after_stalls(&x)
}

#[test]
fn an_async_step_past_its_timeout_is_dropped_and_fails() {
    let (_dir, store) = temp_store();
    let err = stalled(10).store(store.clone()).run().unwrap_err();
    let Error::StepFailed {
        step, run, message, ..
    } = &err
    else {
        panic!("expected StepFailed, got {err:?}");
    };
    assert_eq!(step, "stalls");
    assert!(message.contains("timed out after 1s"), "{message}");
    // A real cancel: the future was dropped before it woke, not left running.
    assert!(
        STALLS_DROPPED.load(Ordering::SeqCst),
        "the future was not dropped"
    );
    assert!(
        !STALLS_WOKE.load(Ordering::SeqCst),
        "the body ran to its end"
    );
    let steps = store.run_steps(run).unwrap();
    let stalls = steps.iter().find(|s| s.name == "stalls").unwrap();
    assert_eq!(stalls.status, StepStatus::Failed);
    assert!(stalls.outputs.is_empty(), "no output is recorded");
    let after = steps.iter().find(|s| s.name == "after_stalls").unwrap();
    assert_eq!(after.status, StepStatus::Skipped);

    // With more time (the run's override), it runs to its end.
    let run = stalled(0)
        .store(store)
        .step_timeout("stalls", Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 1);
}

static LONG_DROPPED: AtomicBool = AtomicBool::new(false);

#[step]
async fn waits_long(seconds: u64) -> u64 {
    let _dropped = SetOnDrop(&LONG_DROPPED);
    LONG_STARTED.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    seconds
}

#[pipeline]
fn long_wait(seconds: u64) -> Artifact<u64> {
    waits_long(seconds)
}

/// Runs `long_wait(600)` and cancels it once `waits_long` waits: the run is cancelled, the
/// future dropped, and the step recorded skipped.
fn cancel_a_waiting_async_step(cache: bool) {
    LONG_STARTED.store(false, Ordering::SeqCst);
    LONG_DROPPED.store(false, Ordering::SeqCst);
    let (_dir, store) = temp_store();
    let token = CancelToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            while !LONG_STARTED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            token.cancel();
        })
    };
    let err = long_wait(600)
        .store(store.clone())
        .enable_cache(cache)
        .cancel_token(token)
        .run()
        .unwrap_err();
    canceller.join().unwrap();
    let Error::Cancelled { run, not_run } = &err else {
        panic!("expected Cancelled, got {err:?}");
    };
    assert_eq!(*not_run, 1);
    assert!(
        LONG_DROPPED.load(Ordering::SeqCst),
        "the future was not dropped"
    );
    let steps = store.run_steps(run).unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].status, StepStatus::Skipped, "{steps:?}");
    assert!(
        steps[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("run cancelled while the step ran")),
        "{steps:?}"
    );

    // Not cached: the next run executes it.
    let run = long_wait(0).store(store).run().unwrap();
    assert_eq!(status_of(&run, "waits_long"), StepStatus::Executed);
}

/// One at a time: they share `waits_long`'s flags.
static LONG_SCENARIO: Mutex<()> = Mutex::new(());

#[test]
fn cancelling_the_run_drops_a_waiting_async_step() {
    let _one = LONG_SCENARIO.lock().unwrap_or_else(|p| p.into_inner());
    cancel_a_waiting_async_step(true);
}

#[test]
fn cancelling_the_run_drops_a_waiting_async_step_with_caching_off() {
    let _one = LONG_SCENARIO.lock().unwrap_or_else(|p| p.into_inner());
    cancel_a_waiting_async_step(false);
}

/// Whether `waits_long`'s future has been polled (it holds its drop guard from then on).
static LONG_STARTED: AtomicBool = AtomicBool::new(false);

// ---------------------------------------------------------------------------------------
// The step context

static SCRATCH: Mutex<Option<(PathBuf, String)>> = Mutex::new(None);

#[step]
async fn measure_async(xs: Vec<f64>) -> f64 {
    let ctx = pipeline::context().expect("in an async body");
    assert_eq!(ctx.step_name(), "measure_async");
    assert_eq!(ctx.attempt(), 1);
    let scratch = ctx.scratch_dir().unwrap().to_path_buf();
    std::fs::write(scratch.join("partial"), b"x").unwrap();
    *SCRATCH.lock().unwrap() = Some((scratch, ctx.run_id().to_string()));
    // After an await the body may go on on another thread of the runtime: the context
    // follows it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ctx = pipeline::context().expect("after an await");
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    ctx.log_metric("mean", mean).unwrap();
    ctx.log_metadata("rows", xs.len());
    ctx.output_metadata("output", "unit", "kelvin").unwrap();
    mean
}

#[pipeline]
fn measured(xs: Vec<f64>) -> Artifact<f64> {
    measure_async(xs)
}

#[test]
fn the_context_works_in_an_async_body() {
    let (_dir, store) = temp_store();
    let run = measured(vec![1.0, 2.0, 6.0])
        .store(store.clone())
        .run()
        .unwrap();
    let (scratch, run_id) = SCRATCH.lock().unwrap().clone().expect("the body ran");
    assert_eq!(run_id, run.id());
    assert!(
        !scratch.exists(),
        "the scratch dir is removed after the step"
    );
    let step = &store.run_steps(run.id()).unwrap()[0];
    assert_eq!(step.metrics.get("mean"), Some(&3.0));
    assert_eq!(step.metadata["rows"], 3);
    assert_eq!(
        step.outputs[0]
            .metadata
            .as_ref()
            .and_then(|m| m.get("unit")),
        Some(&serde_json::json!("kelvin")),
    );
    // Outside a step (here, in a future on a runtime of the test's own) it is an error.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(rt.block_on(async { pipeline::context() }).is_err());
}

// ---------------------------------------------------------------------------------------
// Worker processes

#[pipeline]
fn few_naps() -> Vec<Artifact<u32>> {
    (10..13).map(doze).collect()
}

#[test]
fn an_async_step_runs_in_a_worker_process_on_a_runtime_of_its_own() {
    let (_dir, store) = temp_store();
    let run = on_backend(few_naps().store(store), ExecutorKind::Processes)
        .run()
        .unwrap();
    let values: Vec<u32> = run.output().iter().map(|a| a.load().unwrap()).collect();
    assert_eq!(values, [11, 12, 13]);
}

#[step]
fn ids(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
async fn fetch_async(id: &u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    id + 100
}

#[step]
fn sum_all(xs: &[u32]) -> u32 {
    xs.iter().sum()
}

#[pipeline]
fn fetched_per_item(n: u32) -> Artifact<u32> {
    let fetched = ids(n).map(|id| fetch_async(id));
    sum_all(&fetched)
}

#[test]
fn async_steps_run_per_item_in_a_map_and_are_cached_per_item() {
    let (_dir, store) = temp_store();
    let first = fetched_per_item(6)
        .store(store.clone())
        .max_parallelism(2)
        .run()
        .unwrap();
    assert_eq!(
        first.output().load().unwrap(),
        (0..6).map(|i| i + 100).sum::<u32>()
    );
    assert_eq!(status_of(&first, "fetch_async[5]"), StepStatus::Executed);
    // One more item: only its async call runs.
    let more = fetched_per_item(7).store(store).run().unwrap();
    let executed: Vec<&str> = more
        .steps()
        .iter()
        .filter(|s| s.step() == "fetch_async" && s.status() == StepStatus::Executed)
        .map(|s| s.name())
        .collect();
    assert_eq!(executed, ["fetch_async[6]"]);
    assert_eq!(
        more.output().load().unwrap(),
        (0..7).map(|i| i + 100).sum::<u32>()
    );
}
