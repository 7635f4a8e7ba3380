use pipeline::prelude::*;

#[step]
fn fit(lambda: f64) -> f64 {
    lambda * 2.0
}

// `.named` labels one step call; a list of handles from a loop is several calls.
#[pipeline]
fn sweep(lambdas: Vec<f64>) -> Vec<Artifact<f64>> {
    let fits: Vec<Artifact<f64>> = lambdas.iter().map(|&l| fit(l)).collect();
    fits.named("fits")
}

fn main() {}
