use pipeline::prelude::*;

fn scale(x: f64) -> f64 {
    x * 2.0
}

#[step(uses = [scale])]
fn transform(xs: Vec<f64>) -> Vec<f64> {
    xs.into_iter().map(scale).collect()
}

fn main() {}
