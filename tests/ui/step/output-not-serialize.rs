use pipeline::prelude::*;

struct Model {
    weights: Vec<f64>,
}

#[step]
fn train(xs: &Vec<f64>) -> Model {
    Model { weights: xs.clone() }
}

fn main() {}
