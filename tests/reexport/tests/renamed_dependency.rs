//! Without `crate = path`, the macros find the library under the name this package's
//! `Cargo.toml` gives it: `upstream = { package = "cached-pipeline", .. }`, so generated
//! code says `::upstream`, and nothing named `::pipeline` exists here to fall back on.

use upstream::prelude::*;

#[helper]
fn halve(x: f64) -> f64 {
    x / 2.0
}

#[step(uses = [halve])]
fn halves(xs: Vec<f64>) -> Vec<f64> {
    xs.into_iter().map(halve).collect()
}

#[step(outputs(low, high))]
fn split(xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    xs.iter().partition(|&&x| x < 1.0)
}

#[pipeline]
fn renamed(xs: Vec<f64>) -> split::Outputs {
    let h = halves(xs);
    split(&h)
}

#[test]
fn macros_use_the_dependency_key_of_a_renamed_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let p = renamed(vec![1.0, 4.0]).store_path(dir.path());
    let run = p.run().unwrap();
    assert_eq!(run.output().low.load().unwrap(), vec![0.5]);
    assert_eq!(run.output().high.load().unwrap(), vec![2.0]);
    assert!(p
        .run()
        .unwrap()
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
    assert_eq!(halves::call(vec![3.0]), vec![1.5]);
}
