//! End-to-end benchmarks of the runtime: building graphs, fully cached runs (key, lookup and
//! recording per step) and loading a cached artifact.
//!
//! `cargo bench --bench cached_run`. The stores live in a temporary directory on the same
//! disk as the system temp dir; they grow by one row per step per iteration, as real stores do.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::cacher::Raw;
use pipeline::prelude::*;

#[path = "../examples/common/trivial.rs"]
mod trivial;

use trivial::{chain, fan};

#[step(cacher = Raw)]
fn doubles(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

#[pipeline]
fn raw_output(n: usize) -> Artifact<Vec<f64>> {
    doubles(n)
}

fn graph_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("graph_build");
    for width in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements((width * 10) as u64));
        g.bench_function(format!("fan_{}_steps", width * 10), |b| {
            b.iter(|| black_box(fan(width, 10)))
        });
    }
    g.finish();
}

fn cached_runs(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    // One executed run fills the cache for every chain length (shorter chains are prefixes).
    chain(100).store(store.clone()).run().unwrap();
    let mut g = c.benchmark_group("cached_run");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 100] {
        let p = chain(n).store(store.clone());
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("chain_{n}"), |b| {
            b.iter(|| {
                let run = p.run().unwrap();
                assert!(run.steps().iter().all(|s| s.status() == StepStatus::Cached));
            })
        });
    }
    g.finish();
}

fn load_raw(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let n = 1 << 20; // 8 MiB of f64
    let p = raw_output(n).store_path(dir.path().join("store"));
    p.run().unwrap();
    let run = p.run().unwrap();
    let artifact = run.output().clone();
    let path = artifact.path().unwrap();
    let mut g = c.benchmark_group("load_8MiB_vec_f64");
    g.throughput(Throughput::Bytes((n * 8) as u64));
    g.bench_function("raw_cacher_load", |b| b.iter(|| artifact.load().unwrap()));
    g.bench_function("std_fs_read", |b| b.iter(|| std::fs::read(&path).unwrap()));
    g.finish();
}

criterion_group!(benches, graph_build, cached_runs, load_raw);
criterion_main!(benches);
