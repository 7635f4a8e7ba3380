use pipeline::prelude::*;

#[step(outputs(train, test))]
fn split() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
