use pipeline::prelude::*;

#[pipeline(max_parallelism = 4)]
fn empty() {}

fn main() {}
