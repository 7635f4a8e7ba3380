use pipeline::prelude::*;

// Each option has its own type: a count, a duration text, a number.
#[step(retries = "3", timeout = 10, retry_delay = 2, backoff = "double")]
fn fetch(n: u64) -> u64 {
    n
}

fn main() {}
