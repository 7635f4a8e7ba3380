use pipeline::prelude::*;

#[helper]
struct Scaler(f64);

fn main() {}
