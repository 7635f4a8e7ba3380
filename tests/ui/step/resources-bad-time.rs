use pipeline::prelude::*;

#[step(resources(time = "2 hours and a bit"))]
fn train(n: u64) -> u64 {
    n
}

fn main() {}
