use pipeline::prelude::*;

fn main() {
    // A helper must be a module item: steps name it from their generated modules.
    #[helper]
    fn clip(x: f64) -> f64 {
        x.clamp(0.0, 1.0)
    }

    let _ = clip(2.0);
}
