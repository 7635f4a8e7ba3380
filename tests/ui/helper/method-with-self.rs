use pipeline::prelude::*;

struct Scaler(f64);

impl Scaler {
    #[helper]
    fn scale(&self, x: f64) -> f64 {
        x * self.0
    }
}

fn main() {}
