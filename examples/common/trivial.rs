//! Trivial steps and the chain and fan pipelines built from them, shared by
//! `examples/perf.rs`, `benches/cached_run.rs` and `tests/graph_naming.rs`.
#![allow(dead_code)]

use pipeline::prelude::*;

/// The head of a chain.
#[step]
pub fn seed(x: u64) -> u64 {
    x
}

/// A trivial step.
#[step]
pub fn inc(x: &u64) -> u64 {
    x + 1
}

/// A chain of `n` trivial steps.
#[pipeline]
pub fn chain(n: usize) -> Artifact<u64> {
    let mut a = seed(0);
    for _ in 1..n {
        a = inc(&a);
    }
    a
}

/// A wide fan of `width` independent chains of `depth` trivial steps each.
#[pipeline]
pub fn fan(width: usize, depth: usize) -> Vec<Artifact<u64>> {
    (0..width)
        .map(|w| {
            let mut a = seed(w as u64);
            for _ in 1..depth {
                a = inc(&a);
            }
            a
        })
        .collect()
}
