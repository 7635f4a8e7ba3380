use pipeline::prelude::*;

#[step(cache_expires = "soon")]
fn fetch(day: u32) -> u32 {
    day
}

fn main() {}
