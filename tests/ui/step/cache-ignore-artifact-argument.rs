use pipeline::prelude::*;

#[step(cache_ignore = [data])]
fn train(data: Artifact<Vec<f64>>, rate: f64) -> f64 {
    let _ = data;
    rate
}

fn main() {}
