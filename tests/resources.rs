//! `#[step(resources(..))]` and `Pipeline::step_resources`: what a step asks of the machine
//! that runs it. On the thread executor `cpus` count against `max_parallelism`; resources
//! never enter the cache key.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::{status_of, temp_store};
use pipeline::cluster::Resources;
use pipeline::prelude::*;
use pipeline::Error;

/// Steps running now, and the most ever seen at once, per test (tests run in parallel).
struct Gauge {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Gauge {
    const fn new() -> Self {
        Gauge {
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }

    /// Counts the caller as running for a while.
    fn hold(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

static HEAVY: Gauge = Gauge::new();

#[step(enable_cache = false, resources(cpus = 2))]
fn heavy(tag: u8) -> u8 {
    HEAVY.hold();
    tag
}

#[pipeline]
fn two_heavy() -> (Artifact<u8>, Artifact<u8>) {
    (heavy(1), heavy(2))
}

#[test]
fn steps_asking_for_every_cpu_run_one_at_a_time() {
    let (_dir, store) = temp_store();
    let run = two_heavy().store(store).max_parallelism(2).run().unwrap();
    assert_eq!(status_of(&run, "heavy"), StepStatus::Executed);
    assert_eq!(status_of(&run, "heavy_2"), StepStatus::Executed);
    assert_eq!(
        HEAVY.most.load(Ordering::SeqCst),
        1,
        "two steps of 2 cpus each ran at once under max_parallelism(2)"
    );
}

// Two steps that each wait (up to 10 s) until both are inside: true only when they ran at
// the same time.
static MET: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn meet() -> bool {
    let (count, bell) = &MET;
    let mut n = count.lock().unwrap();
    *n += 1;
    bell.notify_all();
    let (n, _) = bell
        .wait_timeout_while(n, Duration::from_secs(10), |n| *n < 2)
        .unwrap();
    *n >= 2
}

#[step(enable_cache = false, resources(cpus = 8, mem = "1G"))]
fn wide(tag: u8) -> bool {
    let _ = tag;
    meet()
}

#[pipeline]
fn two_wide() -> (Artifact<bool>, Artifact<bool>) {
    (wide(1), wide(2))
}

#[test]
fn a_run_override_replaces_the_steps_own_resources() {
    let (_dir, store) = temp_store();
    // Each asks for 8 cpus, more than max_parallelism: alone, they would run one after the
    // other and never meet. The override asks for one each.
    let run = two_wide()
        .store(store)
        .max_parallelism(2)
        .step_resources("wide", Resources::new().cpus(1))
        .run()
        .unwrap();
    let (a, b) = run.output();
    assert!(
        a.load().unwrap() && b.load().unwrap(),
        "the two steps did not run at once"
    );
}

static SOLO: Gauge = Gauge::new();

#[step(enable_cache = false, resources(cpus = 64))]
fn greedy(tag: u8) -> u8 {
    SOLO.hold();
    tag
}

#[pipeline]
fn three_greedy() -> Vec<Artifact<u8>> {
    vec![greedy(1), greedy(2), greedy(3)]
}

#[test]
fn a_step_asking_for_more_than_there_is_still_runs_alone() {
    let (_dir, store) = temp_store();
    let run = three_greedy()
        .store(store)
        .max_parallelism(4)
        .run()
        .unwrap();
    let loaded: Vec<u8> = run.output().iter().map(|a| a.load().unwrap()).collect();
    assert_eq!(loaded, [1, 2, 3]);
    assert_eq!(SOLO.most.load(Ordering::SeqCst), 1);
}

#[step(resources(cpus = 2, mem = "512M", time = "1h"))]
fn double(n: u64) -> u64 {
    n * 2
}

#[pipeline]
fn doubled(n: u64) -> Artifact<u64> {
    double(n)
}

#[test]
fn resources_are_not_part_of_the_cache_key() {
    let (_dir, store) = temp_store();
    let first = doubled(4).store(store.clone()).run().unwrap();
    assert_eq!(status_of(&first, "double"), StepStatus::Executed);
    let again = doubled(4)
        .store(store)
        .step_resources("double", Resources::new().cpus(1).gpus(2))
        .run()
        .unwrap();
    assert_eq!(status_of(&again, "double"), StepStatus::Cached);
    assert_eq!(again.output().load().unwrap(), 8);
}

mod with_resources {
    use pipeline::prelude::*;

    /// The same step as `without_resources::same`, asking for resources.
    #[step(resources(cpus = 4, mem = "8G", gpus = 1, time = "2h"))]
    pub fn same(n: u64) -> u64 {
        n + 1
    }
}

mod without_resources {
    use pipeline::prelude::*;

    #[step]
    pub fn same(n: u64) -> u64 {
        n + 1
    }
}

#[test]
fn the_attribute_leaves_the_code_signature_alone() {
    assert_eq!(
        with_resources::same::SIGNATURE,
        without_resources::same::SIGNATURE
    );
}

#[test]
fn an_override_for_a_step_the_pipeline_lacks_is_refused() {
    let (_dir, store) = temp_store();
    let err = doubled(1)
        .store(store)
        .step_resources("trian", Resources::new().cpus(2))
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::UnknownStep { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`trian` to set resources for"), "{text}");
    assert!(text.contains("double"), "{text}");
}
