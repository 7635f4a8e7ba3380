use pipeline::prelude::*;

#[step]
fn accuracy() -> f64 {
    0.9
}

#[pipeline(enable_cache = "no")]
fn evaluation() -> Artifact<f64> {
    accuracy()
}

fn main() {
    // Must stay silent: `evaluation` still builds a `Pipeline<Artifact<f64>>`.
    let p: Pipeline<Artifact<f64>> = evaluation();
    let _ = p.enable_cache(false);
}
