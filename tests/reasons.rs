//! Why a step executed: every changed key component, non-finite floats shown as such, and
//! calls in a loop compared with the earlier execution of the same call, alike in
//! `reason()`, `Store::compared_execution` (what `pipeline explain` shows) and
//! `Store::compare_runs` (what `pipeline diff` shows).

mod common;

use common::temp_store;
use pipeline::prelude::*;
use pipeline::Reason;
use serde::{Deserialize, Serialize};

#[step]
fn smooth(mode: String, eps: f64, rounds: u32) -> String {
    format!("{mode} {eps} {rounds}")
}

#[pipeline]
fn smoothing(mode: &str, eps: f64, rounds: u32) -> Artifact<String> {
    smooth(mode.to_string(), eps, rounds)
}

fn param(name: &str, old: &str, new: &str) -> Reason {
    Reason::ParameterChanged {
        name: name.into(),
        old: old.into(),
        new: new.into(),
    }
}

#[test]
fn reason_names_every_changed_parameter() {
    let (_dir, store) = temp_store();
    smoothing("fast", 0.1, 3)
        .store(store.clone())
        .run()
        .unwrap();
    let run = smoothing("slow", 0.2, 3)
        .store(store.clone())
        .run()
        .unwrap();
    let reason = run.step("smooth").unwrap().reason();
    let expected = [
        param("mode", "\"fast\"", "\"slow\""),
        param("eps", "0.1", "0.2"),
    ];
    assert_eq!(
        reason,
        &Reason::Changes {
            changes: expected.to_vec()
        }
    );
    assert_eq!(reason.changes(), expected);
    assert_eq!(
        reason.to_string(),
        "parameter `mode` changed (\"fast\" -> \"slow\"); parameter `eps` changed (0.1 -> 0.2)"
    );
    // The store records the same text, and the comparison with the run before agrees.
    let record = store.run_steps(run.id()).unwrap().remove(0);
    assert_eq!(record.reason, Some(reason.to_string()));
    let earlier = store
        .compared_execution(record.execution_id)
        .unwrap()
        .expect("an earlier execution");
    assert_eq!(
        Reason::differences(&earlier.components, &record.components),
        expected
    );

    // One change alone is the change itself, not a list of one.
    let run = smoothing("slow", 0.2, 4).store(store).run().unwrap();
    assert_eq!(
        run.step("smooth").unwrap().reason(),
        &param("rounds", "3", "4")
    );
}

#[derive(Serialize, Deserialize)]
struct Bounds {
    limits: Vec<f64>,
    scale: Option<f32>,
}

#[step]
fn clip(eps: f64, bounds: Bounds) -> usize {
    bounds.limits.len() + usize::from(eps > 0.0)
}

#[pipeline]
fn clipping(eps: f64, limits: Vec<f64>, scale: Option<f32>) -> Artifact<usize> {
    clip(eps, Bounds { limits, scale })
}

#[test]
fn nan_and_infinite_parameters_show_as_nan_and_inf() {
    let (_dir, store) = temp_store();
    let limits = vec![0.0, 1.0];
    let reason = |eps: f64, limits: Vec<f64>, scale: Option<f32>| {
        let run = clipping(eps, limits, scale)
            .store(store.clone())
            .run()
            .unwrap();
        let step = run.step("clip").unwrap();
        assert_eq!(step.status(), StepStatus::Executed);
        step.reason().to_string()
    };
    reason(1.0, limits.clone(), Some(1.0));
    assert_eq!(
        reason(f64::NAN, limits.clone(), Some(1.0)),
        "parameter `eps` changed (1.0 -> NaN)"
    );
    assert_eq!(
        reason(f64::INFINITY, limits.clone(), Some(1.0)),
        "parameter `eps` changed (NaN -> inf)"
    );
    assert_eq!(
        reason(f64::NEG_INFINITY, limits.clone(), Some(1.0)),
        "parameter `eps` changed (inf -> -inf)"
    );
    // Nested in a struct, a vector and an option.
    assert_eq!(
        reason(
            f64::NEG_INFINITY,
            vec![f64::NEG_INFINITY, 1.0],
            Some(f32::NAN)
        ),
        "parameter `bounds` changed ({\"limits\":[0.0,1.0],\"scale\":1.0} -> \
         {\"limits\":[-inf,1.0],\"scale\":NaN})"
    );
    // The same non-finite values again are a cache hit.
    let run = clipping(
        f64::NEG_INFINITY,
        vec![f64::NEG_INFINITY, 1.0],
        Some(f32::NAN),
    )
    .store(store.clone())
    .run()
    .unwrap();
    assert_eq!(run.step("clip").unwrap().status(), StepStatus::Cached);

    // The JSON record stays valid JSON (`null`), and the component keeps the text.
    let record = &store.run_steps(run.id()).unwrap()[0];
    assert_eq!(record.parameters["eps"], serde_json::Value::Null);
    let eps = record
        .components
        .inputs
        .iter()
        .find(|i| i.name() == "eps")
        .unwrap();
    assert_eq!(eps.value_text().as_deref(), Some("-inf"));
}

/// The first version of `shift`.
mod v1 {
    use pipeline::prelude::*;

    #[step(name = "shift")]
    pub fn shift(xs: &[u32], k: u32) -> Vec<u32> {
        xs.iter().map(|x| x + k).collect()
    }
}

/// `shift` with one token changed: a new code signature.
mod v2 {
    use pipeline::prelude::*;

    #[step(name = "shift")]
    pub fn shift(xs: &[u32], k: u32) -> Vec<u32> {
        xs.iter().map(|x| k + x).collect()
    }
}

#[step]
fn numbers(n: u32) -> Vec<u32> {
    (0..n).collect()
}

/// One `shift` call per value of `ks`: calls `shift`, `shift_2`, ... in a loop.
#[pipeline(name = "sweep")]
fn sweep_v1(ks: Vec<u32>) -> Vec<Artifact<Vec<u32>>> {
    let xs = numbers(4);
    ks.into_iter().map(|k| v1::shift(&xs, k)).collect()
}

#[pipeline(name = "sweep")]
fn sweep_v2(ks: Vec<u32>) -> Vec<Artifact<Vec<u32>>> {
    let xs = numbers(4);
    ks.into_iter().map(|k| v2::shift(&xs, k)).collect()
}

#[pipeline(name = "other")]
fn other(k: u32) -> Artifact<Vec<u32>> {
    let xs = numbers(4);
    v1::shift(&xs, k)
}

#[pipeline(name = "third")]
fn third(k: u32) -> Artifact<Vec<u32>> {
    let xs = numbers(4);
    v1::shift(&xs, k)
}

/// `reason()` of call `name` in `run`, checked against what `explain` and `diff` compare
/// it with: the same earlier call, the same differences.
fn reason_of<O>(store: &Store, run: &Run<O>, earlier_run: &str, name: &str) -> (Reason, String) {
    reason_and_diff(store, run, earlier_run, name, true)
}

/// [`reason_of`]; with `in_diff` false, `diff` pairs the call with no earlier call (its
/// pairing is one to one, and the earlier call `explain` compares with is another's).
fn reason_and_diff<O>(
    store: &Store,
    run: &Run<O>,
    earlier_run: &str,
    name: &str,
    in_diff: bool,
) -> (Reason, String) {
    let step = run.step(name).unwrap();
    assert_eq!(step.status(), StepStatus::Executed, "{name}");
    let reason = step.reason().clone();
    let record = store
        .run_steps(run.id())
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap();
    let earlier = store
        .compared_execution(record.execution_id)
        .unwrap()
        .expect("an earlier execution");
    assert_eq!(earlier.run_name, earlier_run, "{name}");
    let differences = Reason::differences(&earlier.components, &record.components);
    assert_eq!(
        reason.changes(),
        differences,
        "{name}: headline and list agree"
    );
    let diff = store.compare_runs(earlier_run, run.id()).unwrap();
    let row = diff.steps.iter().find(|s| s.name == name).unwrap();
    if in_diff {
        assert_eq!(row.name_a.as_deref(), Some(earlier.name.as_str()), "{name}");
        assert_eq!(row.changes, differences, "{name}: diff agrees");
    } else {
        assert_eq!(row.name_a, None, "{name}: only in the second run");
        assert_eq!(row.changes, [Reason::FirstExecution], "{name}");
    }
    (reason, earlier.name)
}

#[test]
fn looped_calls_are_compared_with_the_same_call_of_the_earlier_run() {
    let (_dir, store) = temp_store();
    sweep_v1(vec![1, 3])
        .store(store.clone())
        .run_name("first")
        .run()
        .unwrap();

    // k = [1, 3] -> [1, 5]: `shift_2` compares with `shift_2` (3 -> 5), never with its
    // sibling `shift` of the same run, nor with the earlier `shift`.
    let second = sweep_v1(vec![1, 5])
        .store(store.clone())
        .run_name("second")
        .run()
        .unwrap();
    assert_eq!(second.step("shift").unwrap().status(), StepStatus::Cached);
    let (reason, earlier) = reason_of(&store, &second, "first", "shift_2");
    assert_eq!(reason, param("k", "3", "5"));
    assert_eq!(earlier, "shift_2");

    // New code, and the loop starts with a new value: k = [1, 5] -> [0, 1, 5]. Pairing by
    // name would compare `shift_2` (k = 1) with the earlier `shift_2` (k = 5); the same
    // call is the earlier `shift`, whose only difference is the code.
    let third = sweep_v2(vec![0, 1, 5])
        .store(store.clone())
        .run_name("third")
        .run()
        .unwrap();
    // (`sweep_v2` lives in another module, so its code differs by module and body.)
    let code_only = |r: &Reason| {
        r.changes().iter().all(|c| {
            matches!(
                c,
                Reason::CodeChanged { .. }
                    | Reason::CodePartChanged { .. }
                    | Reason::ModuleChanged { .. }
            )
        })
    };
    let (reason, earlier) = reason_of(&store, &third, "second", "shift_2");
    assert!(code_only(&reason), "{reason}");
    assert_eq!(earlier, "shift");
    let (reason, earlier) = reason_of(&store, &third, "second", "shift_3");
    assert!(code_only(&reason), "{reason}");
    assert_eq!(earlier, "shift_2");
    // The new value differs from every earlier call in code and `k`: the call at the same
    // position, with both differences listed. `diff` pairs calls one to one, and both
    // earlier calls are paired already: there it is the one call only in the third run.
    let (reason, earlier) = reason_and_diff(&store, &third, "second", "shift", false);
    assert_eq!(earlier, "shift");
    let changes = reason.changes();
    let (last, code) = changes.split_last().expect("differences");
    assert!(!code.is_empty(), "{reason}");
    assert!(code.iter().all(code_only), "{reason}");
    assert_eq!(*last, param("k", "1", "0"), "{reason}");
}

#[test]
fn a_run_of_another_pipeline_is_compared_only_when_the_pipeline_has_none() {
    let (_dir, store) = temp_store();
    sweep_v1(vec![2])
        .store(store.clone())
        .run_name("sweep-run")
        .run()
        .unwrap();
    // Another pipeline calls the same step later.
    other(7)
        .store(store.clone())
        .run_name("other-run")
        .run()
        .unwrap();
    // `sweep` compares with its own earlier run, though `other` ran since.
    let run = sweep_v1(vec![4])
        .store(store.clone())
        .run_name("sweep-again")
        .run()
        .unwrap();
    let (reason, _) = reason_of(&store, &run, "sweep-run", "shift");
    assert_eq!(reason, param("k", "2", "4"));
    // A pipeline with no earlier run of its own compares with the newest other one.
    let run = third(9).store(store.clone()).run().unwrap();
    let (reason, _) = reason_of(&store, &run, "sweep-again", "shift");
    assert_eq!(reason, param("k", "4", "9"));
}

/// The reasons of a map's and a fan-in's lists (issue 18): each a line a person reads, and
/// JSON a script matches on by `kind`, with a 10,000-item list still one short line.
#[test]
fn list_and_item_reasons_read_in_the_lists_terms() {
    let item = |index: usize, producer: &str| Reason::ListItemChanged {
        index,
        producer: producer.into(),
    };
    let cases = [
        (
            Reason::ItemChanged {
                name: "fold".into(),
                index: 3,
                outer: Vec::new(),
                list: "make_folds".into(),
            },
            "item 3 of `make_folds`'s list changed",
            serde_json::json!({"kind": "item_changed", "name": "fold", "index": 3, "list": "make_folds"}),
        ),
        (
            item(0, "fit"),
            "item 0 changed (produced by `fit`)",
            serde_json::json!({"kind": "list_item_changed", "index": 0, "producer": "fit"}),
        ),
        (
            Reason::ListReordered,
            "the same items, in another order",
            serde_json::json!({"kind": "list_reordered"}),
        ),
        (
            Reason::ListInputChanged {
                name: "all".into(),
                changes: vec![
                    item(0, "train_fold[0]"),
                    item(17, "train_fold[17]"),
                    item(4_242, "train_fold[4242]"),
                    Reason::MoreItemsChanged { more: 9_996 },
                    Reason::ListLengthChanged {
                        old: 10_000,
                        new: 10_001,
                    },
                ],
            },
            "input `all` changed: item 0 changed (produced by `train_fold[0]`); item 17 changed \
             (produced by `train_fold[17]`); item 4242 changed (produced by `train_fold[4242]`); \
             9996 more items changed; the list has 10001 items, was 10000",
            serde_json::json!({"kind": "list_input_changed", "name": "all", "changes": [
                {"kind": "list_item_changed", "index": 0, "producer": "train_fold[0]"},
                {"kind": "list_item_changed", "index": 17, "producer": "train_fold[17]"},
                {"kind": "list_item_changed", "index": 4242, "producer": "train_fold[4242]"},
                {"kind": "more_items_changed", "more": 9996},
                {"kind": "list_length_changed", "old": 10000, "new": 10001},
            ]}),
        ),
    ];
    for (reason, text, json) in cases {
        assert_eq!(reason.to_string(), text);
        assert_eq!(serde_json::to_value(&reason).unwrap(), json, "{text}");
    }
}
