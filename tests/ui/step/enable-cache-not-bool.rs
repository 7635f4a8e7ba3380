use pipeline::prelude::*;

#[step(enable_cache = "no")]
fn fetch_prices() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
