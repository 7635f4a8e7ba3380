use pipeline::prelude::*;

#[step(retries = -1)]
fn fetch(n: u64) -> u64 {
    n
}

fn main() {}
