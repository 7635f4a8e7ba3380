use pipeline::prelude::*;

fn clamp_unit(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

#[helper(uses = [clamp_unit])]
fn scale(x: f64) -> f64 {
    clamp_unit(x * 2.0)
}

fn main() {}
