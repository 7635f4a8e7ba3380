//! The store's query API over a three-run history.

mod common;

use common::temp_store;
use pipeline::prelude::*;
use pipeline::{Reason, RunStatus};

#[step]
fn source(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

#[step]
fn weighted(xs: &[u32], weight: f64) -> f64 {
    xs.iter().map(|&x| f64::from(x) * weight).sum()
}

#[pipeline(name = "history")]
fn history(weight: f64) -> Artifact<f64> {
    let xs = source(4);
    weighted(&xs, weight)
}

#[test]
fn queries_return_the_records_of_a_three_run_history() {
    let (_dir, store) = temp_store();
    let r1 = history(1.0)
        .store(store.clone())
        .run_name("first")
        .run()
        .unwrap();
    let r2 = history(1.0)
        .store(store.clone())
        .run_name("second")
        .run()
        .unwrap();
    let r3 = history(2.5)
        .store(store.clone())
        .run_name("third")
        .run()
        .unwrap();

    assert_eq!(store.pipelines().unwrap(), ["history"]);
    let runs = store.runs(Some("history")).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["third", "second", "first"], "newest first");
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Completed && r.duration.is_some()));
    let counts: Vec<(usize, usize)> = runs.iter().map(|r| (r.executed, r.cached)).collect();
    assert_eq!(counts, [(1, 1), (0, 2), (2, 0)]);
    assert!(store.runs(Some("other")).unwrap().is_empty());

    // Step records of the third run.
    let steps = store.run_steps("third").unwrap();
    assert_eq!(steps.len(), 2);
    let (src, w) = (&steps[0], &steps[1]);
    assert_eq!(
        (src.name.as_str(), src.status),
        ("source", StepStatus::Cached)
    );
    assert_eq!(
        (w.name.as_str(), w.status),
        ("weighted", StepStatus::Executed)
    );
    assert_eq!(w.parameters["weight"], serde_json::json!(2.5));
    assert_eq!(src.parameters["n"], serde_json::json!(4));
    assert_eq!(w.code_signature.len(), 16);
    assert_eq!(w.cache_key, r3.step("weighted").unwrap().cache_key());
    assert_eq!(
        w.reason.as_deref(),
        Some("parameter `weight` changed (1.0 -> 2.5)")
    );
    assert_eq!(w.outputs.len(), 1);
    assert_eq!(w.outputs[0].type_name, "f64");
    assert_eq!(w.outputs[0].cacher, "bincode");
    assert_eq!(
        w.outputs[0].content_hash,
        r3.output().content_hash().unwrap()
    );

    // Lineage: the cached `source` reused run 1's execution, whose output `weighted` read.
    let first_source = &store.run_steps("first").unwrap()[0];
    assert_eq!(src.reused_execution, Some(first_source.execution_id));
    assert_eq!(w.inputs.len(), 2);
    assert_eq!(w.inputs[0].name, "xs");
    assert_eq!(
        w.inputs[0].producer_execution,
        Some(first_source.execution_id)
    );
    assert_eq!(w.inputs[1].name, "weight");
    assert_eq!(
        w.inputs[1].content_hash, None,
        "a parameter, not an artifact"
    );

    let xs_hash = first_source.outputs[0].content_hash;
    let lineage = store.lineage(xs_hash).unwrap();
    let producer_runs: Vec<&str> = lineage
        .producers
        .iter()
        .map(|e| e.run_name.as_str())
        .collect();
    assert_eq!(producer_runs, ["first"]);
    let reused: Vec<&str> = lineage
        .reused_by
        .iter()
        .map(|e| e.run_name.as_str())
        .collect();
    assert_eq!(reused, ["second", "third"]);
    let consumers: Vec<(&str, &str)> = lineage
        .consumers
        .iter()
        .map(|e| (e.run_name.as_str(), e.step.as_str()))
        .collect();
    assert_eq!(
        consumers,
        [
            ("first", "weighted"),
            ("second", "weighted"),
            ("third", "weighted")
        ]
    );

    // Comparing runs names what changed.
    let same = store.compare_runs("first", "second").unwrap();
    assert_eq!(same.changed().count(), 0);
    let diff = store.compare_runs(r1.id(), r3.name()).unwrap();
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["weighted"]);
    let step = diff.steps.iter().find(|s| s.name == "weighted").unwrap();
    assert_eq!(
        step.changes,
        [Reason::ParameterChanged {
            name: "weight".into(),
            old: "1.0".into(),
            new: "2.5".into()
        }]
    );
    let _ = r2;

    // Unique prefixes of ids and names resolve; ambiguous or unknown ones do not.
    assert_eq!(store.run(&r3.id()[..8]).unwrap().name, "third");
    assert_eq!(store.run("thi").unwrap().id, r3.id());
    assert!(matches!(store.run("no-such"), Err(Error::UnknownRun(_))));
}
