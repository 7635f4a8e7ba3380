use pipeline::prelude::*;

#[pipeline(enable_cache = 0)]
fn empty() {}

fn main() {}
