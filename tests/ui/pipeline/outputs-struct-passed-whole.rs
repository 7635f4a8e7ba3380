use pipeline::prelude::*;

#[step(outputs(train, test))]
fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
    (vec![0.0; n], vec![1.0; n])
}

#[step]
fn mean(xs: &Vec<f64>) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[pipeline]
fn stats(n: usize) -> Artifact<f64> {
    let data = split(n);
    mean(&data)
}

fn main() {}
