use pipeline::prelude::*;

#[step]
fn words(n: u32) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

#[pipeline]
fn doubled(n: u32) -> Artifact<Vec<u32>> {
    // The items are `String`s: `double` takes a `u32`.
    words(n).map(|w| double(w))
}

fn main() {}
