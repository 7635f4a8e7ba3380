use pipeline::prelude::*;

#[pipeline]
const TRAINING: u32 = 1;

fn main() {}
