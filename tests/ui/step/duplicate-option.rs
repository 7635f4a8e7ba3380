use pipeline::prelude::*;

#[step(name = "loader", enable_cache = false, name = "load")]
fn load() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
