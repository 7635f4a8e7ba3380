use pipeline::prelude::*;

#[step(outputs(train, test), priority = 3)]
fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let (a, b) = all.split_at(n / 2);
    (a.to_vec(), b.to_vec())
}

#[step]
fn mean(xs: &Vec<f64>) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[pipeline]
fn stats(n: usize) -> Artifact<f64> {
    // Must stay silent: `split` still expands, so its outputs wire as usual.
    let data = split(n);
    mean(&data.train)
}

fn main() {
    // Must stay silent: `split::call` and `split::SIGNATURE` exist.
    let _ = split::call(4);
    let _ = split::SIGNATURE;
}
