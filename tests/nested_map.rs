//! A `map` inside a `map`'s closure (issue 18, "Limits"): the inner map expands once per
//! item of the outer list, when that item's inner list is known, and every inner call is
//! cached per (outer item, inner item). Each test counts executions per item.

mod common;

use common::{count, executed, temp_store};
use pipeline::prelude::*;

#[step]
fn groups(values: Vec<Vec<i64>>) -> Vec<Vec<i64>> {
    values
}

/// The group's own list, as a step computes it (so the inner list is known only per
/// outer item, when this runs).
#[step]
fn members(group: &[i64], tag: String) -> Vec<i64> {
    count(format!("members {tag} {group:?}"));
    group.to_vec()
}

/// Fails for a negative item.
#[step]
fn scale(x: &i64, factor: &i64, shift: &i64, tag: String) -> Result<i64, String> {
    count(format!("scale {tag} {x}"));
    if *x < 0 {
        return Err(format!("negative item {x}"));
    }
    Ok(x * factor + shift)
}

#[step]
fn factor_of(group: &[i64], tag: String) -> i64 {
    count(format!("factor {tag} {group:?}"));
    group.len() as i64
}

#[step]
fn total(xs: &[i64], tag: String) -> i64 {
    count(format!("total {tag} {xs:?}"));
    xs.iter().sum()
}

#[step]
fn offset(value: i64) -> i64 {
    value
}

/// Each group's scaled members, each group's total, and the total of totals.
type Out = (Artifact<Vec<Vec<i64>>>, Artifact<Vec<i64>>, Artifact<i64>);

/// Per group: its members scaled by the group's size (an input from the outer closure)
/// plus `shift` (from outside both), then the group's total; then the total of totals.
#[pipeline]
fn grouped(values: Vec<Vec<i64>>, shift: i64, tag: String) -> Out {
    let shift = offset(shift);
    let (scaled, totals) = groups(values).map(|group| {
        let factor = factor_of(group, tag.clone());
        let scaled = members(group, tag.clone())
            .map(|x| scale(x, &factor, &shift, tag.clone()).named("scale"));
        let sum = total(&scaled, tag.clone());
        (scaled, sum)
    });
    let all = total(&totals, tag);
    (scaled, totals, all)
}

fn run(store: &Store, values: &[&[i64]], tag: &str) -> Run<Out> {
    try_run(store, values, tag).unwrap()
}

fn try_run(store: &Store, values: &[&[i64]], tag: &str) -> pipeline::Result<Run<Out>> {
    grouped(
        values.iter().map(|g| g.to_vec()).collect(),
        100,
        tag.to_string(),
    )
    .store(store.clone())
    .run()
}

/// The calls of `run` that executed (built-in splits and gathers left out), sorted.
fn executed_names<O>(run: &Run<O>) -> Vec<String> {
    run.steps()
        .iter()
        .filter(|s| s.status() == StepStatus::Executed)
        .filter(|s| !s.step().starts_with("pipeline."))
        .map(|s| s.name().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn a_map_in_a_map_computes_per_item_and_a_second_run_executes_nothing() {
    let (_dir, store) = temp_store();
    let tag = "twice";
    let first = run(&store, &[&[1, 2], &[3], &[4, 5, 6]], tag);
    let (scaled, totals, all) = first.output();
    assert_eq!(
        scaled.load().unwrap(),
        vec![vec![102, 104], vec![103], vec![112, 115, 118]]
    );
    assert_eq!(totals.load().unwrap(), vec![206, 103, 345]);
    assert_eq!(all.load().unwrap(), 654);
    for x in 1..=6 {
        assert_eq!(executed(&format!("scale {tag} {x}")), 1, "item {x}");
    }
    // Inner calls are named by both indices: `scale[2][1]` is item 1 of group 2.
    let names: Vec<&str> = first.steps().iter().map(|s| s.name()).collect();
    for name in [
        "scale[0][0]",
        "scale[0][1]",
        "scale[1][0]",
        "scale[2][2]",
        "total[1]",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(!names.contains(&"scale[1][1]"), "{names:?}");
    let item = first.step("scale[2][1]").unwrap();
    assert_eq!(item.status(), StepStatus::Executed);

    let second = run(&store, &[&[1, 2], &[3], &[4, 5, 6]], tag);
    assert_eq!(executed_names(&second), Vec::<String>::new());
    assert_eq!(second.output().2.load().unwrap(), 654);
    assert_eq!(executed(&format!("scale {tag} 5")), 1);
}

#[test]
fn editing_one_inner_item_executes_only_that_items_chain_and_the_totals_after_it() {
    let (_dir, store) = temp_store();
    let tag = "edit";
    run(&store, &[&[1, 2], &[3, 4]], tag);
    let edited = run(&store, &[&[1, 2], &[3, 7]], tag);
    // The list of groups changed, and group 1 with it: its calls ran, but of its items only
    // the edited one is scaled again (its size, the factor, is the same value).
    assert_eq!(
        executed_names(&edited),
        [
            "factor_of[1]",
            "groups",
            "members[1]",
            "scale[1][1]",
            "total[1]",
            "total_2"
        ],
        "{:?}",
        common::statuses(&edited)
    );
    assert_eq!(executed(&format!("scale {tag} 7")), 1);
    assert_eq!(executed(&format!("scale {tag} 3")), 1);
    assert_eq!(
        edited.output().1.load().unwrap(),
        vec![206, 2 * 3 + 2 * 7 + 200]
    );
}

#[test]
fn appending_a_group_or_an_inner_item_executes_only_the_new_calls() {
    let (_dir, store) = temp_store();
    let tag = "append";
    run(&store, &[&[1, 2], &[3]], tag);
    let more = run(&store, &[&[1, 2], &[3], &[9]], tag);
    assert_eq!(
        executed_names(&more),
        [
            "factor_of[2]",
            "groups",
            "members[2]",
            "scale[2][0]",
            "total[2]",
            "total_2"
        ]
    );
    // An item appended to group 0 changes its size, the factor every item of it reads:
    // group 0's items run again, group 1's and 2's do not.
    let grown = run(&store, &[&[1, 2, 5], &[3], &[9]], tag);
    assert_eq!(
        executed_names(&grown),
        [
            "factor_of[0]",
            "groups",
            "members[0]",
            "scale[0][0]",
            "scale[0][1]",
            "scale[0][2]",
            "total[0]",
            "total_2"
        ]
    );
    assert_eq!(
        grown.output().1.load().unwrap(),
        vec![3 + 6 + 15 + 300, 103, 109]
    );
}

#[test]
fn reordering_the_groups_executes_nothing_and_the_result_follows_the_new_order() {
    let (_dir, store) = temp_store();
    let tag = "reorder";
    run(&store, &[&[1, 2], &[3], &[4, 5, 6]], tag);
    let reordered = run(&store, &[&[4, 5, 6], &[1, 2], &[3]], tag);
    // Only the list itself and the fan-in over the reordered totals (`total_2`) run.
    assert_eq!(executed_names(&reordered), ["groups", "total_2"]);
    assert_eq!(
        reordered.output().0.load().unwrap(),
        vec![vec![112, 115, 118], vec![102, 104], vec![103]]
    );
}

#[test]
fn empty_inner_and_outer_lists_gather_to_empty_lists_and_the_steps_after_run() {
    let (_dir, store) = temp_store();
    let tag = "empty";
    let some_empty = run(&store, &[&[], &[3]], tag);
    assert_eq!(
        some_empty.output().0.load().unwrap(),
        vec![vec![], vec![103]]
    );
    assert_eq!(some_empty.output().1.load().unwrap(), vec![0, 103]);
    assert_eq!(executed(&format!("total {tag} []")), 1);
    let none = run(&store, &[], tag);
    assert_eq!(none.output().0.load().unwrap(), Vec::<Vec<i64>>::new());
    assert_eq!(none.output().2.load().unwrap(), 0);
    // Splits of empty lists are found in the cache like any other: nothing executes.
    for values in [&[&[][..], &[3][..]][..], &[]] {
        let again = run(&store, values, tag);
        assert_eq!(executed_names(&again), Vec::<String>::new());
        assert!(
            again
                .steps()
                .iter()
                .all(|s| s.status() == StepStatus::Cached),
            "{:?}",
            common::statuses(&again)
        );
    }
}

#[test]
fn a_failing_inner_item_fails_its_chain_the_rest_finish_and_a_rerun_executes_only_it() {
    let (_dir, store) = temp_store();
    let tag = "fail";
    let err = try_run(&store, &[&[1, -2], &[3]], tag).unwrap_err();
    assert!(err.to_string().contains("negative item -2"), "{err}");
    let records = store.runs(None).unwrap();
    let failed = store.run_steps(&records[0].id).unwrap();
    let status = |name: &str| {
        failed
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status)
            .unwrap_or_else(|| panic!("no {name} in {failed:?}"))
    };
    assert_eq!(status("scale[0][1]"), StepStatus::Failed);
    assert_eq!(status("scale[0][0]"), StepStatus::Executed);
    assert_eq!(status("scale[1][0]"), StepStatus::Executed);
    assert_eq!(status("total[1]"), StepStatus::Executed);
    assert_eq!(status("total[0]"), StepStatus::Skipped);
    assert_eq!(status("total_2"), StepStatus::Skipped);

    // Fixed: only the failed item and what it blocked execute.
    let fixed = run(&store, &[&[1, 2], &[3]], tag);
    assert_eq!(
        executed_names(&fixed),
        [
            "factor_of[0]",
            "groups",
            "members[0]",
            "scale[0][1]",
            "total[0]",
            "total_2"
        ]
    );
    assert_eq!(executed(&format!("scale {tag} 1")), 1);
    assert_eq!(executed(&format!("scale {tag} 3")), 1);
}

#[step]
fn cells(n: &i64) -> Vec<i64> {
    (0..*n).collect()
}

#[step]
fn cell_value(row: &i64, column: &i64, plane: &i64, tag: String) -> i64 {
    count(format!("cell {tag} {plane} {row} {column}"));
    100 * plane + 10 * row + column
}

/// Three levels: planes, rows, columns; the innermost call reads the item of each level,
/// and the sizes are broadcast from outside all three.
#[pipeline]
fn cube(size: i64, tag: String) -> Artifact<Vec<Vec<Vec<i64>>>> {
    let n = offset(size);
    cells(&n).map(|plane| {
        cells(&n).map(|row| cells(&n).map(|column| cell_value(row, column, plane, tag.clone())))
    })
}

#[test]
fn three_levels_of_maps_each_read_their_own_items() {
    let (_dir, store) = temp_store();
    let tag = "cube";
    let first = cube(3, tag.to_string()).store(store.clone()).run().unwrap();
    let values = first.output().load().unwrap();
    assert_eq!(values.len(), 3);
    for (p, plane) in values.iter().enumerate() {
        assert_eq!(plane.len(), 3);
        for (r, row) in plane.iter().enumerate() {
            let expected: Vec<i64> = (0..3).map(|c| (100 * p + 10 * r + c) as i64).collect();
            assert_eq!(row, &expected);
            for c in 0..3 {
                assert_eq!(executed(&format!("cell {tag} {p} {r} {c}")), 1);
            }
        }
    }
    assert!(first.step("cell_value[2][1][0]").is_some());
    let again = cube(3, tag.to_string()).store(store).run().unwrap();
    assert_eq!(executed_names(&again), Vec::<String>::new());
    assert_eq!(again.output().load().unwrap(), values);
}

#[pipeline]
fn inner_leak(values: Vec<Vec<i64>>) -> Artifact<Vec<i64>> {
    groups(values).map(|group| {
        let mut inner = None;
        let scaled = members(group, "leak".to_string()).map(|x| {
            let one = offset(1);
            let s = scale(x, &one, &one, "leak".to_string());
            inner = Some(s.clone());
            s
        });
        let _ = scaled;
        // An inner call's output used in the outer closure: it exists once per inner item.
        total(&cells(&inner.unwrap()), "leak".to_string())
    })
}

#[test]
fn an_inner_handle_used_in_the_outer_closure_is_a_clear_error() {
    let (_dir, store) = temp_store();
    let err = inner_leak(vec![vec![1]]).store(store).run().unwrap_err();
    assert!(
        err.to_string().contains(
            "input `n` of step `cells` is the output of `scale`, made inside a `map` closure"
        ),
        "{err}"
    );
}

/// What a worker process runs (`--exact worker_entry`): its job, then it exits.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}

#[test]
fn inner_calls_run_in_worker_processes_and_a_cached_rerun_reads_no_item() {
    let (dir, store) = temp_store();
    let p = |store: Store| {
        common::on_backend(
            grouped(vec![vec![1, 2], vec![3]], 100, "processes".into()).store(store),
            pipeline::config::ExecutorKind::Processes,
        )
    };
    let first = p(store.clone()).run().unwrap();
    assert_eq!(first.output().1.load().unwrap(), vec![206, 103]);
    // A fresh handle on the same store (no in-memory state): every call is cached, and
    // neither list, nor any item of either level, is read.
    let fresh = Store::open(dir.path().join("store")).unwrap();
    let again = p(fresh.clone()).run().unwrap();
    assert!(
        again
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        common::statuses(&again)
    );
    assert_eq!(
        fresh.stats().bytes_read,
        0,
        "no byte read by a fully cached map"
    );
    // offset, groups, the split, per group (2): factor_of, members, the inner split,
    // its items' scale (2 + 1 in all), the inner gather, total; the outer gathers (2),
    // and the final total.
    assert_eq!(again.steps().len(), 3 + 2 * 5 + 3 + 2 + 1);
}

#[step]
fn pair(x: &i64, y: &i64, tag: String) -> i64 {
    count(format!("pair {tag} {x} {y}"));
    10 * x + y
}

#[step]
fn list(values: Vec<i64>) -> Vec<i64> {
    values
}

/// Every (x, y) pair of `a` and `b`: a map over `a` with a map over `b` (from outside
/// both) inside.
#[pipeline]
fn pairs(a: Vec<i64>, b: Vec<i64>, tag: String) -> Artifact<Vec<Vec<i64>>> {
    let a = list(a);
    let b = list(b);
    a.map(|x| b.map(|y| pair(x, y, tag.clone())))
}

#[test]
fn explain_and_diff_name_the_outer_item_that_changed() {
    let (_dir, store) = temp_store();
    let tag = "explain";
    let before = pairs(vec![1, 2], vec![5, 6], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    let after = pairs(vec![1, 3], vec![5, 6], tag.into())
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(
        after.output().load().unwrap(),
        vec![vec![15, 16], vec![35, 36]]
    );
    assert_eq!(executed_names(&after), ["list", "pair[1][0]", "pair[1][1]"]);
    assert_eq!(executed(&format!("pair {tag} 1 6")), 1);
    // `pair[1][0]` reads item 1 of the outer list (changed) and item 0 of the inner one.
    let records = store.run_steps(after.id()).unwrap();
    let record = records.iter().find(|s| s.name == "pair[1][0]").unwrap();
    let explained =
        pipeline::report::Explanation::new(&store, store.run(after.id()).unwrap(), record.clone())
            .unwrap()
            .to_string();
    assert!(
        explained.contains(": item 1 of `list`'s list changed.")
            && explained.contains("  - item 1 of `list`'s list changed\n"),
        "{explained}"
    );
    let diff = pipeline::report::RunDiff::new(&store, before.id(), after.id()).unwrap();
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["list", "pair[1][0]", "pair[1][1]"], "{diff}");
    let text = diff.to_string();
    assert!(
        text.contains("item 1 of `list`'s list changed")
            && text.contains("\n3 of 6 steps differ.\n"),
        "{text}"
    );
}

/// A closure that returns the item handle of another map's closure.
#[pipeline]
fn crossed_items(a: Vec<i64>, b: Vec<i64>) -> (Artifact<Vec<Vec<i64>>>, Artifact<Vec<i64>>) {
    let a = list(a);
    let b = list(b);
    // Fine: the inner closure returns the outer item (one copy per pair).
    let nested = a.map(|x| b.map(|_| x.clone()));
    let mut leaked = None;
    let _ = a.map(|x| {
        leaked = Some(x.clone());
        offset(1)
    });
    let leaked = leaked.unwrap();
    // Refused: `leaked` is an item of the map over `a`, returned from the map over `b`.
    (nested, b.map(|_| leaked.clone()))
}

/// The outer closure returns an inner call's output.
#[pipeline]
fn inner_output_returned(values: Vec<Vec<i64>>) -> Artifact<Vec<i64>> {
    groups(values).map(|group| {
        let mut leaked = None;
        let _ = members(group, "returned".to_string()).map(|x| {
            let one = offset(1);
            let out = scale(x, &one, &one, "returned".to_string());
            leaked = Some(out.clone());
            out
        });
        leaked.unwrap()
    })
}

/// A top-level label shaped like a nested per-item call's name.
#[pipeline]
fn nested_label_clash(values: Vec<Vec<i64>>) -> (Artifact<i64>, Artifact<Vec<Vec<i64>>>) {
    let clash = offset(5).named("inc[0][1]");
    let mapped = groups(values).map(|group| group.map(|x| offset_of(x).named("inc")));
    (clash, mapped)
}

#[step]
fn offset_of(x: &i64) -> i64 {
    x + 1
}

/// The pipeline returns the list an inner map gathers.
#[pipeline]
fn inner_gather_returned(values: Vec<Vec<i64>>) -> Artifact<Vec<i64>> {
    let mut inner = None;
    let _ = groups(values).map(|group| {
        let gathered = group.map(|x| offset_of(x));
        inner = Some(gathered.clone());
        total(&gathered, "inner".to_string())
    });
    inner.unwrap()
}

#[test]
fn a_closure_returning_another_closures_handle_is_refused_before_anything_runs() {
    let (_dir, store) = temp_store();
    let err = crossed_items(vec![7, 8], vec![1, 2, 3])
        .store(store.clone())
        .run()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "a `map` closure returns the item handle of the `map` over `list`, made inside \
             another `map` closure"
        ),
        "{text}"
    );
    // Nothing ran: the problem is found while the pipeline is built.
    assert!(store.runs(None).unwrap().is_empty());
    let err = inner_output_returned(vec![vec![1]])
        .store(store.clone())
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "a `map` closure returns the output of `scale`, made inside another `map` closure"
        ),
        "{err}"
    );
    let err = inner_gather_returned(vec![vec![1]])
        .store(store.clone())
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "the pipeline returns the list gathered by the `map` over an item of `groups`, made \
             inside a `map` closure"
        ),
        "{err}"
    );
    let err = nested_label_clash(vec![vec![1, 2]])
        .store(store)
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "the call named `inc[0][1]` has the name of a per-item call of the map that calls \
             `inc` (named `inc[i][j]` per item)"
        ),
        "{err}"
    );
}

#[step]
fn size_of(group: &[i64]) -> i64 {
    group.len() as i64
}

/// Two calls of one step in two closures: `offset_of` of the group's size (outer), and of
/// each item (inner); a size and an item can be equal, and so can their keys.
#[pipeline]
fn two_closures(values: Vec<Vec<i64>>) -> (Artifact<Vec<i64>>, Artifact<Vec<Vec<i64>>>) {
    groups(values).map(|group| {
        let size = offset_of(&size_of(group));
        (size, group.map(|y| offset_of(y)))
    })
}

#[test]
fn diff_pairs_per_item_calls_of_the_same_call_only() {
    let (_dir, store) = temp_store();
    let a = two_closures(vec![vec![9], vec![1, 2]])
        .store(store.clone())
        .run()
        .unwrap();
    let b = two_closures(vec![vec![1, 2]])
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(b.output().1.load().unwrap(), vec![vec![2, 3]]);
    let diff = pipeline::report::RunDiff::new(&store, a.id(), b.id()).unwrap();
    let paired: Vec<(&str, Option<&str>)> = diff
        .steps
        .iter()
        .filter(|s| s.name.starts_with("offset_of"))
        .map(|s| (s.name.as_str(), s.name_a.as_deref()))
        .collect();
    // Group 1 of A is group 0 of B: each call pairs with its own call of A, though
    // `offset_of_2[1][1]` (of item 2) has the key of `offset_of[0]` (of size 2).
    for (b_name, a_name) in [
        ("offset_of[0]", "offset_of[1]"),
        ("offset_of_2[0][0]", "offset_of_2[1][0]"),
        ("offset_of_2[0][1]", "offset_of_2[1][1]"),
    ] {
        assert!(
            paired.contains(&(b_name, Some(a_name))),
            "{b_name} should pair with {a_name}: {paired:?}\n{diff}"
        );
    }
}

/// A map over each item of the outer list itself.
#[pipeline]
fn direct(values: Vec<Vec<i64>>) -> Artifact<Vec<Vec<i64>>> {
    groups(values).map(|group| group.map(|x| offset_of(x)))
}

#[test]
fn an_edited_item_of_an_inner_list_that_is_an_outer_item_is_named_by_both_numbers() {
    let (_dir, store) = temp_store();
    let a = direct(vec![vec![1, 2], vec![3, 4]])
        .store(store.clone())
        .run()
        .unwrap();
    let b = direct(vec![vec![1, 2], vec![3, 5]])
        .store(store.clone())
        .run()
        .unwrap();
    let said = "item 1 of item 1 of `groups`'s list changed";
    let changed = b.step("offset_of[1][1]").unwrap();
    assert_eq!(changed.status(), StepStatus::Executed);
    assert_eq!(changed.reason().to_string(), said);
    let records = store.run_steps(b.id()).unwrap();
    let record = records
        .iter()
        .find(|s| s.name == "offset_of[1][1]")
        .unwrap();
    let explained =
        pipeline::report::Explanation::new(&store, store.run(b.id()).unwrap(), record.clone())
            .unwrap()
            .to_string();
    assert!(explained.contains(&format!("  - {said}\n")), "{explained}");
    let diff = pipeline::report::RunDiff::new(&store, a.id(), b.id()).unwrap();
    let text = diff.to_string();
    assert!(text.contains(&format!("different: {said}")), "{text}");
    assert!(!text.contains("pipeline.split"), "{text}");
}
