use pipeline::prelude::*;

#[step]
fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

#[step]
fn lengths(words: &[String]) -> Vec<usize> {
    words.iter().map(String::len).collect()
}

#[step]
fn total(lengths: Vec<usize>, extra: usize) -> usize {
    lengths.into_iter().sum::<usize>() + extra
}

#[step]
fn where_stored(total: Artifact<usize>) -> String {
    format!("{:?}", total.path().ok())
}

#[pipeline]
fn text_stats(text: String) -> (Artifact<usize>, Artifact<String>) {
    let w = words(text);
    let l = lengths(&w);
    // By value and by reference, owned handles and parameters.
    let t = total(l, 1);
    let place = where_stored(&t);
    (t, place)
}

fn main() {
    let _ = text_stats("a bb ccc".into());
    assert_eq!(words::call("a b"), vec!["a".to_string(), "b".to_string()]);
}
