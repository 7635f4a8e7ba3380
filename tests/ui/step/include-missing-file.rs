use pipeline::prelude::*;

// The expansion repeats the include (to hash the file) with the call's own spans, so the
// compiler reports the repeated call at the same place with the same words, and cargo,
// which drops identical messages, shows it once. trybuild shows the compiler's raw output,
// repeat included.
#[step]
fn read() -> usize {
    include_str!("no-such-file.txt").len()
}

fn main() {}
