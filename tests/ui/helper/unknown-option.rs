use pipeline::prelude::*;

#[helper(version = "2")]
fn scale(x: f64) -> f64 {
    x * 2.0
}

fn main() {}
