use pipeline::prelude::*;

// The one error of this file: `&mut` inputs are not allowed.
#[step(outputs(train, test))]
fn split(xs: &mut Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let test = xs.split_off(xs.len() / 2);
    (xs.clone(), test)
}

#[step]
fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[pipeline]
fn stats(xs: Vec<f64>) -> (Artifact<f64>, split::Outputs) {
    // Must stay silent: the stub of `split` takes any argument and returns its outputs.
    let data = split(xs);
    (mean(&data.train), data)
}

fn main() {
    let _ = stats(vec![1.0, 2.0]);
}
