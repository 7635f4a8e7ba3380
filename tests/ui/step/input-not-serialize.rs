use pipeline::prelude::*;

struct Config {
    gamma: f64,
}

#[step]
fn train(xs: &Vec<f64>, config: &Config) -> f64 {
    xs.iter().sum::<f64>() * config.gamma
}

fn main() {}
