use pipeline::prelude::*;

#[helper]
fn clip(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

#[helper(uses = clip)]
fn scale(x: f64) -> f64 {
    clip(x * 2.0)
}

fn main() {}
