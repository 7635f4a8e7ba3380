use pipeline::prelude::*;

#[step(cache_ignore = "threads")]
fn train(rate: f64, threads: u32) -> f64 {
    let _ = threads;
    rate
}

fn main() {}
