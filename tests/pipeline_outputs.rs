//! What a pipeline may return, as the README promises: one artifact, a tuple of them, a
//! `Vec` built in a loop (and those nested), or a step's `Outputs`; and how the outputs
//! are named in the store (`output` for a single-output step, `name_2` for a second call).

mod common;

use common::temp_store;
use pipeline::prelude::*;

#[step]
fn square(x: u32) -> u32 {
    x * x
}

#[step(outputs(low, high))]
fn bounds(xs: &[u32]) -> (u32, u32) {
    (
        xs.iter().copied().min().unwrap_or(0),
        xs.iter().copied().max().unwrap_or(0),
    )
}

#[step]
fn collect(a: &u32, b: &u32, c: &u32) -> Vec<u32> {
    vec![*a, *b, *c]
}

/// A tuple whose second element is a `Vec` of artifacts, one per loop iteration.
#[pipeline]
fn squares(xs: Vec<u32>) -> (Artifact<u32>, Vec<Artifact<u32>>) {
    let all: Vec<Artifact<u32>> = xs.iter().map(|&x| square(x)).collect();
    let total = collect(&all[0], &all[1], &all[2]);
    let b = bounds(&total);
    (b.high, all)
}

#[pipeline]
fn both_bounds(xs: Vec<u32>) -> bounds::Outputs {
    bounds(xs)
}

#[test]
fn a_pipeline_returns_a_tuple_holding_a_vec_of_artifacts() {
    let (_dir, store) = temp_store();
    let run = squares(vec![3, 1, 2]).store(store.clone()).run().unwrap();
    let (high, all) = run.output();
    assert_eq!(high.load().unwrap(), 9);
    let loaded: Vec<u32> = all.iter().map(|a| a.load().unwrap()).collect();
    assert_eq!(loaded, [9, 1, 4]);

    // The same values through the store: a single-output step's output is named `output`,
    // the calls of a step in a loop are `square`, `square_2`, `square_3`, and the outputs
    // of a multi-output step carry their `outputs(..)` names.
    let in_store: Vec<u32> = ["square", "square_2", "square_3"]
        .iter()
        .map(|step| store.load(run.name(), step, "output").unwrap())
        .collect();
    assert_eq!(in_store, [9, 1, 4]);
    assert_eq!(store.load::<u32>(run.id(), "bounds", "low").unwrap(), 1);
    assert_eq!(store.load::<u32>(run.id(), "bounds", "high").unwrap(), 9);
    let err = store.load::<u32>(run.id(), "bounds", "output").unwrap_err();
    assert!(err.to_string().contains("output"), "{err}");
}

#[test]
fn a_pipeline_returns_a_steps_outputs_struct() {
    let (_dir, store) = temp_store();
    let run = both_bounds(vec![5, 2, 8]).store(store).run().unwrap();
    assert_eq!(run.output().low.load().unwrap(), 2);
    assert_eq!(run.output().high.load().unwrap(), 8);
}

#[test]
fn run_name_names_the_run_and_the_newest_run_of_a_name_wins() {
    let (_dir, store) = temp_store();
    let p = squares(vec![1, 2, 3])
        .store(store.clone())
        .run_name("nightly");
    let first = p.run().unwrap();
    let second = p.run().unwrap();
    assert_eq!(first.name(), "nightly");
    assert_eq!(second.name(), "nightly");
    assert_ne!(first.id(), second.id(), "ids stay unique");
    assert_eq!(store.run("nightly").unwrap().id, second.id());
}
