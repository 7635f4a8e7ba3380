#![deny(missing_docs, unused)]
//! Public steps need no extra items to be documented, and generate no warnings.

/// Steps of a data module.
pub mod steps {
    use pipeline::prelude::*;

    /// Loads numbers.
    #[step(outputs(train, test))]
    pub fn load(n: usize) -> (Vec<f64>, Vec<f64>) {
        (vec![0.0; n], vec![1.0; n])
    }

    /// Averages numbers.
    #[step]
    pub fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    /// Clips a value.
    #[helper]
    pub fn clip(x: f64) -> f64 {
        x.clamp(0.0, 1.0)
    }

    /// The pipeline.
    #[pipeline]
    pub fn stats(n: usize) -> Artifact<f64> {
        let d = load(n);
        mean(&d.train)
    }
}

fn main() {
    let _ = steps::stats(3);
    let _ = steps::clip(0.5);
}
