use pipeline::prelude::*;

#[step]
fn scale(xs: Vec<f64>, factor: f64) -> Vec<f64> {
    xs.into_iter().map(|x| x * factor).collect()
}

#[pipeline]
fn scaled(factor: f32) -> Artifact<Vec<f64>> {
    scale(vec![1.0, 2.0], factor)
}

fn main() {}
