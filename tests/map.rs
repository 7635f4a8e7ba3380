//! Typed dynamic fan-out (issue 18): `list.map(|item| ..)` over an `Artifact<Vec<T>>`,
//! cached per item. Each test counts the executions of every step per item.

mod common;

use common::{count, executed, temp_store};
use pipeline::prelude::*;

#[step]
fn rows(values: Vec<i64>) -> Vec<i64> {
    values
}

/// Fails for a negative item: a failing item.
#[step]
fn double(x: &i64, tag: String) -> Result<i64, String> {
    count(format!("double {tag} {x}"));
    if *x < 0 {
        return Err(format!("negative item {x}"));
    }
    Ok(2 * x)
}

#[step]
fn add(x: &i64, offset: &i64, tag: String) -> i64 {
    count(format!("add {tag} {x}"));
    x + offset
}

#[step]
fn total(xs: &[i64], tag: String) -> i64 {
    count(format!("total {tag}"));
    xs.iter().sum()
}

#[step]
fn offset(value: i64) -> i64 {
    value
}

/// A two-step chain per item, with a broadcast input (`shift`, from outside the map), then
/// a fan-in.
#[pipeline]
fn chain(values: Vec<i64>, shift: i64, tag: String) -> (Artifact<Vec<i64>>, Artifact<i64>) {
    let list = rows(values);
    let shift = offset(shift);
    let mapped = list.map(|x| {
        let doubled = double(x, tag.clone());
        add(&doubled, &shift, tag.clone())
    });
    let sum = total(&mapped, tag);
    (mapped, sum)
}

fn run(
    store: &Store,
    values: &[i64],
    shift: i64,
    tag: &str,
) -> Run<(Artifact<Vec<i64>>, Artifact<i64>)> {
    chain(values.to_vec(), shift, tag.to_string())
        .store(store.clone())
        .run()
        .unwrap()
}

#[test]
fn each_item_runs_its_chain_once_and_a_second_run_executes_nothing() {
    let (_dir, store) = temp_store();
    let tag = "twice";
    let first = run(&store, &[1, 2, 3], 10, tag);
    assert_eq!(first.output().0.load().unwrap(), vec![12, 14, 16]);
    assert_eq!(first.output().1.load().unwrap(), 42);
    for x in [1, 2, 3] {
        assert_eq!(executed(&format!("double {tag} {x}")), 1);
        assert_eq!(executed(&format!("add {tag} {}", 2 * x)), 1);
    }
    // Per-item calls are named `<call>[i]`.
    let names: Vec<String> = first.steps().iter().map(|s| s.name().to_string()).collect();
    for name in ["double[0]", "double[2]", "add[1]"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "double"),
        "templates never run: {names:?}"
    );

    let second = run(&store, &[1, 2, 3], 10, tag);
    assert!(
        second
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        common::statuses(&second)
    );
    assert_eq!(second.output().1.load().unwrap(), 42);
    assert_eq!(executed(&format!("total {tag}")), 1);
}

#[test]
fn appending_editing_and_reordering_run_only_what_changed() {
    let (_dir, store) = temp_store();
    let tag = "edits";
    run(&store, &[1, 2], 0, tag);

    // Append: only the new item's chain.
    let appended = run(&store, &[1, 2, 5], 0, tag);
    assert_eq!(executed(&format!("double {tag} 1")), 1);
    assert_eq!(executed(&format!("double {tag} 2")), 1);
    assert_eq!(executed(&format!("double {tag} 5")), 1);
    assert_eq!(appended.output().0.load().unwrap(), vec![2, 4, 10]);

    // Edit one item: only its chain.
    let edited = run(&store, &[1, 7, 5], 0, tag);
    assert_eq!(executed(&format!("double {tag} 7")), 1);
    assert_eq!(executed(&format!("double {tag} 1")), 1);
    assert_eq!(executed(&format!("double {tag} 5")), 1);
    assert_eq!(edited.output().1.load().unwrap(), 26);

    // Reorder: no per-item call runs; the result follows the new order.
    let reordered = run(&store, &[5, 1, 7], 0, tag);
    for x in [1, 5, 7] {
        assert_eq!(executed(&format!("double {tag} {x}")), 1, "double {x}");
        assert_eq!(executed(&format!("add {tag} {}", 2 * x)), 1, "add {x}");
    }
    assert_eq!(reordered.output().0.load().unwrap(), vec![10, 2, 14]);
    let per_item_executed = reordered
        .steps()
        .iter()
        .filter(|s| {
            (s.step() == "double" || s.step() == "add") && s.status() == StepStatus::Executed
        })
        .count();
    assert_eq!(per_item_executed, 0, "{:?}", common::statuses(&reordered));
}

#[test]
fn a_broadcast_input_that_changes_reruns_the_chain_steps_that_read_it() {
    let (_dir, store) = temp_store();
    let tag = "broadcast";
    run(&store, &[1, 2], 0, tag);
    let shifted = run(&store, &[1, 2], 100, tag);
    // `double` does not read the shift: reused; `add` does: runs per item.
    assert_eq!(executed(&format!("double {tag} 1")), 1);
    assert_eq!(executed(&format!("add {tag} 2")), 2);
    assert_eq!(executed(&format!("add {tag} 4")), 2);
    assert_eq!(shifted.output().0.load().unwrap(), vec![102, 104]);
}

#[test]
fn an_empty_list_maps_to_an_empty_list_and_the_steps_after_it_run() {
    let (_dir, store) = temp_store();
    let tag = "empty";
    let empty = run(&store, &[], 3, tag);
    assert_eq!(empty.output().0.load().unwrap(), Vec::<i64>::new());
    assert_eq!(empty.output().1.load().unwrap(), 0);
    assert_eq!(executed(&format!("total {tag}")), 1);
    // The split of an empty list records no output, and is still found in the cache: a
    // second run executes nothing.
    let again = run(&store, &[], 3, tag);
    assert!(
        again
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        common::statuses(&again)
    );
    assert_eq!(again.output().1.load().unwrap(), 0);
}

#[test]
fn a_failing_item_fails_its_chain_only_and_a_rerun_runs_only_it() {
    let (_dir, store) = temp_store();
    let tag = "failing";
    let failed = chain(vec![1, -4, 3], 0, tag.into())
        .store(store.clone())
        .run();
    let Err(pipeline::Error::StepFailed { step, .. }) = &failed else {
        panic!("expected a failed step, got {:?}", failed.map(|_| ()));
    };
    assert_eq!(step, "double[1]");
    // The other items finished; the steps after the map were skipped.
    assert_eq!(executed(&format!("add {tag} 2")), 1);
    assert_eq!(executed(&format!("add {tag} 6")), 1);
    assert_eq!(executed(&format!("total {tag}")), 0);

    let fixed = run(&store, &[1, 4, 3], 0, tag);
    assert_eq!(executed(&format!("double {tag} 1")), 1);
    assert_eq!(executed(&format!("double {tag} 3")), 1);
    assert_eq!(executed(&format!("double {tag} 4")), 1);
    assert_eq!(fixed.output().1.load().unwrap(), 16);
}

#[test]
fn a_cached_list_is_expanded_from_its_recorded_items_without_reading_them() {
    let (dir, store) = temp_store();
    run(&store, &[3, 1, 4, 1, 5], 0, "unread");
    // A new handle, so its counters start at zero (a new process would see the same).
    let fresh = Store::open(dir.path().join("store")).unwrap();
    let second = chain(vec![3, 1, 4, 1, 5], 0, "unread".into())
        .store(fresh.clone())
        .run()
        .unwrap();
    assert!(
        second
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        common::statuses(&second)
    );
    assert_eq!(
        fresh.stats().bytes_read,
        0,
        "no byte read by a fully cached map"
    );
    // 5 items: the split, 2 calls per item, the gather and the total, plus `rows` and
    // `offset`.
    assert_eq!(second.steps().len(), 2 + 1 + 10 + 2);
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

#[test]
fn per_item_calls_run_in_worker_processes() {
    let (_dir, store) = temp_store();
    // Counters live in each worker process: this test checks results and statuses.
    let p = || {
        common::on_backend(
            chain(vec![4, 5, 6], 1, "processes".into()).store(store.clone()),
            pipeline::config::ExecutorKind::Processes,
        )
    };
    let first = p().run().unwrap();
    assert_eq!(first.output().0.load().unwrap(), vec![9, 11, 13]);
    assert_eq!(first.output().1.load().unwrap(), 33);
    let again = p().run().unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

#[pipeline]
fn leaky(values: Vec<i64>) -> Artifact<i64> {
    let list = rows(values);
    let mut inner = None;
    let _ = list.map(|x| {
        let d = double(x, "leak".to_string());
        inner = Some(d.clone());
        d
    });
    // An output made inside the closure, used outside it: refused, with the fix.
    add(&inner.unwrap(), &offset(1), "leak".to_string())
}

#[test]
fn a_handle_leaked_out_of_the_closure_is_a_clear_error() {
    let (_dir, store) = temp_store();
    let err = leaky(vec![1, 2]).store(store).run().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "input `x` of step `add` is the output of `double`, made inside a `map` closure"
        ),
        "{text}"
    );
    assert!(
        text.contains("return its output from the closure"),
        "{text}"
    );
}

#[pipeline]
fn returns_inner(values: Vec<i64>) -> (Artifact<Vec<i64>>, Artifact<i64>) {
    let mut inner = None;
    let mapped = rows(values).map(|x| {
        let d = double(x, "returned".to_string());
        inner = Some(d.clone());
        d
    });
    (mapped, inner.unwrap())
}

#[step]
fn square(x: &i64) -> i64 {
    x * x
}

#[pipeline]
fn label_clash(values: Vec<i64>) -> (Artifact<Vec<i64>>, Artifact<i64>) {
    let mapped = rows(values).map(|x| square(x));
    let k = offset(10);
    (mapped, square(&k).named("square[1]"))
}

#[test]
fn a_returned_inner_handle_and_a_label_shaped_like_a_per_item_name_are_refused() {
    let (_dir, store) = temp_store();
    let err = returns_inner(vec![1, 2])
        .store(store.clone())
        .run()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the pipeline returns an output of `double`, made inside a `map` closure"),
        "{err}"
    );
    let err = label_clash(vec![1, 2, 3]).store(store).run().unwrap_err();
    assert!(
        err.to_string()
            .contains("the call named `square[1]` has the name of a per-item call of the map"),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "`map` was called outside a `#[pipeline]` body")]
fn map_outside_a_pipeline_body_panics_with_a_message_about_map() {
    let (_dir, store) = temp_store();
    let run = rows_only(vec![1]).store(store).run().unwrap();
    let _ = run.output().map(|x| square(x));
}

#[pipeline]
fn rows_only(values: Vec<i64>) -> Artifact<Vec<i64>> {
    rows(values)
}

#[test]
fn verify_finds_no_problem_in_a_store_that_holds_a_map() {
    let (_dir, store) = temp_store();
    run(&store, &[1, 2, 3], 0, "verify");
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[pipeline]
fn named_item(values: Vec<i64>) -> Artifact<Vec<i64>> {
    rows(values).map(|x| square(&x.clone().named("the_item")))
}

#[test]
fn naming_the_item_handle_is_refused() {
    let (_dir, store) = temp_store();
    let err = named_item(vec![1]).store(store).run().unwrap_err();
    assert!(
        err.to_string()
            .contains("was called on the item handle of a `map` closure"),
        "{err}"
    );
}

#[test]
fn diff_pairs_a_reordered_lists_items_by_key_so_nothing_differs_but_the_list() {
    let (_dir, store) = temp_store();
    let a = run(&store, &[1, 5, 3], 0, "reorder-diff");
    let b = run(&store, &[3, 1, 5], 0, "reorder-diff");
    let diff = pipeline::report::RunDiff::new(&store, a.id(), b.id()).unwrap();
    for step in diff.steps.iter().filter(|s| s.name.contains('[')) {
        assert!(step.same_key, "{} ({:?}) differs", step.name, step.name_a);
    }
    // `double[0]` now doubles 3, which was item 2 before.
    let first = diff.steps.iter().find(|s| s.name == "double[0]").unwrap();
    assert_eq!(first.name_a.as_deref(), Some("double[2]"));
    // What differs: the list and `total`, which reads the gathered list. The built-in
    // split and gather are bookkeeping: in the model, marked, but not steps that differ.
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["rows", "total"], "{diff}");
    let builtin: Vec<(&str, bool)> = diff
        .steps
        .iter()
        .filter(|s| s.builtin)
        .map(|s| (s.name.as_str(), s.same_key))
        .collect();
    assert_eq!(
        builtin,
        [("pipeline.split", false), ("pipeline.gather", false)]
    );
    let total = diff.steps.iter().find(|s| s.name == "total").unwrap();
    assert_eq!(
        total.changes[0].text,
        "input `xs` changed: the same items, in another order"
    );
    let text = diff.to_string();
    assert!(!text.contains("pipeline."), "{text}");
    // rows, offset, 3 doubles, 3 adds, total.
    assert!(text.contains("\n2 of 9 steps differ.\n"), "{text}");
}

#[test]
fn an_appended_item_is_a_first_execution_not_a_change_of_another_item() {
    let (_dir, store) = temp_store();
    run(&store, &[1, 2], 0, "first-exec");
    let appended = run(&store, &[1, 2, 9], 0, "first-exec");
    let new = appended.step("double[2]").unwrap();
    assert_eq!(new.status(), StepStatus::Executed);
    assert_eq!(
        new.reason(),
        &pipeline::Reason::FirstExecution,
        "{}",
        new.reason()
    );
    // `explain` says it is the item's first, not the step's (other items executed before).
    let records = store.run_steps(appended.id()).unwrap();
    let record = records.iter().find(|s| s.name == "double[2]").unwrap();
    let first = pipeline::report::Explanation::new(
        &store,
        store.run(appended.id()).unwrap(),
        record.clone(),
    )
    .unwrap()
    .to_string();
    assert!(
        first.contains(
            "No earlier successful execution of `double[2]` (item 2 of its list) is recorded: \
             this was the item's first."
        ),
        "{first}"
    );
    assert!(!first.contains("of step `double` is recorded"), "{first}");
    // An edited item is compared with the same item of the run before, and says so in
    // the item's terms, in the run's record, in `explain` and in `diff`.
    let edited = run(&store, &[1, 7, 9], 0, "first-exec");
    let changed = edited.step("double[1]").unwrap();
    let item = pipeline::Reason::ItemChanged {
        name: "x".into(),
        index: 1,
        outer: Vec::new(),
        list: "rows".into(),
    };
    assert_eq!(changed.reason(), &item);
    assert_eq!(
        changed.reason().to_string(),
        "item 1 of `rows`'s list changed"
    );
    let records = store.run_steps(edited.id()).unwrap();
    let record = records.iter().find(|s| s.name == "double[1]").unwrap();
    let explained =
        pipeline::report::Explanation::new(&store, store.run(edited.id()).unwrap(), record.clone())
            .unwrap();
    let reasons: Vec<&pipeline::Reason> = explained.changes.iter().map(|c| &c.reason).collect();
    assert_eq!(reasons, [&item]);
    let text = explained.to_string();
    assert!(
        text.contains("executed in ") && text.contains(": item 1 of `rows`'s list changed."),
        "{text}"
    );
    assert!(
        text.contains("  - item 1 of `rows`'s list changed\n"),
        "{text}"
    );
    let json = serde_json::to_value(&explained).unwrap();
    assert_eq!(json["changes"][0]["kind"], "item_changed", "{json}");
    assert_eq!(json["changes"][0]["index"], 1, "{json}");
    assert_eq!(json["changes"][0]["list"], "rows", "{json}");
    // The gather names the item by its position, and `total` reads through it.
    assert_eq!(
        edited.step("total").unwrap().reason().to_string(),
        "input `xs` changed: item 1 changed (produced by `add[1]`)"
    );
    let diff = pipeline::report::RunDiff::new(&store, appended.id(), edited.id()).unwrap();
    let changed: Vec<(&str, String)> = diff
        .changed()
        .map(|s| {
            let texts: Vec<&str> = s.changes.iter().map(|c| c.text.as_str()).collect();
            (s.name.as_str(), texts.join("; "))
        })
        .collect();
    assert_eq!(
        changed,
        [
            (
                "rows",
                "parameter `values` changed ([1,2,9] -> [1,7,9])".to_string()
            ),
            ("double[1]", "item 1 of `rows`'s list changed".to_string()),
            (
                "add[1]",
                "input `x` changed (produced by `double[1]`)".to_string()
            ),
            (
                "total",
                "input `xs` changed: item 1 changed (produced by `add[1]`)".to_string()
            ),
        ],
        "{diff}"
    );
}

#[test]
fn diff_sums_up_a_large_maps_equal_items_and_lists_the_different_ones() {
    let (_dir, store) = temp_store();
    let n = 1_000i64;
    let values: Vec<i64> = (0..n).collect();
    let a = run(&store, &values, 0, "large-diff");
    let mut edited = values.clone();
    edited[500] = 5_000;
    edited.push(n);
    let b = run(&store, &edited, 0, "large-diff");
    let diff = pipeline::report::RunDiff::new(&store, a.id(), b.id()).unwrap();
    // The model has every call, the built-in ones included.
    assert_eq!(
        diff.steps.len(),
        2 + 2 * (n as usize + 1) + 3,
        "{}",
        diff.steps.len()
    );
    let text = diff.to_string();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("double") || l.starts_with("add"))
        .collect();
    let columns = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(rows.len(), 8, "{text}");
    assert_eq!(
        columns(rows[0]),
        ["double[0..=499]", "executed", "cached", "500", "same"],
        "{text}"
    );
    assert!(
        rows[1].starts_with("double[500] ")
            && rows[1].ends_with("different: item 500 of `rows`'s list changed"),
        "{text}"
    );
    assert_eq!(
        columns(rows[2]),
        ["double[501..=999]", "executed", "cached", "499", "same"],
        "{text}"
    );
    assert_eq!(
        columns(rows[3]),
        ["double[1000]", "-", "executed", "only", "in", "B"],
        "{text}"
    );
    assert!(rows[4].starts_with("add[0..=499] "), "{text}");
    assert!(rows[5].starts_with("add[500] "), "{text}");
    // rows, offset, total, 1001 doubles, 1001 adds; rows, 2 items and total differ.
    assert!(
        text.contains("\n6 of 2005 steps differ.\n"),
        "{}",
        &text[text.len().saturating_sub(400)..]
    );
    assert!(text.lines().count() < 30, "{text}");
}

#[test]
fn a_setting_for_one_per_item_call_names_the_call_to_set_instead() {
    let (_dir, store) = temp_store();
    let err = chain(vec![1, 2], 0, "setting".into())
        .store(store)
        .step_enable_cache("double[1]", false)
        .run()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "no step `double[1]` to set caching for (a map's per-item calls are set through \
             the call in its closure, `double`, for every item); its steps are: rows, offset, \
             double, add, total"
        ),
        "{text}"
    );
}

#[pipeline]
fn clash_after_a_map(values: Vec<i64>) -> Artifact<i64> {
    let mapped = rows(values).map(|x| square(x));
    let a = offset(1).named("same");
    let _ = offset(2).named("same");
    let _ = a;
    total(&mapped, "clash".to_string())
}

#[test]
fn a_duplicate_label_counts_the_calls_the_body_made_not_the_built_in_ones() {
    let (_dir, store) = temp_store();
    let err = clash_after_a_map(vec![1]).store(store).run().unwrap_err();
    // rows (1), square (2), offset (3), offset (4): the split and gather do not count.
    assert!(
        err.to_string().contains(
            "two calls are named `same`: call 3 (step `offset`) and call 4 (step `offset`)"
        ),
        "{err}"
    );
}
