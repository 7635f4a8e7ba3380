use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[step]
fn report(score: f64) -> String {
    format!("{score}")
}

#[pipeline]
fn evaluation() -> Artifact<String> {
    let acc = accuracy();
    report(*acc)
}

fn main() {}
