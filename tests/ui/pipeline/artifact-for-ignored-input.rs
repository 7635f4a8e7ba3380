use pipeline::prelude::*;

#[step]
fn threads() -> u32 {
    8
}

#[step(cache_ignore = [threads])]
fn train(rate: f64, threads: u32) -> f64 {
    rate * f64::from(threads)
}

#[pipeline]
fn training(rate: f64) -> Artifact<f64> {
    let n = threads();
    train(rate, &n)
}

fn main() {}
