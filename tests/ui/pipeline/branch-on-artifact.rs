use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[step]
fn deploy(score: &f64) -> bool {
    *score > 0.5
}

#[pipeline]
fn evaluation() -> Artifact<bool> {
    let acc = accuracy();
    if acc > 0.8 {
        deploy(&acc)
    } else {
        deploy(&acc)
    }
}

fn main() {}
