use pipeline::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[step(outputs(train, test))]
fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let (a, b) = all.split_at(n * 4 / 5);
    (a.to_vec(), b.to_vec())
}

#[step]
fn mean(xs: &[f64]) -> f64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

#[pipeline]
fn stats(n: usize) -> Artifact<f64> {
    let data = split(n);
    mean(&data.train)
}

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let p = stats(10).store_path(dir.path());
    let run = p.run().unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(run.output().load().unwrap(), 3.5);
    let run2 = p.run().unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    for s in run2.steps() {
        assert_eq!(s.status(), StepStatus::Cached, "{}", s.name());
    }
    assert_eq!(run2.output().load().unwrap(), 3.5);
}
