use pipeline::prelude::*;

#[derive(Clone)]
struct Secret(String);

#[step]
fn login(token: String) -> bool {
    !token.is_empty()
}

#[pipeline]
fn session() -> Artifact<bool> {
    login(Secret("hunter2".into()))
}

fn main() {}
