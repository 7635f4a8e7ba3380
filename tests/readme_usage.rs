//! The README's usage example, compiled and run as a test (kept in sync by hand).

use pipeline::prelude::*;

#[step(outputs(train, test))]
fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let (a, b) = all.split_at(n * 4 / 5);
    (a.to_vec(), b.to_vec())
}

#[step]
fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

#[step(enable_cache = false, cacher = Json)] // always re-runs; stored as readable JSON
fn report(m: &f64, label: String) -> String {
    format!("{label}: {m:.3}")
}

#[pipeline]
fn stats(n: usize) -> Artifact<String> {
    let data = split(n); // `data.train`, `data.test`: typed handles
    let m = mean(&data.train);
    report(&m, "train mean".to_string()) // plain values are parameters
}

#[test]
fn readme_usage_example_runs() -> pipeline::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let p = stats(1000).store_path(dir.path());
    let run = p.run()?;
    assert_eq!(run.output().load()?, "train mean: 399.500");
    let again = p.run()?;
    let statuses: Vec<StepStatus> = again.steps().iter().map(|s| s.status()).collect();
    assert_eq!(
        statuses,
        [StepStatus::Cached, StepStatus::Cached, StepStatus::Executed]
    );
    let all = p.clone().enable_cache(false).run()?;
    assert!(all
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Executed));
    Ok(())
}
