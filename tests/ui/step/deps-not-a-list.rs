use pipeline::prelude::*;

#[step(deps = serde)]
fn train(x: f64) -> f64 {
    x
}

fn main() {}
