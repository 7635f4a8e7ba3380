use pipeline::prelude::*;

// An unknown key with a hint, a count of 0, a memory given as a number: each reported.
#[step(resources(memory = "8G", cpus = 0, mem = 8))]
fn train(n: u64) -> u64 {
    n
}

fn main() {}
