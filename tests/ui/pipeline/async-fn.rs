use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[pipeline]
async fn evaluation() -> Artifact<f64> {
    accuracy()
}

fn main() {
    // Must stay silent: `evaluation` keeps its constructor signature.
    let _: Pipeline<Artifact<f64>> = evaluation();
}
