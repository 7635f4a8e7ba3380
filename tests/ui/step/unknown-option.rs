use pipeline::prelude::*;

#[step(priority = 3)]
fn load() -> Vec<f64> {
    vec![1.0, 2.0]
}

fn main() {}
