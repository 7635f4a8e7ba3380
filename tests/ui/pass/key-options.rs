use pipeline::prelude::*;

#[step]
fn load(n: u32) -> Vec<u32> {
    (0..n).collect()
}

// Ignored and secret parameters given plain values; an artifact beside them.
#[step(cache_ignore = [threads, token], secret = [token], cache_expires = "1d12h")]
fn train(data: &Vec<u32>, rate: f64, threads: u32, token: String) -> f64 {
    let _ = (threads, token);
    data.len() as f64 * rate
}

#[pipeline]
fn training(rate: f64, token: &str) -> Artifact<f64> {
    let data = load(3);
    train(&data, rate, 4, token.to_string())
}

fn main() {
    let _ = training(0.5, "t");
}
