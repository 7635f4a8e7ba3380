use pipeline::prelude::*;

#[step]
fn size_of(data: Artifact<Vec<u8>>) -> u64 {
    data.size().unwrap_or(0)
}

#[pipeline]
fn sizes() -> Artifact<u64> {
    size_of(vec![1u8, 2, 3])
}

fn main() {}
