use pipeline::prelude::*;
use std::rc::Rc;

#[step]
fn shared(xs: Vec<f64>) -> Rc<Vec<f64>> {
    Rc::new(xs)
}

fn main() {}
