use pipeline::prelude::*;
use std::cell::Cell;

#[step]
fn counter(start: u32) -> Cell<u32> {
    Cell::new(start)
}

fn main() {}
