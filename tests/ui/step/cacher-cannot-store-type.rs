use pipeline::prelude::*;
use pipeline::BoxError;
use std::io::{Read, Write};

/// Stores a `String` as plain UTF-8 text.
#[derive(Default)]
struct Text;

impl Cacher<String> for Text {
    fn id(&self) -> &str {
        "text"
    }
    fn save(&self, value: &String, out: &mut dyn Write) -> Result<(), BoxError> {
        out.write_all(value.as_bytes())?;
        Ok(())
    }
    fn load(&self, input: &mut dyn Read) -> Result<String, BoxError> {
        let mut s = String::new();
        input.read_to_string(&mut s)?;
        Ok(s)
    }
}

#[step(outputs(summary, scores), cacher(scores = Text))]
fn evaluate() -> (String, Vec<f64>) {
    ("ok".into(), vec![0.9])
}

fn main() {}
