use pipeline::prelude::*;

#[step(outputs(train, train))]
fn split() -> (Vec<f64>, Vec<f64>) {
    (vec![1.0], vec![2.0])
}

fn main() {}
