use pipeline::prelude::*;

#[step(max_retries = 3, enable_cache = "yes", version = 2)]
fn load() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
