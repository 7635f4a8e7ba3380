use pipeline::prelude::*;

macro_rules! make_fn {
    ($name:ident) => {
        fn $name() -> u8 {
            1
        }
    };
}

#[helper]
make_fn!(one);

fn main() {}
