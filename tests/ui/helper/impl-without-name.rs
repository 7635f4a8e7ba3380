use pipeline::prelude::*;

struct Point(f64, f64);

#[helper]
impl Point {
    fn norm(&self) -> f64 {
        self.0.hypot(self.1)
    }
}

fn main() {
    let _ = Point(3.0, 4.0).norm();
}
