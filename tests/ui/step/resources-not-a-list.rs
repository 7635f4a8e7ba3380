use pipeline::prelude::*;

#[step(resources = 4)]
fn train(n: u64) -> u64 {
    n
}

fn main() {}
