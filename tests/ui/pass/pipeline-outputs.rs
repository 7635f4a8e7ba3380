use pipeline::prelude::*;

#[step(outputs(train, test))]
fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
    (vec![0.0; n], vec![1.0; n])
}

#[step]
fn mean(xs: &Vec<f64>) -> Result<f64, std::io::Error> {
    Ok(xs.iter().sum::<f64>() / xs.len() as f64)
}

#[pipeline]
fn nothing() {}

#[pipeline]
fn data(n: usize) -> split::Outputs {
    split(n)
}

#[pipeline]
fn sweep(sizes: Vec<usize>) -> Vec<Artifact<f64>> {
    // Branching and looping on parameters is fine: the graph depends on them.
    let mut means = Vec::new();
    for n in sizes {
        if n > 0 {
            let d = split(n);
            means.push(mean(&d.test));
        }
    }
    means
}

fn main() {
    let _: Pipeline<()> = nothing();
    let _: Pipeline<split::Outputs> = data(4);
    let _: Pipeline<Vec<Artifact<f64>>> = sweep(vec![1, 2, 3]);
}
