use pipeline::prelude::*;

#[derive(serde::Serialize)]
struct Report {
    accuracy: f64,
}

#[step]
fn evaluate(scores: &Vec<f64>) -> Report {
    Report {
        accuracy: scores.iter().sum::<f64>() / scores.len() as f64,
    }
}

fn main() {}
