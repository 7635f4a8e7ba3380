use pipeline::prelude::*;

#[step(cache = false)]
fn fetch_prices() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
