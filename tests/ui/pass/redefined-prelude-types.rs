// Generated code spells std items in full, so user items with prelude names do not
// capture them.
#![allow(dead_code)]

use pipeline::prelude::*;

struct Vec;
struct Box;
struct String;
struct Option;
struct Some;
struct None;
struct Ok;
struct Err;
type Result = ();
trait Clone {}
trait Default {}
trait Send {}
trait Sync {}

#[step(outputs(a, b))]
fn pair(n: u32) -> (u32, u64) {
    (n, n as u64)
}

#[step]
fn sum(a: &u32, b: u64) -> u64 {
    *a as u64 + b
}

#[pipeline]
fn adding(n: u32) -> Artifact<u64> {
    let p = pair(n);
    sum(&p.a, &p.b)
}

fn main() {
    let _ = adding(1);
}
