use pipeline::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Metrics {
    accuracy: f64,
}

#[step]
fn fit(lambda: f64) -> Metrics {
    Metrics { accuracy: lambda }
}

#[step]
fn by_slice(all: &[Metrics]) -> f64 {
    all.iter().map(|m| m.accuracy).sum()
}

#[step]
fn by_vec_ref(all: &Vec<Metrics>) -> usize {
    all.len()
}

#[step]
fn by_value(all: Vec<Metrics>) -> usize {
    all.len()
}

#[step]
fn by_handle(all: Artifact<Vec<Metrics>>) -> bool {
    all.is_bound()
}

#[pipeline]
fn sweep() -> (Artifact<f64>, Artifact<usize>, Artifact<usize>, Artifact<bool>) {
    let all: Vec<Artifact<Metrics>> = [0.1, 1.0].into_iter().map(fit).collect();
    let sum = by_slice(&all);
    let n = by_vec_ref(&all[..]);
    let gathered = pipeline::gather(all.clone());
    let m = by_value(all);
    (sum, n, m, by_handle(&gathered))
}

fn main() {}
