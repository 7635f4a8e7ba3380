use pipeline::prelude::*;

#[step]
async fn download(url: String) -> Vec<u8> {
    url.into_bytes()
}

fn main() {}
