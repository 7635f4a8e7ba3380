use pipeline::prelude::*;

#[step(timeout = "soon")]
fn fetch(n: u64) -> u64 {
    n
}

fn main() {}
