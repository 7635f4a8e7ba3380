use pipeline::prelude::*;

#[step]
fn mean<T: Into<f64> + Copy>(xs: &Vec<T>) -> f64 {
    xs.iter().map(|&x| x.into()).sum::<f64>() / xs.len() as f64
}

fn main() {}
