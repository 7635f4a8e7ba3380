use pipeline::prelude::*;

#[helper(name = scaling)]
fn scale(x: f64) -> f64 {
    x * 2.0
}

// Must stay silent: the helper still publishes `scale::SIGNATURE`.
#[step(uses = [scale])]
fn transform(xs: Vec<f64>) -> Vec<f64> {
    xs.into_iter().map(scale).collect()
}

fn main() {
    let _ = transform::SIGNATURE;
}
