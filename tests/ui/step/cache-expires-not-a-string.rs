use pipeline::prelude::*;

#[step(cache_expires = 7)]
fn fetch(day: u32) -> u32 {
    day
}

fn main() {}
