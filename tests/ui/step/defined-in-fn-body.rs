use pipeline::prelude::*;

fn main() {
    // A step must be a module item: its generated module cannot see inside `main`.
    #[step]
    fn double(x: u32) -> u32 {
        x * 2
    }

    let _ = double::call(2);
}
