//! Labelled calls (`.named(..)`): names of calls in a loop, the rules a label follows, and
//! pairing of calls across runs by label in `diff` and `explain`.

mod common;

use common::temp_store;
use pipeline::prelude::*;
use pipeline::report::{Explanation, RunDetail, RunDiff};

#[step]
fn source(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

#[step]
fn shift(xs: &[f64], k: u32) -> Vec<f64> {
    xs.iter().map(|x| x + f64::from(k)).collect()
}

#[step]
fn total(xs: &[f64]) -> f64 {
    xs.iter().sum()
}

#[step(outputs(low, high))]
fn split(xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = xs.split_at(xs.len() / 2);
    (a.to_vec(), b.to_vec())
}

/// One labelled `shift` per value of `ks` (`shift[k]`), each summed by an unlabelled
/// `total`.
#[pipeline(name = "labelled")]
fn labelled(ks: Vec<u32>) -> Vec<Artifact<f64>> {
    let xs = source(3);
    ks.into_iter()
        .map(|k| total(&shift(&xs, k).named(format!("shift[{k}]"))))
        .collect()
}

/// The same sweep without labels: `shift`, `shift_2`, ...
#[pipeline(name = "labelled")]
fn unlabelled(ks: Vec<u32>) -> Vec<Artifact<f64>> {
    let xs = source(3);
    ks.into_iter().map(|k| total(&shift(&xs, k))).collect()
}

/// The sweep with the labels `shift k=<k>` (a relabel of [`labelled`]).
#[pipeline(name = "labelled")]
fn relabelled(ks: Vec<u32>) -> Vec<Artifact<f64>> {
    let xs = source(3);
    ks.into_iter()
        .map(|k| total(&shift(&xs, k).named(format!("shift k={k}"))))
        .collect()
}

/// `shift` called with each `(label, k)`.
#[pipeline(name = "labelled")]
fn chosen(calls: Vec<(String, u32)>) -> Vec<Artifact<Vec<f64>>> {
    let xs = source(3);
    calls
        .into_iter()
        .map(|(label, k)| shift(&xs, k).named(label))
        .collect()
}

fn run(p: Pipeline<Vec<Artifact<f64>>>, store: &Store, name: &str) -> Run<Vec<Artifact<f64>>> {
    p.store(store.clone()).run_name(name).run().expect(name)
}

fn executed(run: &Run<Vec<Artifact<f64>>>) -> Vec<&str> {
    run.steps()
        .iter()
        .filter(|s| s.status() == StepStatus::Executed)
        .map(|s| s.name())
        .collect()
}

/// `(name in B, name in A, verdict)` per step of a diff.
fn rows(diff: &RunDiff) -> Vec<(String, Option<String>, &'static str)> {
    diff.steps
        .iter()
        .map(|s| (s.name.clone(), s.name_a.clone(), s.verdict()))
        .collect()
}

fn row(b: &str, a: Option<&str>, verdict: &'static str) -> (String, Option<String>, &'static str) {
    (b.to_string(), a.map(str::to_string), verdict)
}

#[test]
fn labels_name_the_calls_and_numbering_skips_them() {
    let p = labelled(vec![1, 3]);
    assert_eq!(
        p.step_names(),
        ["source", "shift[1]", "total", "shift[3]", "total_2"]
    );

    // A label given to an earlier call, after later calls of the same step were made.
    #[pipeline]
    fn late() -> Vec<Artifact<Vec<f64>>> {
        let xs = source(3);
        let a = shift(&xs, 1);
        let b = shift(&xs, 2);
        let a = a.named("first");
        // The generated `shift` is free again: the next unlabelled call takes it.
        let c = shift(&xs, 3);
        vec![a, b, c]
    }
    assert_eq!(late().step_names(), ["source", "first", "shift_2", "shift"]);

    // Labelling the last numbered call frees its number for the next call.
    #[pipeline]
    fn dense() -> Vec<Artifact<Vec<f64>>> {
        let xs = source(3);
        vec![
            shift(&xs, 1),
            shift(&xs, 2).named("two"),
            shift(&xs, 3),
            shift(&xs, 4).named("four").named("four again"),
        ]
    }
    assert_eq!(
        dense().step_names(),
        ["source", "shift", "two", "shift_2", "four again"]
    );

    // The outputs struct of a multi-output step takes a label too.
    #[pipeline]
    fn halves() -> (Artifact<Vec<f64>>, Artifact<Vec<f64>>) {
        let xs = source(4);
        let parts = split(&xs).named("split[4]");
        (parts.low, parts.high)
    }
    assert_eq!(halves().step_names(), ["source", "split[4]"]);
}

#[test]
fn labels_show_in_reports_records_and_the_run_but_not_in_the_key() {
    let (_dir, store) = temp_store();
    let first = run(labelled(vec![1, 3]), &store, "first");
    let report = first.step("shift[3]").expect("a step named by its label");
    assert_eq!(report.step(), "shift");
    assert_eq!(first.output()[1].load().unwrap(), 15.0);
    let records = store.run_steps("first").unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["source", "shift[1]", "total", "shift[3]", "total_2"]
    );
    assert_eq!(records[3].step, "shift");
    let detail = RunDetail::new(&store, "first").unwrap().to_string();
    assert!(detail.contains("\nshift[3] "), "{detail}");

    // The same calls without labels have the same keys: the run reuses everything.
    let plain = run(unlabelled(vec![1, 3]), &store, "plain");
    assert!(executed(&plain).is_empty(), "{:?}", executed(&plain));
    let keys = |run: &Run<Vec<Artifact<f64>>>| -> Vec<_> {
        run.steps().iter().map(|s| s.cache_key()).collect()
    };
    assert_eq!(keys(&first), keys(&plain));
}

#[test]
fn a_value_inserted_at_the_front_of_a_labelled_sweep_is_one_new_call() {
    let (_dir, store) = temp_store();
    run(labelled(vec![1, 3, 5]), &store, "a");
    let b = run(labelled(vec![0, 1, 3, 5]), &store, "b");
    assert_eq!(executed(&b), ["shift[0]", "total"]);

    let diff = RunDiff::new(&store, "a", "b").unwrap();
    assert_eq!(
        rows(&diff),
        [
            row("source", Some("source"), "same"),
            row("shift[0]", None, "only in B"),
            row("total", None, "only in B"),
            row("shift[1]", Some("shift[1]"), "same"),
            row("total_2", Some("total"), "same"),
            row("shift[3]", Some("shift[3]"), "same"),
            row("total_3", Some("total_2"), "same"),
            row("shift[5]", Some("shift[5]"), "same"),
            row("total_4", Some("total_3"), "same"),
        ]
    );
    let text = diff.to_string();
    assert!(text.ends_with("\n2 of 9 steps differ.\n"), "{text}");

    // Removing the front value again: the call is only in A, the rest the same.
    run(labelled(vec![1, 3, 5]), &store, "c");
    let diff = RunDiff::new(&store, "b", "c").unwrap();
    let only_a: Vec<&str> = diff
        .steps
        .iter()
        .filter(|s| s.verdict() == "only in A")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(only_a, ["shift[0]", "total"]);
    assert_eq!(diff.changed().count(), 2);
}

#[test]
fn unlabelled_calls_pair_by_key_before_position() {
    let (_dir, store) = temp_store();
    run(unlabelled(vec![1, 3, 5]), &store, "a");
    run(unlabelled(vec![0, 1, 3, 5]), &store, "b");
    let diff = RunDiff::new(&store, "a", "b").unwrap();
    assert_eq!(
        rows(&diff),
        [
            row("source", Some("source"), "same"),
            row("shift", None, "only in B"),
            row("total", None, "only in B"),
            row("shift_2", Some("shift"), "same"),
            row("total_2", Some("total"), "same"),
            row("shift_3", Some("shift_2"), "same"),
            row("total_3", Some("total_2"), "same"),
            row("shift_4", Some("shift_3"), "same"),
            row("total_4", Some("total_3"), "same"),
        ]
    );
    // A changed value pairs by the one component that differs, at its position.
    run(unlabelled(vec![0, 1, 4, 5]), &store, "c");
    let diff = RunDiff::new(&store, "b", "c").unwrap();
    let changed: Vec<(&str, Option<&str>, Vec<&str>)> = diff
        .changed()
        .map(|s| {
            (
                s.name.as_str(),
                s.name_a.as_deref(),
                s.changes.iter().map(|c| c.text.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            (
                "shift_3",
                Some("shift_3"),
                vec!["parameter `k` changed (3 -> 4)"]
            ),
            (
                "total_3",
                Some("total_3"),
                vec!["input `xs` changed (produced by `shift_3`)"]
            ),
        ],
        "{diff}"
    );
}

#[test]
fn a_relabelled_call_is_a_rename_not_a_new_computation() {
    let (_dir, store) = temp_store();
    run(labelled(vec![1, 3]), &store, "a");
    let b = run(relabelled(vec![1, 3]), &store, "b");
    assert!(executed(&b).is_empty(), "{:?}", executed(&b));
    let diff = RunDiff::new(&store, "a", "b").unwrap();
    assert_eq!(diff.changed().count(), 0, "{diff}");
    let renamed: Vec<(&str, Option<&str>)> = diff
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.renamed_from()))
        .collect();
    assert_eq!(
        renamed,
        [
            ("source", None),
            ("shift k=1", Some("shift[1]")),
            ("total", None),
            ("shift k=3", Some("shift[3]")),
            ("total_2", None),
        ]
    );
    let text = diff.to_string();
    assert!(text.contains("shift k=3 (A: shift[3])"), "{text}");
}

#[test]
fn explain_compares_a_labelled_call_with_the_earlier_call_of_its_label() {
    let (_dir, store) = temp_store();
    let calls = |c: &[(&str, u32)]| -> Vec<(String, u32)> {
        c.iter().map(|(l, k)| (l.to_string(), *k)).collect()
    };
    chosen(calls(&[("small", 1), ("large", 3)]))
        .store(store.clone())
        .run_name("a")
        .run()
        .unwrap();
    // `large` comes first now and has a new value: by position (or by being one component
    // away from both) it would be compared with `small`; by label, with `large`.
    let b = chosen(calls(&[("large", 5), ("small", 1)]))
        .store(store.clone())
        .run_name("b")
        .run()
        .unwrap();
    let large = b.step("large").unwrap();
    assert_eq!(large.status(), StepStatus::Executed);
    assert_eq!(large.reason().to_string(), "parameter `k` changed (3 -> 5)");
    let record = store
        .run_steps("b")
        .unwrap()
        .into_iter()
        .find(|s| s.name == "large")
        .unwrap();
    let explained = Explanation::new(&store, store.run("b").unwrap(), record).unwrap();
    let previous = explained.previous.as_ref().expect("a previous execution");
    assert_eq!(previous.step, "large");
    assert_eq!(previous.run_name, "a");
    let diff = RunDiff::new(&store, "a", "b").unwrap();
    assert_eq!(
        rows(&diff),
        [
            row("source", Some("source"), "same"),
            row("large", Some("large"), "different"),
            row("small", Some("small"), "same"),
        ]
    );
}

/// The problem of a run of `p`, which must fail with [`Error::Graph`].
fn graph_problem<O: pipeline::PipelineOutput>(p: Pipeline<O>) -> String {
    let (_dir, store) = temp_store();
    match p.store(store).run() {
        Err(Error::Graph { pipeline, problem }) => {
            assert_eq!(pipeline, "labelled");
            problem
        }
        Err(e) => panic!("expected Error::Graph, got {e:?}"),
        Ok(_) => panic!("the run succeeded"),
    }
}

#[test]
fn invalid_and_duplicate_labels_fail_the_run_with_a_clear_error() {
    let one = |label: &str| chosen(vec![(label.to_string(), 1)]);
    assert_eq!(
        graph_problem(one("")),
        "the label \"\" given to call 2 (step `shift`) with `.named(..)` is empty"
    );
    assert_eq!(
        graph_problem(one("fits/1")),
        "the label \"fits/1\" given to call 2 (step `shift`) with `.named(..)` contains `/`, \
         which would make the name a path in `pipeline show` and URLs"
    );
    assert_eq!(
        graph_problem(one("a\nb")),
        "the label \"a\\nb\" given to call 2 (step `shift`) with `.named(..)` contains the \
         control character U+000A"
    );
    let long = "x".repeat(201);
    let problem = graph_problem(one(&long));
    assert!(
        problem.ends_with("is 201 characters long; a label has at most 200"),
        "{problem}"
    );
    // 200 characters (not bytes) are fine, brackets, spaces and `=` too.
    let (_dir, store) = temp_store();
    let at_most = "é".repeat(200);
    chosen(vec![(at_most.clone(), 1), ("fit[k = 1]".into(), 2)])
        .store(store)
        .run()
        .expect("valid labels");

    // Two calls with one label: both are named.
    let dup = chosen(vec![("fit[1]".into(), 1), ("fit[1]".into(), 2)]);
    assert_eq!(
        graph_problem(dup),
        "two calls are named `fit[1]`: call 2 (step `shift`) and call 3 (step `shift`), \
         labelled with `.named(..)`; labels must be unique within a pipeline (e.g. put the \
         loop's parameter in it: `.named(format!(\"shift[{x}]\"))`)"
    );
    // A label equal to another call's generated name.
    #[pipeline(name = "labelled")]
    fn taken() -> (Artifact<Vec<f64>>, Artifact<Vec<f64>>) {
        let xs = source(3);
        (shift(&xs, 1), shift(&xs, 2).named("source"))
    }
    let problem = graph_problem(taken());
    assert!(
        problem.starts_with("two calls are named `source`: call 1 (step `source`) and call 3"),
        "{problem}"
    );
}

#[test]
#[should_panic(expected = "`.named(\"late\")` was called outside a `#[pipeline]` body")]
fn named_outside_a_pipeline_body_panics() {
    let (_dir, store) = temp_store();
    let run = chosen(vec![("a".into(), 1)]).store(store).run().unwrap();
    let _ = run.output()[0].clone().named("late");
}
