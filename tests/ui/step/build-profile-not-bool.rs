use pipeline::prelude::*;

#[step(build_profile = "release")]
fn train(x: f64) -> f64 {
    x
}

fn main() {}
