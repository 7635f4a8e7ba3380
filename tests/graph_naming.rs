//! Names of repeated step calls, and graphs of many calls to the same step.

use pipeline::prelude::*;

#[path = "../examples/common/trivial.rs"]
mod trivial;

use trivial::{fan, inc, seed};

/// A step whose own name looks like the second call of `inc`.
#[step(name = "inc_2")]
fn named_like_a_repeat(x: &u64) -> u64 {
    x + 2
}

#[pipeline]
fn repeats() -> Artifact<u64> {
    let a = seed(0);
    let b = named_like_a_repeat(&a);
    let c = inc(&b);
    let d = inc(&c);
    let e = inc(&d);
    seed(7);
    e
}

#[test]
fn repeated_calls_get_the_first_free_suffix() {
    let p = repeats();
    assert_eq!(
        p.step_names(),
        ["seed", "inc_2", "inc", "inc_3", "inc_4", "seed_2"]
    );
}

// Naming the n-th call of a step used to scan every earlier name for every candidate suffix
// (cubic in the number of calls): 10,000 calls took many minutes to build.
#[test]
fn ten_thousand_calls_build_with_unique_names() {
    let p = fan(1000, 10);
    assert_eq!(p.len(), 10_000);
    let names = p.step_names();
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), 10_000);
    assert_eq!(names[1], "inc");
    assert_eq!(names[10], "seed_2");
    assert_eq!(names[11], "inc_10");
    assert_eq!(names[9_999], "inc_9000");
}
