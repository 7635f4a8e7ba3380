use pipeline::prelude::*;

#[helper]
fn unit(x: f64) -> f64 {
    x.fract()
}

#[helper(uses = [unit], crate = ::pipeline)]
fn clip(x: f64) -> f64 {
    unit(x).clamp(0.0, 1.0)
}

#[step(
    name = "loader",
    enable_cache = false,
    version = "2",
    outputs(train, metrics),
    cacher(metrics = Json),
    uses = [clip],
    deps = [serde],
    build_profile = true,
    source_file = true,
    resources(cpus = 4, mem = "8G", gpus = 1, time = "2h"),
    crate = ::pipeline
)]
fn load(n: usize) -> (Vec<f64>, Vec<f64>) {
    (vec![clip(0.5); n], vec![1.0])
}

#[step(cacher = Json)]
fn total(xs: &Vec<f64>) -> f64 {
    xs.iter().sum()
}

#[pipeline(name = "options", enable_cache = true, crate = ::pipeline)]
fn options(n: usize) -> Artifact<f64> {
    let data = load(n);
    total(&data.train)
}

fn main() {
    let _: Pipeline<Artifact<f64>> = options(3);
    let _: u64 = load::SIGNATURE;
    let _: u64 = load::signature();
}
