use pipeline::prelude::*;

#[helper]
macro_rules! factor {
    ($x:expr) => {
        $x * 3.0
    };
}

#[step(uses = [factor])]
fn triple(x: f64) -> f64 {
    factor!(x)
}

fn main() {}
