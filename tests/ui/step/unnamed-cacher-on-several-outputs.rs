use pipeline::prelude::*;

#[step(outputs(model, metrics), cacher = Json)]
fn train() -> (Vec<f64>, Vec<f64>) {
    (vec![1.0], vec![0.9])
}

fn main() {}
