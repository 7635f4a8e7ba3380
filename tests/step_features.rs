//! What users expect of a step (issue 17): retries, timeouts and the step context, on
//! threads and in worker processes.
//!
//! Steps may run in another process, so what they share with the test (how often a step
//! ran, its process id) is in files of the scenario's folder, named by
//! `PIPELINE_FEATURES_DIR` (set before each run; the scenarios run one at a time).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::{on_backend, status_of, temp_store};
use pipeline::config::ExecutorKind;
use pipeline::prelude::*;

const DIR: &str = "PIPELINE_FEATURES_DIR";

static SCENARIO: Mutex<()> = Mutex::new(());

fn scenario_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("the scenario's folder"))
}

/// Appends `line` to the scenario's file `name` (one write per line).
fn note(name: &str, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(scenario_dir().join(name))
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn noted(name: &str) -> Vec<String> {
    std::fs::read_to_string(scenario_dir().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

fn scenario(
    backend: ExecutorKind,
) -> (std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Store) {
    let guard = SCENARIO.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, store) = temp_store();
    std::env::set_var(DIR, dir.path());
    let _ = backend;
    (guard, dir, store)
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

/// Fails on its first two calls (an `Err`, then a panic), then succeeds.
#[step(retries = 3, retry_delay = "10ms", backoff = 2.0)]
fn flaky(n: u32) -> Result<u32, Offline> {
    let ctx = pipeline::context().expect("inside a step");
    note("flaky", &ctx.attempt().to_string());
    match ctx.attempt() {
        1 => Err(Offline(1)),
        2 => panic!("the sensor answered garbage"),
        _ => Ok(n * 2),
    }
}

#[step]
fn after_flaky(x: u32) -> u32 {
    x + 1
}

#[pipeline]
fn retried(n: u32) -> Artifact<u32> {
    let x = flaky(n);
    after_flaky(&x)
}

fn retries_record_every_attempt(backend: ExecutorKind) {
    let (_one, _dir, store) = scenario(backend);
    let run = on_backend(retried(4).store(store.clone()), backend)
        .run()
        .expect("the third attempt succeeds");
    assert_eq!(run.output().load().unwrap(), 9);
    assert_eq!(status_of(&run, "flaky"), StepStatus::Executed);
    assert_eq!(noted("flaky"), ["1", "2", "3"], "three attempts ran");

    let steps = store.run_steps(run.id()).unwrap();
    let flaky = steps.iter().find(|s| s.name == "flaky").unwrap();
    let attempts: Vec<(u32, Option<&str>)> = flaky
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
    assert!(flaky.error.is_none(), "the final outcome decides");
    // A step that ran once records no attempts.
    let after = steps.iter().find(|s| s.name == "after_flaky").unwrap();
    assert!(after.attempts.is_empty());

    // Retries are not in the key: a second run is cached.
    let again = on_backend(retried(4).store(store), backend).run().unwrap();
    assert_eq!(status_of(&again, "flaky"), StepStatus::Cached);
    assert_eq!(noted("flaky").len(), 3);
}

#[test]
fn retries_record_every_attempt_on_threads() {
    retries_record_every_attempt(ExecutorKind::Threads);
}

#[test]
fn retries_record_every_attempt_in_processes() {
    retries_record_every_attempt(ExecutorKind::Processes);
}

#[step]
fn always_fails(n: u32) -> Result<u32, Offline> {
    note("always", "called");
    Err(Offline(n))
}

#[pipeline]
fn hopeless(n: u32) -> Artifact<u32> {
    always_fails(n)
}

#[test]
fn the_run_overrides_a_steps_retries_and_the_last_failure_decides() {
    let (_one, _dir, store) = scenario(ExecutorKind::Threads);
    let err = hopeless(1)
        .store(store.clone())
        .step_retries("always_fails", 2)
        .run()
        .expect_err("every attempt fails");
    let Error::StepFailed { run, message, .. } = &err else {
        panic!("expected StepFailed, got {err:?}");
    };
    assert!(
        message.contains("the sensor is offline (call 1)"),
        "{message}"
    );
    assert_eq!(noted("always").len(), 3, "one attempt and two retries");
    let steps = store.run_steps(run).unwrap();
    let step = &steps[0];
    assert_eq!(step.status, StepStatus::Failed);
    assert_eq!(step.attempts.len(), 3);
    assert!(step.attempts.iter().all(|a| a.error.is_some()));

    let unknown = hopeless(1)
        .store(store)
        .step_retries("nope", 2)
        .run()
        .expect_err("unknown step");
    assert!(
        unknown.to_string().contains("set retries or a timeout for"),
        "{unknown}"
    );
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[step(timeout = "1s")]
fn sleepy(seconds: u64) -> u64 {
    note("sleepy-pid", &std::process::id().to_string());
    std::thread::sleep(Duration::from_secs(seconds));
    note("sleepy-woke", "woke");
    seconds
}

#[step]
fn after_sleepy(x: u64) -> u64 {
    x + 1
}

#[pipeline]
fn slow(seconds: u64) -> Artifact<u64> {
    let x = sleepy(seconds);
    after_sleepy(&x)
}

fn a_step_past_its_timeout_fails(backend: ExecutorKind) {
    let (_one, _dir, store) = scenario(backend);
    let err = on_backend(slow(10).store(store.clone()), backend)
        .run()
        .expect_err("the step times out");
    // The run ended while the body still slept (it notes when it wakes).
    assert!(
        noted("sleepy-woke").is_empty(),
        "the run waited for the body"
    );
    let Error::StepFailed {
        step, run, message, ..
    } = &err
    else {
        panic!("expected StepFailed, got {err:?}");
    };
    assert_eq!(step, "sleepy");
    assert!(message.contains("timed out after 1s"), "{message}");
    let steps = store.run_steps(run).unwrap();
    let sleepy = steps.iter().find(|s| s.name == "sleepy").unwrap();
    assert_eq!(sleepy.status, StepStatus::Failed);
    assert!(sleepy
        .error
        .as_deref()
        .unwrap()
        .contains("timed out after 1s"));
    assert!(sleepy.outputs.is_empty(), "no output is recorded");
    let after = steps.iter().find(|s| s.name == "after_sleepy").unwrap();
    assert_eq!(after.status, StepStatus::Skipped);

    if backend == ExecutorKind::Processes {
        // The worker's process is gone (it exited after recording the timeout).
        let pid = noted("sleepy-pid")[0].clone();
        assert_ne!(pid, std::process::id().to_string(), "ran in a worker");
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let mut gone = false;
        for _ in 0..100 {
            if !proc_dir.exists() || zombie(&proc_dir) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gone, "worker {pid} still runs");
    }
    // The same step with more time: the run's override replaces the step's timeout.
    let run = on_backend(slow(0).store(store), backend)
        .step_timeout("sleepy", Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 1);
}

/// Whether `/proc/<pid>` is a zombie (exited, not yet reaped by its parent).
fn zombie(proc_dir: &std::path::Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn a_step_past_its_timeout_fails_on_threads() {
    a_step_past_its_timeout_fails(ExecutorKind::Threads);
}

#[test]
fn a_step_past_its_timeout_fails_in_processes() {
    a_step_past_its_timeout_fails(ExecutorKind::Processes);
}

// ---------------------------------------------------------------------------------------
// The step context

#[step]
fn measure(xs: Vec<f64>) -> f64 {
    let ctx = pipeline::context().expect("inside a step");
    assert_eq!(ctx.step_name(), "measure");
    assert_eq!(ctx.attempt(), 1);
    let scratch = ctx.scratch_dir().unwrap().to_path_buf();
    std::fs::write(scratch.join("partial"), b"x").unwrap();
    note("scratch", scratch.to_str().unwrap());
    note("run", ctx.run_id());
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    ctx.log_metric("mean", mean).unwrap();
    ctx.log_metadata("rows", xs.len());
    ctx.log_metadata("source", serde_json::json!({"kind": "test"}));
    ctx.output_metadata("output", "unit", "kelvin").unwrap();
    mean
}

#[pipeline]
fn measured(xs: Vec<f64>) -> Artifact<f64> {
    measure(xs)
}

fn the_context_records_metadata_and_metrics(backend: ExecutorKind) {
    let (_one, _dir, store) = scenario(backend);
    let run = on_backend(measured(vec![1.0, 2.0, 6.0]).store(store.clone()), backend)
        .run()
        .unwrap();
    assert_eq!(noted("run"), [run.id().to_string()]);
    let scratch = PathBuf::from(&noted("scratch")[0]);
    assert!(
        !scratch.exists(),
        "the scratch dir is removed after the step"
    );

    let step = &store.run_steps(run.id()).unwrap()[0];
    assert_eq!(step.metrics.get("mean"), Some(&3.0));
    assert_eq!(step.metadata["rows"], 3);
    assert_eq!(step.metadata["source"]["kind"], "test");
    let output = &step.outputs[0];
    assert_eq!(
        output.metadata.as_ref().and_then(|m| m.get("unit")),
        Some(&serde_json::json!("kelvin")),
        "{:?}",
        output.metadata
    );

    // A cached step carries the metadata of the execution it reused.
    let cached = on_backend(measured(vec![1.0, 2.0, 6.0]).store(store.clone()), backend)
        .run()
        .unwrap();
    assert_eq!(status_of(&cached, "measure"), StepStatus::Cached);
    let step = &store.run_steps(cached.id()).unwrap()[0];
    assert_eq!(step.metrics.get("mean"), Some(&3.0));
    assert_eq!(step.metadata["rows"], 3);

    // One call reads the metric of every run (a sweep).
    on_backend(measured(vec![2.0, 4.0, 9.0]).store(store.clone()), backend)
        .run()
        .unwrap();
    let values: Vec<f64> = store
        .metric("measured", "mean")
        .unwrap()
        .iter()
        .map(|m| m.value)
        .collect();
    assert_eq!(values, [3.0, 3.0, 5.0]);
}

#[test]
fn the_context_records_metadata_and_metrics_on_threads() {
    the_context_records_metadata_and_metrics(ExecutorKind::Threads);
}

#[test]
fn the_context_records_metadata_and_metrics_in_processes() {
    the_context_records_metadata_and_metrics(ExecutorKind::Processes);
}

#[test]
fn the_context_outside_a_step_is_an_error() {
    let err = pipeline::context().unwrap_err();
    assert!(err.to_string().contains("outside a running step"), "{err}");
}
