use pipeline::prelude::*;

#[step]
fn read_token() -> String {
    "from a file".to_string()
}

#[step(secret = [token])]
fn fetch(url: String, token: String) -> usize {
    url.len() + token.len()
}

#[pipeline]
fn fetching(url: &str) -> Artifact<usize> {
    let token = read_token();
    fetch(url.to_string(), token)
}

fn main() {}
