use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[pipeline]
fn evaluation() -> f64 {
    let _acc = accuracy();
    0.9
}

fn main() {}
