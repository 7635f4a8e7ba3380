use pipeline::prelude::*;

#[step]
fn total(n: u32) -> u32 {
    n * (n + 1) / 2
}

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

#[pipeline]
fn doubled(n: u32) -> Artifact<Vec<u32>> {
    total(n).map(|x| double(x))
}

fn main() {}
