//! `crate = path` on `#[step]`, `#[helper]` and `#[pipeline]`: this package depends on
//! the library under another name (`upstream`), so nothing named `::pipeline` exists here
//! and no generated path may hard-code it. Without the option the macros would use
//! `::upstream`, the name in this package's `Cargo.toml` (see `renamed_dependency.rs`);
//! that the option wins over it is checked where the root is chosen
//! (`pipeline-macros/src/attr.rs`, `a_crate_path_option_wins_over_the_manifest`).

use reexport::pl::prelude::*;

#[helper(crate = ::reexport::pl)]
fn clip(x: f64) -> f64 {
    x.clamp(0.0, 10.0)
}

#[step(crate = ::reexport::pl, outputs(low, high), uses = [clip])]
fn split(xs: Vec<f64>, at: f64) -> (Vec<f64>, Vec<f64>) {
    xs.into_iter().map(clip).partition(|&x| x < at)
}

// The string form, as serde accepts it.
#[step(crate = "::reexport::pl", cacher = Json)]
fn total(xs: &[f64]) -> f64 {
    xs.iter().sum()
}

#[step(crate = ::reexport::pl)]
fn count(xs: Artifact<Vec<f64>>) -> Result<usize, std::io::Error> {
    Ok(xs.size().map(|n| n as usize).unwrap_or(0))
}

#[pipeline(crate = ::reexport::pl, name = "reexported")]
fn reexported(xs: Vec<f64>) -> (Artifact<f64>, Artifact<f64>, Artifact<usize>) {
    let parts = split(xs, 5.0);
    let doubled = reexport::steps::double(&parts.high);
    (total(&parts.low), total(&doubled), count(&parts.low))
}

#[test]
fn generated_code_goes_through_the_crate_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = reexported(vec![1.0, 2.0, 7.0, 20.0]).store_path(dir.path());
    let run = p.run().unwrap();
    let (low, high, n) = run.output();
    assert_eq!(low.load().unwrap(), 3.0);
    assert_eq!(high.load().unwrap(), 34.0);
    assert!(n.load().unwrap() > 0);
    let again = p.run().unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

#[test]
fn helpers_fold_in_through_the_crate_path() {
    assert_ne!(clip::SIGNATURE, 0);
    assert_ne!(split::SIGNATURE, total::SIGNATURE);
    assert_eq!(split::call(vec![1.0, 9.0], 5.0), (vec![1.0], vec![9.0]));
}
