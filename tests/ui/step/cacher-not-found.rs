use pipeline::prelude::*;

#[step(cacher = Parquet)]
fn table() -> Vec<f64> {
    vec![1.0]
}

fn main() {}
