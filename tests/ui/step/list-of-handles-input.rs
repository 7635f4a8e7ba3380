use pipeline::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Metrics {
    accuracy: f64,
}

// A step takes the values of a list of upstream outputs, not their handles.
#[step]
fn select_best(all: Vec<Artifact<Metrics>>) -> f64 {
    all.len() as f64
}

fn main() {}
