use pipeline::prelude::*;

#[step(deps = [serde, smartcorex])]
fn train(x: f64) -> f64 {
    x
}

fn main() {}
