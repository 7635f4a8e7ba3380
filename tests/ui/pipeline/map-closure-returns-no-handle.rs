use pipeline::prelude::*;

#[step]
fn numbers(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

#[pipeline]
fn doubled(n: u32) -> Artifact<Vec<u32>> {
    numbers(n).map(|x| {
        double(x);
    })
}

fn main() {}
