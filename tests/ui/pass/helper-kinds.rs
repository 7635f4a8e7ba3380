// `#[helper]` on each kind of item a step can depend on, and `uses = [..]` naming them.
use pipeline::prelude::*;
use std::fmt;

mod util {
    use pipeline::prelude::*;

    // A macro: named with `!` where it can be called.
    #[helper]
    macro_rules! factor {
        ($x:expr) => {
            $x * 3.0
        };
    }

    #[helper]
    pub const OFFSET: f64 = 273.15;

    #[helper]
    pub static SCALE: f64 = 2.0;

    // A `static mut`: its tokens count, its value cannot be read safely.
    #[helper]
    #[allow(dead_code)]
    pub static mut CALLS: u32 = 0;

    #[step(uses = [factor!, OFFSET])]
    pub fn shift(x: f64) -> f64 {
        factor!(x) + OFFSET
    }
}

#[derive(Clone, Copy)]
pub struct Point {
    x: f64,
    y: f64,
}

// An inherent impl and a trait impl, named for `uses`.
#[helper(name = point_methods)]
impl Point {
    fn norm(&self) -> f64 {
        (self.x * self.x + self.y * self.y).sqrt()
    }
}

#[helper(name = point_display)]
impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

// A generic helper declares the impls it calls.
#[helper(uses = [point_display])]
fn describe<T: fmt::Display>(x: T) -> String {
    format!("<{x}>")
}

// An exported macro is named as it is called in this crate (`uses = [twice!]`).
#[helper(uses = [crate::describe])]
#[macro_export]
macro_rules! twice {
    ($x:expr) => {
        2.0 * $x
    };
}

#[step(uses = [point_methods, point_display, describe, util::SCALE, twice!])]
fn measure(x: f64, y: f64) -> (f64, String) {
    let p = Point { x, y };
    (twice!(p.norm()) * util::SCALE, describe(p))
}

const _: () = assert!(util::OFFSET::SIGNATURE != util::SCALE::SIGNATURE);
const _: () = assert!(point_methods::SIGNATURE != point_display::SIGNATURE);

fn main() {
    assert_eq!(util::shift::call(1.0), 276.15);
    assert_eq!(measure::call(3.0, 4.0), (20.0, "<(3, 4)>".to_string()));
    let _: u64 = measure::signature();
}
