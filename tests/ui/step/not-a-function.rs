use pipeline::prelude::*;

#[step]
struct Loader {
    path: String,
}

fn main() {}
