use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[pipeline(crate = ::pipline)]
fn evaluation() -> Artifact<f64> {
    accuracy()
}

fn main() {}
