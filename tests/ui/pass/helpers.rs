use pipeline::prelude::*;

mod util {
    use pipeline::prelude::*;

    #[helper]
    pub fn clip(x: f64) -> f64 {
        x.clamp(0.0, 1.0)
    }

    #[helper(uses = [clip])]
    pub fn scale(x: f64) -> f64 {
        clip(x * 2.0)
    }
}

// Any free function can be a helper: `const`, generic, or `async`.
#[helper]
const fn square(x: u64) -> u64 {
    x * x
}

#[helper]
fn largest<T: PartialOrd + Copy>(xs: &[T]) -> Option<T> {
    xs.iter().copied().fold(None, |m, x| match m {
        Some(m) if m >= x => Some(m),
        _ => Some(x),
    })
}

#[helper]
async fn fetch() -> u8 {
    1
}

#[step(uses = [util::scale, util::clip, square, largest, fetch])]
fn transform(xs: Vec<f64>) -> Vec<f64> {
    xs.into_iter().map(util::scale).map(util::clip).collect()
}

const _: () = assert!(util::scale::SIGNATURE != util::clip::SIGNATURE);

fn main() {
    assert_eq!(transform::call(vec![0.25]), vec![0.5]);
    let _: u64 = transform::SIGNATURE;
}
