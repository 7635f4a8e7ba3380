use pipeline::prelude::*;

#[step]
fn first(xs: &Vec<f64>) -> &f64 {
    &xs[0]
}

fn main() {}
