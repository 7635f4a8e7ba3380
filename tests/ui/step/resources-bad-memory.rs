use pipeline::prelude::*;

#[step(resources(cpus = 2, mem = "8Q"))]
fn train(n: u64) -> u64 {
    n
}

fn main() {}
