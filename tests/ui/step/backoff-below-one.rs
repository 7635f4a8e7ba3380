use pipeline::prelude::*;

#[step(retries = 3, backoff = 0.5)]
fn fetch(n: u64) -> u64 {
    n
}

fn main() {}
