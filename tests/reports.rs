//! `pipeline::report`: the typed reports the `pipeline` command prints, built from a store.

mod common;

use common::temp_store;
use pipeline::prelude::*;
use pipeline::report::{Explanation, PinChange, RunDetail, RunDiff, RunGraph, RunList};
use pipeline::RunStatus;

#[step]
fn source(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

#[step]
fn weighted(xs: &[u32], weight: f64) -> f64 {
    xs.iter().map(|&x| f64::from(x) * weight).sum()
}

#[step]
fn total(xs: &[u32]) -> u32 {
    xs.iter().sum()
}

#[pipeline(name = "history")]
fn history(weight: f64) -> Artifact<f64> {
    let xs = source(4);
    weighted(&xs, weight)
}

/// Two identical calls of `source` (one key), each feeding its own `total`.
#[pipeline(name = "twins")]
fn twins() -> (Artifact<u32>, Artifact<u32>) {
    let a = source(3);
    let b = source(3);
    (total(&a), total(&b))
}

fn two_runs(store: &Store) {
    history(1.0)
        .store(store.clone())
        .run_name("first")
        .run()
        .unwrap();
    history(2.5)
        .store(store.clone())
        .run_name("second")
        .run()
        .unwrap();
}

#[test]
fn explanation_of_a_miss_names_the_change_and_the_compared_execution() {
    let (_dir, store) = temp_store();
    two_runs(&store);
    let first = store.run_steps("first").unwrap();
    let second = store.run_steps("second").unwrap();
    let run = store.run("second").unwrap();

    let miss = Explanation::new(&store, run.clone(), second[1].clone()).unwrap();
    assert_eq!(miss.status, StepStatus::Executed);
    let previous = miss.previous.as_ref().expect("compared with the first run");
    assert_eq!(previous.execution_id, first[1].execution_id);
    assert_eq!(previous.run_name, "first");
    assert!(!previous.removed);
    assert_eq!(miss.changes.len(), 1, "{:?}", miss.changes);
    assert!(
        matches!(&miss.changes[0].reason, Reason::ParameterChanged { name, old, new }
            if name == "weight" && old == "1.0" && new == "2.5"),
        "{:?}",
        miss.changes[0].reason
    );
    let text = miss.to_string();
    assert!(
        text.starts_with("Step `weighted` in run `second` executed in "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Compared with the earlier execution of the same call: execution {} (`weighted` in run `first`, executed, started ",
            first[1].execution_id
        )),
        "{text}"
    );
    assert!(
        text.contains("\n  - parameter `weight` changed (1.0 -> 2.5)\n"),
        "{text}"
    );
    let json = serde_json::to_value(&miss).unwrap();
    assert_eq!(json["changes"][0]["kind"], "parameter_changed");
    assert_eq!(
        json["changes"][0]["text"],
        "parameter `weight` changed (1.0 -> 2.5)"
    );
    assert_eq!(json["previous"]["run_name"], "first");
    assert!(json["reused"].is_null());

    let hit = Explanation::new(&store, run, second[0].clone()).unwrap();
    let reused = hit
        .reused
        .as_ref()
        .expect("a cached step names what it reused");
    assert_eq!(reused.execution_id, first[0].execution_id);
    assert_eq!(reused.run_name.as_deref(), Some("first"));
    assert!(!reused.removed);
    assert!(hit.previous.is_none() && hit.changes.is_empty());
    let text = hit.to_string();
    assert!(
        text.starts_with(&format!(
            "Step `source` in run `second` was cached: it reused execution {} (step `source` in run `first`, started ",
            first[0].execution_id
        )),
        "{text}"
    );
    assert!(text.contains("\n  output `output`: "), "{text}");
}

#[test]
fn diff_run_list_detail_and_pin() {
    let (_dir, store) = temp_store();
    two_runs(&store);

    let diff = RunDiff::new(&store, "first", "second").unwrap();
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["weighted"]);
    let text = diff.to_string();
    assert!(text.starts_with("A: run `first` (id "), "{text}");
    assert!(text.ends_with("\n1 of 2 steps differ.\n"), "{text}");
    let json = serde_json::to_value(&diff).unwrap();
    assert_eq!(json["run_b"]["name"], "second");
    assert_eq!(
        json["steps"][1]["changes"][0]["text"],
        "parameter `weight` changed (1.0 -> 2.5)"
    );

    let list = RunList::new(&store, None, Some(1)).unwrap();
    assert_eq!(list.runs.len(), 1);
    assert_eq!(list.runs[0].0.name, "second");
    assert_eq!(list.runs[0].0.status, RunStatus::Completed);
    let text = list.to_string();
    assert!(text.starts_with("ID        NAME    PIPELINE"), "{text}");
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    assert!(json[0]["duration_s"].is_f64() && json[0]["started"].is_string());
    let none = RunList::new(&store, Some("nope"), None).unwrap();
    assert_eq!(
        none.to_string(),
        "No runs of pipeline `nope`; the store has runs of: history.\n"
    );

    let detail = RunDetail::new(&store, "first").unwrap();
    assert_eq!(detail.steps.len(), 2);
    assert!(
        detail.to_string().contains("\nSTEP      STATUS"),
        "{detail}"
    );

    let pinned = PinChange::apply(&store, "fir", true).unwrap();
    assert_eq!(pinned.to_string(), "Pinned run `first`.\n");
    assert_eq!(serde_json::to_value(&pinned).unwrap()["pinned"], true);
}

#[test]
fn graph_edges_follow_the_recorded_producers_of_identical_calls() {
    let (_dir, store) = temp_store();
    for name in ["one", "two"] {
        twins().store(store.clone()).run_name(name).run().unwrap();
    }
    for name in ["one", "two"] {
        let graph = RunGraph::new(&store, name).unwrap();
        let edges: Vec<(&str, &str)> = graph
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(
            edges,
            [("source", "total"), ("source_2", "total_2")],
            "run {name}"
        );
        let layers: Vec<usize> = graph.nodes.iter().map(|n| n.layer).collect();
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.step.0.name.as_str()).collect();
        for (n, l) in names.iter().zip(&layers) {
            assert_eq!(
                *l,
                usize::from(n.starts_with("total")),
                "{names:?} {layers:?}"
            );
        }
    }
}
