use pipeline::prelude::*;

#[step]
fn normalize(xs: &mut Vec<f64>) -> f64 {
    xs.iter().sum()
}

fn main() {}
