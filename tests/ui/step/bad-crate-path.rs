use pipeline::prelude::*;

#[step(crate = ::pipline)]
fn load() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
