use pipeline::prelude::*;

#[step]
fn fit(lambda: f64) -> f32 {
    lambda as f32
}

#[step]
fn best(scores: &[f64]) -> f64 {
    scores.iter().copied().fold(f64::MIN, f64::max)
}

#[pipeline]
fn sweep() -> Artifact<f64> {
    let scores: Vec<Artifact<f32>> = [0.1, 1.0].into_iter().map(fit).collect();
    best(&scores)
}

fn main() {}
