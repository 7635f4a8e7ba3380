//! Cached runs: reuse, parameter changes, early cutoff, precedence, zero-load.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::{status_of, statuses, temp_store};
use pipeline::prelude::*;
use pipeline::Reason;

static LOAD_CALLS: AtomicUsize = AtomicUsize::new(0);
static SCALE_CALLS: AtomicUsize = AtomicUsize::new(0);
static TOTAL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[step]
fn load(n: u32) -> Vec<f64> {
    LOAD_CALLS.fetch_add(1, SeqCst);
    (0..n).map(f64::from).collect()
}

#[step]
fn scale(xs: &[f64], factor: f64) -> Vec<f64> {
    SCALE_CALLS.fetch_add(1, SeqCst);
    xs.iter().map(|x| x * factor).collect()
}

#[step]
fn total(xs: Vec<f64>) -> f64 {
    TOTAL_CALLS.fetch_add(1, SeqCst);
    xs.into_iter().sum()
}

#[pipeline]
fn three_steps(n: u32, factor: f64) -> Artifact<f64> {
    let xs = load(n);
    let scaled = scale(&xs, factor);
    total(scaled)
}

fn calls() -> [usize; 3] {
    [
        LOAD_CALLS.load(SeqCst),
        SCALE_CALLS.load(SeqCst),
        TOTAL_CALLS.load(SeqCst),
    ]
}

#[test]
fn second_run_is_cached_and_runs_no_step_body() {
    let (_dir, store) = temp_store();
    let p = three_steps(10, 2.0).store(store.clone());
    let first = p.run().unwrap();
    assert!(first
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Executed));
    let value: f64 = first.output().load().unwrap();
    assert_eq!(value, 90.0);

    let before = calls();
    let second = p.run().unwrap();
    assert_eq!(calls(), before, "no step body may run on a cached run");
    for (name, status) in statuses(&second) {
        assert_eq!(status, StepStatus::Cached, "step {name}");
    }
    assert_eq!(second.output().load().unwrap(), value);
    assert_eq!(
        second.step("total").unwrap().cache_key(),
        first.step("total").unwrap().cache_key()
    );
}

#[test]
fn changed_parameter_reexecutes_its_step_and_downstream_only() {
    let (_dir, store) = temp_store();
    three_steps(10, 2.0).store(store.clone()).run().unwrap();
    let run = three_steps(10, 3.0).store(store).run().unwrap();
    assert_eq!(status_of(&run, "load"), StepStatus::Cached);
    assert_eq!(status_of(&run, "scale"), StepStatus::Executed);
    assert_eq!(status_of(&run, "total"), StepStatus::Executed);
    match run.step("scale").unwrap().reason() {
        Reason::ParameterChanged { name, old, new } => {
            assert_eq!(name, "factor");
            assert_eq!((old.as_str(), new.as_str()), ("2.0", "3.0"));
        }
        other => panic!("unexpected reason {other:?}"),
    }
    assert!(run
        .step("scale")
        .unwrap()
        .reason()
        .to_string()
        .contains("`factor`"));
    assert!(matches!(
        run.step("total").unwrap().reason(),
        Reason::InputChanged { name, .. } if name == "xs"
    ));
    assert_eq!(run.output().load().unwrap(), 135.0);
}

// Early cutoff: `noisy` always re-runs but yields the same bytes.
static CUTOFF_DOWNSTREAM: AtomicUsize = AtomicUsize::new(0);

#[step(enable_cache = false)]
fn noisy(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn count(xs: &[u32]) -> usize {
    CUTOFF_DOWNSTREAM.fetch_add(1, SeqCst);
    xs.len()
}

#[pipeline]
fn cutoff(n: u32) -> Artifact<usize> {
    let xs = noisy(n);
    count(&xs)
}

#[test]
fn identical_bytes_from_a_rerun_step_keep_downstream_cached() {
    let (_dir, store) = temp_store();
    let p = cutoff(5).store(store);
    p.run().unwrap();
    let before = CUTOFF_DOWNSTREAM.load(SeqCst);
    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "noisy"), StepStatus::Executed);
    assert_eq!(run.step("noisy").unwrap().reason(), &Reason::CacheDisabled);
    assert_eq!(status_of(&run, "count"), StepStatus::Cached);
    assert_eq!(CUTOFF_DOWNSTREAM.load(SeqCst), before);
    assert_eq!(run.output().load().unwrap(), 5);
}

// Caching precedence: run override > step option > pipeline option > default on.
#[step]
fn plain(x: u8) -> u8 {
    x
}

#[step(enable_cache = true)]
fn always_cached(x: u8) -> u8 {
    x
}

#[step(enable_cache = false)]
fn never_cached(x: u8) -> u8 {
    x
}

#[pipeline]
fn default_pipeline() -> (Artifact<u8>, Artifact<u8>, Artifact<u8>) {
    (plain(1), always_cached(2), never_cached(3))
}

#[pipeline(enable_cache = false)]
fn uncached_pipeline() -> (Artifact<u8>, Artifact<u8>, Artifact<u8>) {
    (plain(4), always_cached(5), never_cached(6))
}

#[test]
fn precedence_default_is_on() {
    let (_dir, store) = temp_store();
    let p = default_pipeline().store(store);
    p.run().unwrap();
    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "plain"), StepStatus::Cached);
}

#[test]
fn precedence_step_option_beats_default() {
    let (_dir, store) = temp_store();
    let p = default_pipeline().store(store);
    p.run().unwrap();
    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "never_cached"), StepStatus::Executed);
    assert_eq!(status_of(&run, "always_cached"), StepStatus::Cached);
}

#[test]
fn precedence_pipeline_option_beats_default_but_not_step_option() {
    let (_dir, store) = temp_store();
    let p = uncached_pipeline().store(store);
    p.run().unwrap();
    let run = p.run().unwrap();
    assert_eq!(status_of(&run, "plain"), StepStatus::Executed);
    assert_eq!(run.step("plain").unwrap().reason(), &Reason::CacheDisabled);
    // The step's explicit `enable_cache = true` wins over the pipeline's `false`.
    assert_eq!(status_of(&run, "always_cached"), StepStatus::Cached);
    assert_eq!(status_of(&run, "never_cached"), StepStatus::Executed);
}

#[test]
fn precedence_run_override_beats_everything() {
    let (_dir, store) = temp_store();
    let p = default_pipeline().store(store.clone());
    p.run().unwrap();
    let off = p.clone().enable_cache(false).run().unwrap();
    for (name, status) in statuses(&off) {
        assert_eq!(
            status,
            StepStatus::Executed,
            "{name} with caching off for the run"
        );
    }
    // The override also turns caching on for a step that opts out.
    let on = p.clone().enable_cache(true).run().unwrap();
    for (name, status) in statuses(&on) {
        assert_eq!(
            status,
            StepStatus::Cached,
            "{name} with caching on for the run"
        );
    }
    let pipeline_off = uncached_pipeline().store(store).enable_cache(true);
    pipeline_off.run().unwrap();
    let run = pipeline_off.run().unwrap();
    assert_eq!(status_of(&run, "plain"), StepStatus::Cached);
}

#[test]
fn a_fully_cached_run_reads_no_artifact_bytes() {
    let (_dir, store) = temp_store();
    let p = three_steps(1000, 0.5).store(store.clone());
    p.run().unwrap();
    let before = store.stats();
    let run = p.run().unwrap();
    assert!(run.steps().iter().all(|s| s.status() == StepStatus::Cached));
    assert_eq!(store.stats(), before, "a cached run must not open any blob");
    // Loading the output is what reads bytes.
    let _: f64 = run.output().load().unwrap();
    assert_eq!(store.stats().blob_reads, before.blob_reads + 1);
}

#[test]
fn precedence_a_step_override_for_the_run_beats_everything() {
    let (_dir, store) = temp_store();
    let p = default_pipeline().store(store.clone());
    p.run().unwrap();
    // Caching off for the run, but on for `plain`; on for the run, but off for
    // `always_cached` (whose attribute says `enable_cache = true`).
    let run = p
        .clone()
        .enable_cache(false)
        .step_enable_cache("plain", true)
        .run()
        .unwrap();
    assert_eq!(status_of(&run, "plain"), StepStatus::Cached);
    assert_eq!(status_of(&run, "always_cached"), StepStatus::Executed);
    let run = p
        .clone()
        .step_enable_cache("always_cached", false)
        .run()
        .unwrap();
    assert_eq!(status_of(&run, "always_cached"), StepStatus::Executed);
    assert_eq!(
        run.step("always_cached").unwrap().reason(),
        &Reason::CacheDisabled
    );
    assert_eq!(status_of(&run, "plain"), StepStatus::Cached);
    // A name the pipeline does not have is an error, not a silent no-op.
    let err = p
        .clone()
        .step_enable_cache("plian", false)
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::UnknownStep { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`plian`") && err.to_string().contains("plain"),
        "{err}"
    );
}
