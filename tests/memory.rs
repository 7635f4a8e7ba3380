//! In-memory outputs are released after their last consumer: in a chain `a -> b -> c` of
//! 200 MB outputs, peak live heap stays under 2.5x one output. Measured with a counting
//! global allocator (its own test binary, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use pipeline::cacher::Raw;
use pipeline::prelude::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(live, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), SeqCst);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(live, SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: usize = 1 << 20;
const SIZE: usize = 200 * MB;

#[step(cacher = Raw)]
fn produce(n: usize) -> Vec<u8> {
    vec![1; n]
}

#[step(cacher = Raw)]
fn increment(xs: &[u8]) -> Vec<u8> {
    let mut out = xs.to_vec();
    out.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    out
}

#[step(cacher = Raw)]
fn increment_owned(mut xs: Vec<u8>) -> Vec<u8> {
    // Takes its input by value: as the last consumer it gets the value without a copy.
    xs.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    xs
}

#[pipeline]
fn chain(n: usize) -> Artifact<Vec<u8>> {
    let a = produce(n);
    let b = increment(&a);
    increment_owned(b)
}

#[test]
fn peak_memory_of_a_chain_stays_under_two_and_a_half_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = chain(SIZE).store(store.clone()).max_parallelism(1);
    let base = LIVE.load(SeqCst);
    PEAK.store(base, SeqCst);
    let run = p.run().unwrap();
    let peak = PEAK.load(SeqCst) - base;
    assert!(
        run.steps()
            .iter()
            .all(|s| s.status() == StepStatus::Executed),
        "{:?}",
        run.steps()
    );
    let ratio = peak as f64 / SIZE as f64;
    eprintln!(
        "peak live heap during the run: {} MB ({ratio:.2}x one output)",
        peak / MB
    );
    assert!(ratio < 2.5, "peak {ratio:.2}x one output");
    // Nothing of the run's values is kept alive afterwards.
    let after = LIVE.load(SeqCst).saturating_sub(base);
    assert!(
        after < 16 * MB,
        "{} MB still live after the run",
        after / MB
    );
    let out = run.output().load().unwrap();
    assert_eq!((out.len(), out[0]), (SIZE, 3));
}
