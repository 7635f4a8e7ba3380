use pipeline::prelude::*;

#[step(cache_ignore = [threads, verbos])]
fn train(rate: f64, threads: u32, verbose: bool) -> f64 {
    let _ = (threads, verbose);
    rate
}

fn main() {}
