use pipeline::prelude::*;

struct Model {
    weights: Vec<f64>,
}

impl Model {
    #[step]
    fn predict(&self, x: f64) -> f64 {
        self.weights.iter().map(|w| w * x).sum()
    }
}

fn main() {}
