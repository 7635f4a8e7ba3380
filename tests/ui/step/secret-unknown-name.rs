use pipeline::prelude::*;

#[step(secret = [tokn])]
fn fetch(url: String, token: String) -> usize {
    url.len() + token.len()
}

fn main() {}
