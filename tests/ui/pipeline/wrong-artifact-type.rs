use pipeline::prelude::*;

#[step(outputs(x_train, y_train))]
fn loader() -> (Vec<Vec<f64>>, Vec<f32>) {
    (vec![vec![0.0]], vec![1.0])
}

#[step]
fn svc_trainer(x_train: &Vec<Vec<f64>>, y_train: &Vec<u32>, gamma: f64) -> Vec<f64> {
    let _ = (x_train, y_train);
    vec![gamma]
}

#[pipeline]
fn training(gamma: f64) -> Artifact<Vec<f64>> {
    let data = loader();
    svc_trainer(&data.x_train, &data.y_train, gamma)
}

fn main() {}
