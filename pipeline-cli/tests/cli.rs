//! The `pipeline` binary on a store with a three-run history: every subcommand's text and
//! JSON output, and its errors (exit code 2, never a panic).

mod common;
#[path = "../../tests/common/read_only.rs"]
mod read_only;

use std::ffi::OsStr;
use std::path::Path;

use common::{cli, dashboard_page, failed_store, fresh_dir, history, run_raw, Ran, RUNS};

/// The line of `text` that starts with `first` (after trimming), for column checks.
fn line<'a>(text: &'a str, first: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line starting with `{first}` in:\n{text}"))
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn runs_lists_newest_first_with_counts() {
    let out = cli(history(), &["runs"]).ok();
    let header = out.lines().next().unwrap();
    for h in [
        "NAME", "STATUS", "STARTED", "DURATION", "EXECUTED", "CACHED",
    ] {
        assert!(header.contains(h), "{out}");
    }
    let positions: Vec<usize> = RUNS.iter().map(|r| out.find(r).expect(r)).collect();
    assert!(
        positions[2] < positions[1] && positions[1] < positions[0],
        "newest first:\n{out}"
    );
    // ID NAME PIPELINE STATUS DATE TIME DURATION EXECUTED CACHED FAILED SKIPPED
    let alpha = columns(line(&out, &out_id(&out, "run-alpha")));
    assert_eq!(alpha[1..4], ["run-alpha", "numbers", "completed"]);
    assert_eq!(alpha[7..], ["3", "0", "0", "0"], "{out}");
    let beta = columns(line(&out, &out_id(&out, "run-beta")));
    assert_eq!(beta[7..], ["2", "1", "0", "0"], "{out}");

    // Filter by pipeline.
    let only = cli(history(), &["runs", "numbers"]).ok();
    assert_eq!(only.lines().count(), 4, "{only}");
    let none = cli(history(), &["runs", "nothing"]).ok();
    assert!(
        none.contains("No runs of pipeline `nothing`") && none.contains("numbers"),
        "{none}"
    );
    let limited = cli(history(), &["runs", "-n", "1"]).ok();
    assert_eq!(limited.lines().count(), 2, "{limited}");
    assert!(limited.contains("run-gamma"), "{limited}");
}

/// The ID column of the run called `name` in `runs` output.
fn out_id(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run `{name}` in:\n{out}"))
        .to_string()
}

#[test]
fn runs_json_parses() {
    let runs = cli(history(), &["runs", "--json"]).json();
    let runs = runs.as_array().expect("array");
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["run-gamma", "run-beta", "run-alpha"]);
    let counts: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["executed"].as_u64().unwrap(),
                r["cached"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(2, 1), (2, 1), (3, 0)]);
    for r in runs {
        assert_eq!(r["status"], "completed");
        assert_eq!(r["pipeline"], "numbers");
        assert!(r["duration_s"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["id"].as_str().unwrap().len(), 16);
    }
    // The global flag works before the subcommand too.
    let again = cli(history(), &["--json", "runs", "numbers"]).json();
    assert_eq!(again.as_array().unwrap().len(), 3);
}

#[test]
fn show_lists_steps_with_keys_and_outputs() {
    let out = cli(history(), &["show", "run-gamma"]).ok();
    assert!(out.contains("run `run-gamma`"), "{out}");
    let source = columns(line(&out, "source"));
    assert_eq!(source[1], "cached", "{out}");
    let scale = columns(line(&out, "scale"));
    assert_eq!(scale[1], "executed", "{out}");
    // STEP STATUS DURATION KEY OUTPUT-NAME SIZE UNIT CACHER HASH
    assert_eq!(scale[3].len(), 12, "short cache key: {out}");
    assert_eq!(scale[4], "output", "{out}");
    assert!(scale[5].parse::<u64>().is_ok() && scale[6] == "B", "{out}");
    assert_eq!(scale[7], "bincode", "{out}");
    assert_eq!(columns(line(&out, "total"))[1], "executed");

    let json = cli(history(), &["show", "run-gamma", "--json"]).json();
    assert_eq!(json["run"]["name"], "run-gamma");
    let steps = json["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["source", "scale", "total"]);
    assert_eq!(steps[1]["parameters"]["factor"], 3.0);
    assert_eq!(steps[1]["outputs"][0]["cacher"], "bincode");
    assert!(steps[1]["outputs"][0]["size"].as_u64().unwrap() > 0);
    assert_eq!(
        steps[1]["cache_key"].as_str().unwrap()[..12],
        *columns(line(&out, "scale"))[3]
    );
}

#[test]
fn show_groups_a_maps_per_item_calls_and_sums_up_a_large_group() {
    let store = fresh_dir("mapped").join("store");
    common::run_mapped(&store, 12, "mapped-12");
    let out = cli(&store, &["show", "mapped-12"]).ok();
    // The split lists its first items, then how many more.
    assert!(line(&out, "pipeline.split").contains("item[0]"), "{out}");
    assert!(out.contains("... 9 more items"), "{out}");
    // The first three calls one by one, in item order, then one row for the other nine.
    for i in 0..3 {
        assert_eq!(
            columns(line(&out, &format!("shift[{i}]")))[1],
            "executed",
            "{out}"
        );
    }
    assert!(!out.contains("shift[3] "), "{out}");
    let more = columns(line(&out, "shift[3..=11]"));
    assert_eq!(more[1..4], ["9", "more:", "9"], "{out}");
    assert!(
        out.contains("9 calls of maps or loops are summed up above; `pipeline --json show"),
        "{out}"
    );
    // Every call is in the JSON.
    let json = cli(&store, &["show", "mapped-12", "--json"]).json();
    let names: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3 + 12 + 1, "{names:?}");
    assert!(names.contains(&"shift[11]"), "{names:?}");

    // A small group is listed whole; its items were all in the first run's list, so
    // every per-item call is cached.
    common::run_mapped(&store, 4, "mapped-4");
    let out = cli(&store, &["show", "mapped-4"]).ok();
    for i in 0..4 {
        assert_eq!(
            columns(line(&out, &format!("shift[{i}]")))[1],
            "cached",
            "{out}"
        );
    }
    assert!(!out.contains("more:"), "{out}");

    // `explain` of the step's own name names its calls, a large group as its range.
    let err = cli(&store, &["explain", "mapped-12", "shift"]).fails();
    assert!(
        err.contains(
            "step `shift` is called 12 times in run `mapped-12`; name one of: `shift[0..=11]`"
        ),
        "{err}"
    );
    let err = cli(&store, &["explain", "mapped-12", "nosuch"]).fails();
    assert!(err.contains("`shift[0..=11]`, `pipeline.gather`"), "{err}");
}

#[test]
fn diff_reports_a_value_inserted_before_a_fan_in_as_the_new_call_and_the_fan_in() {
    let store = fresh_dir("fan-in").join("store");
    common::run_fan_in(&store, &[1, 2, 3, 4, 5], "fan-in-1");
    common::run_fan_in(&store, &[0, 1, 2, 3, 4, 5], "fan-in-2");
    let out = cli(&store, &["diff", "fan-in-1", "fan-in-2"]).ok();
    // Exactly two calls changed: the new `fit`, and the fan-in, which says how its list
    // changed. The built-in gather is bookkeeping, not listed.
    assert_eq!(
        columns(line(&out, "fit")),
        ["fit", "-", "executed", "only", "in", "B"],
        "{out}"
    );
    assert!(
        line(&out, "select_best").ends_with(
            "different: input `all` changed: item 0 changed (produced by `fit`); the list has 6 items, was 5"
        ),
        "{out}"
    );
    for (b, a) in [("fit_2", "fit"), ("fit_6", "fit_5")] {
        assert_eq!(
            columns(line(&out, b)),
            [b, "(A:", &format!("{a})"), "executed", "cached", "same"],
            "{out}"
        );
    }
    assert!(!out.contains("pipeline.gather"), "{out}");
    assert!(out.contains("\n2 of 7 steps differ.\n"), "{out}");

    // The JSON keeps every call, the gather marked as built in.
    let json = cli(&store, &["diff", "fan-in-1", "fan-in-2", "--json"]).json();
    let steps = json["steps"].as_array().unwrap();
    let changed: Vec<&str> = steps
        .iter()
        .filter(|s| s["same_key"] == false && s["builtin"] == false)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["fit", "select_best"], "{json}");
    let gather = steps
        .iter()
        .find(|s| s["name"] == "pipeline.gather")
        .expect("the gather is in the JSON");
    assert_eq!(gather["builtin"], true, "{gather}");
    let best = steps.iter().find(|s| s["name"] == "select_best").unwrap();
    let change = &best["changes"][0];
    assert_eq!(change["kind"], "list_input_changed", "{best}");
    assert_eq!(change["name"], "all", "{best}");
    assert_eq!(change["changes"][0]["kind"], "list_item_changed", "{best}");
    assert_eq!(change["changes"][0]["producer"], "fit", "{best}");
    assert_eq!(change["changes"][1]["new"], 6, "{best}");

    // `explain` of the fan-in reads through the gather too.
    let out = cli(&store, &["explain", "fan-in-2", "select_best"]).ok();
    assert!(
        out.contains("  - input `all` changed: item 0 changed (produced by `fit`); the list has 6 items, was 5\n"),
        "{out}"
    );
}

#[test]
fn diff_groups_a_large_maps_equal_items_in_one_row_and_lists_the_rest() {
    let store = fresh_dir("mapped-diff").join("store");
    common::run_mapped(&store, 2_000, "mapped-2000");
    common::run_mapped(&store, 2_001, "mapped-2001");
    let out = cli(&store, &["diff", "mapped-2000", "mapped-2001"]).ok();
    assert_eq!(
        columns(line(&out, "shift[0..=1999]")),
        ["shift[0..=1999]", "executed", "cached", "2000", "same"],
        "{out}"
    );
    assert_eq!(
        columns(line(&out, "shift[2000]")),
        ["shift[2000]", "-", "executed", "only", "in", "B"],
        "{out}"
    );
    assert!(!out.contains("pipeline."), "{out}");
    // source, numbers_up_to and 2001 shifts; the list's producer and the new item differ.
    assert!(out.contains("\n2 of 2003 steps differ.\n"), "{out}");
    assert!(out.lines().count() < 15, "{out}");
    // The JSON lists every call.
    let json = cli(&store, &["diff", "mapped-2000", "mapped-2001", "--json"]).json();
    assert_eq!(json["steps"].as_array().unwrap().len(), 2 + 2_001 + 2);
}

#[test]
fn explain_names_the_changed_parameter_with_both_values() {
    let out = cli(history(), &["explain", "run-gamma", "scale"]).ok();
    assert!(
        out.contains("parameter `factor` changed (2.0 -> 3.0)"),
        "{out}"
    );
    assert!(
        out.contains("Step `scale` in run `run-gamma` executed"),
        "{out}"
    );
    // Compared with the earlier execution of the same call: the one in run-beta.
    assert!(out.contains("in run `run-beta`"), "{out}");
    assert!(!out.contains("code signature changed"), "{out}");

    let json = cli(history(), &["explain", "run-gamma", "scale", "--json"]).json();
    assert_eq!(json["status"], "executed");
    assert_eq!(json["previous"]["run_name"], "run-beta");
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{json}");
    assert_eq!(changes[0]["kind"], "parameter_changed");
    assert_eq!(changes[0]["name"], "factor");
    assert_eq!(changes[0]["old"], "2.0");
    assert_eq!(changes[0]["new"], "3.0");
}

#[test]
fn explain_names_a_changed_code_signature_and_a_changed_input_with_its_producer() {
    let out = cli(history(), &["explain", "run-beta", "scale"]).ok();
    // The fixture's two versions of `scale` live in two modules: the explanation names
    // both the other module and the changed part of the code.
    assert!(out.contains("step body changed"), "{out}");
    assert!(
        out.contains("a step of this name in another module ran before"),
        "{out}"
    );
    assert!(out.contains("in run `run-alpha`"), "{out}");
    assert!(!out.contains("parameter `factor`"), "{out}");

    let out = cli(history(), &["explain", "run-beta", "total"]).ok();
    assert!(out.contains("input `xs` changed"), "{out}");
    assert!(out.contains("produced by `scale`"), "{out}");
    assert!(out.contains("run `run-beta`"), "{out}");
    assert!(out.contains("content "), "{out}");
}

#[test]
fn explain_a_cached_step_names_the_reused_execution() {
    let out = cli(history(), &["explain", "run-gamma", "source"]).ok();
    assert!(out.contains("was cached"), "{out}");
    assert!(out.contains("run `run-alpha`"), "{out}");
    let json = cli(history(), &["explain", "run-gamma", "source", "--json"]).json();
    assert_eq!(json["status"], "cached");
    assert_eq!(json["reused"]["run_name"], "run-alpha");
    let alpha = cli(history(), &["show", "run-alpha", "--json"]).json();
    assert_eq!(
        json["reused"]["execution_id"],
        alpha["steps"][0]["execution_id"]
    );

    // A first execution says so.
    let out = cli(history(), &["explain", "run-alpha", "source"]).ok();
    assert!(out.contains("no earlier execution"), "{out}");
    assert!(out.contains("this was its first"), "{out}");
}

#[test]
fn explain_failed_and_skipped_steps() {
    let store = failed_store();
    let out = cli(store, &["explain", "broken-run", "measure"]).ok();
    assert!(out.contains("failed after"), "{out}");
    assert!(out.contains("the measurement failed"), "{out}");
    let out = cli(store, &["explain", "broken-run", "report"]).ok();
    assert!(out.contains("was skipped"), "{out}");
    assert!(out.contains("measure"), "{out}");
    let shown = cli(store, &["show", "broken-run"]).ok();
    assert!(
        shown.contains("`measure` failed: the measurement failed"),
        "{shown}"
    );
    let runs = cli(store, &["runs"]).ok();
    assert!(columns(line(&runs, &out_id(&runs, "broken-run"))).contains(&"failed"));
}

#[test]
fn diff_names_a_changed_code_signature() {
    let out = cli(history(), &["diff", "run-alpha", "run-beta"]).ok();
    assert!(out.starts_with("A: run `run-alpha`"), "{out}");
    let source = line(&out, "source");
    assert!(source.contains("same"), "{out}");
    let scale = line(&out, "scale");
    assert!(scale.contains("different"), "{out}");
    assert!(out.contains("step body changed"), "{out}");
    let total = line(&out, "total");
    assert!(total.contains("input `xs` changed"), "{out}");
    assert!(out.contains("2 of 3 steps differ."), "{out}");

    let out = cli(history(), &["diff", "run-beta", "run-gamma"]).ok();
    let scale = line(&out, "scale");
    assert!(
        scale.contains("parameter `factor` changed (2.0 -> 3.0)"),
        "{out}"
    );
    assert!(!scale.contains("code signature"), "{out}");

    let json = cli(history(), &["diff", "run-alpha", "run-beta", "--json"]).json();
    assert_eq!(json["run_a"]["name"], "run-alpha");
    assert_eq!(json["run_b"]["name"], "run-beta");
    let steps = json["steps"].as_array().unwrap();
    let scale = steps.iter().find(|s| s["name"] == "scale").unwrap();
    assert_eq!(scale["same_key"], false);
    let changes = scale["changes"].as_array().unwrap();
    assert_eq!(changes[0]["kind"], "module_changed", "{changes:?}");
    assert_eq!(changes[1]["kind"], "code_part_changed", "{changes:?}");
    assert_eq!(changes[1]["part"], "body", "{changes:?}");
    assert_eq!(changes[1]["text"], "step body changed", "{changes:?}");
    let source = steps.iter().find(|s| s["name"] == "source").unwrap();
    assert_eq!(source["same_key"], true);
}

#[test]
fn explain_and_diff_pair_looped_calls_with_the_same_call() {
    let store = fresh_dir("sweep").join("store");
    common::run_sweep(&store, &[1, 3], "sweep-1");
    common::run_sweep(&store, &[1, 5], "sweep-2");

    // `shift_2` is compared with `shift_2` of the run before, not with its sibling `shift`:
    // the headline and the listed difference name the same change.
    let out = cli(&store, &["explain", "sweep-2", "shift_2"]).ok();
    let headline = out.lines().next().unwrap();
    assert!(
        headline.starts_with("Step `shift_2` in run `sweep-2` executed in ")
            && headline.ends_with(": parameter `k` changed (3 -> 5)."),
        "{out}"
    );
    assert!(
        out.contains("Compared with the earlier execution of the same call: execution ")
            && out.contains("(`shift_2` in run `sweep-1`, executed"),
        "{out}"
    );
    let listed: Vec<&str> = out.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(listed, ["  - parameter `k` changed (3 -> 5)"], "{out}");
    let json = cli(&store, &["explain", "sweep-2", "shift_2", "--json"]).json();
    assert_eq!(json["previous"]["step"], "shift_2");
    assert_eq!(json["previous"]["run_name"], "sweep-1");
    assert_eq!(json["previous"]["removed"], false);
    assert_eq!(json["changes"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["changes"][0]["old"], "3");

    let out = cli(&store, &["diff", "sweep-1", "sweep-2"]).ok();
    assert!(line(&out, "shift").contains("same"), "{out}");
    assert!(
        line(&out, "shift_2").contains("different: parameter `k` changed (3 -> 5)"),
        "{out}"
    );
    assert!(out.contains("1 of 3 steps differ."), "{out}");

    // A value inserted at the front of the loop: the call with k = 1 is now `shift_2`; it
    // pairs the earlier `shift` (same key), `shift_3` the earlier `shift_2`, and the new
    // first call is the one call only in B. Explain still compares it with the nearest
    // earlier call, to say why it missed the cache.
    common::run_sweep(&store, &[0, 1, 5], "sweep-3");
    let out = cli(&store, &["diff", "sweep-2", "sweep-3"]).ok();
    let second = line(&out, "shift_2");
    assert!(
        second.contains("(A: shift)") && second.contains("same"),
        "{out}"
    );
    let third = line(&out, "shift_3");
    assert!(
        third.contains("(A: shift_2)") && third.contains("same"),
        "{out}"
    );
    assert_eq!(
        columns(line(&out, "shift")),
        ["shift", "-", "executed", "only", "in", "B"],
        "{out}"
    );
    assert!(out.contains("1 of 4 steps differ."), "{out}");
    let json = cli(&store, &["diff", "sweep-2", "sweep-3", "--json"]).json();
    let steps = json["steps"].as_array().unwrap();
    let pairs: Vec<(&str, Option<&str>)> = steps
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["name_a"].as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("source", Some("source")),
            ("shift", None),
            ("shift_2", Some("shift")),
            ("shift_3", Some("shift_2"))
        ]
    );
    let out = cli(&store, &["explain", "sweep-3", "shift"]).ok();
    assert!(out.contains("(`shift` in run `sweep-2`"), "{out}");
    assert!(out.contains("  - parameter `k` changed (1 -> 0)"), "{out}");
}

#[test]
fn labelled_calls_in_a_loop_keep_their_names_across_runs() {
    let store = fresh_dir("labelled").join("store");
    common::run_labelled_sweep(&store, &[1, 3, 5], "labels-1");
    common::run_labelled_sweep(&store, &[0, 1, 3, 5], "labels-2");

    let out = cli(&store, &["show", "labels-2"]).ok();
    assert_eq!(columns(line(&out, "shift[0]"))[1], "executed", "{out}");
    assert_eq!(columns(line(&out, "shift[3]"))[1], "cached", "{out}");
    let json = cli(&store, &["show", "labels-2", "--json"]).json();
    let names: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "source", "shift[0]", "total", "shift[1]", "total_2", "shift[3]", "total_3",
            "shift[5]", "total_4"
        ]
    );

    // The one new value is the one new call (and its `total`); every other call is the same.
    let out = cli(&store, &["diff", "labels-1", "labels-2"]).ok();
    assert_eq!(
        columns(line(&out, "shift[0]")),
        ["shift[0]", "-", "executed", "only", "in", "B"],
        "{out}"
    );
    for name in ["shift[1]", "shift[3]", "shift[5]"] {
        assert_eq!(
            columns(line(&out, name)),
            [name, "executed", "cached", "same"],
            "{out}"
        );
    }
    assert!(line(&out, "total_2").contains("(A: total)"), "{out}");
    assert!(out.contains("\n2 of 9 steps differ.\n"), "{out}");
    let json = cli(&store, &["diff", "labels-1", "labels-2", "--json"]).json();
    let verdicts: Vec<(&str, bool, Option<&str>)> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["same_key"].as_bool().unwrap(),
                s["status_a"].as_str(),
            )
        })
        .filter(|(name, _, _)| name.starts_with("shift"))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("shift[0]", false, None),
            ("shift[1]", true, Some("executed")),
            ("shift[3]", true, Some("executed")),
            ("shift[5]", true, Some("executed"))
        ]
    );

    // `explain` of a labelled call: the earlier call with its label.
    common::run_labelled_sweep(&store, &[1, 3, 5], "labels-3");
    let out = cli(&store, &["explain", "labels-3", "shift[3]"]).ok();
    assert!(
        out.starts_with("Step `shift[3]` in run `labels-3` was cached: it reused execution ")
            && out.contains("`shift[3]` in run `labels-1`"),
        "{out}"
    );

    // The dashboard's compare page pairs the same way, and a labelled step has its page.
    let ids: Vec<String> = ["labels-1", "labels-2"]
        .iter()
        .map(|r| {
            cli(&store, &["show", r, "--json"]).json()["run"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let page = dashboard_page(&store, &format!("/compare?a={}&b={}", ids[0], ids[1]));
    assert!(page.contains("2 of 9 steps differ."), "{page}");
    assert!(
        page.contains(r#"<tr data-step="shift[3]" data-same="true"><td>shift[3]</td>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<tr data-step="shift[0]" data-same="false">"#),
        "{page}"
    );
    let page = dashboard_page(&store, &format!("/runs/{}/steps/shift%5B3%5D", ids[1]));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("shift[3]"), "{page}");
}

#[test]
fn explain_and_diff_show_nan_and_infinite_parameters() {
    let store = fresh_dir("nan").join("store");
    common::build_history(&store);
    common::run_numbers(&store, f64::NAN, "run-nan");
    common::run_numbers(&store, f64::INFINITY, "run-inf");
    common::run_numbers(&store, f64::NEG_INFINITY, "run-neg");

    let out = cli(&store, &["explain", "run-nan", "scale"]).ok();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with(": parameter `factor` changed (3.0 -> NaN)."),
        "{out}"
    );
    assert!(
        out.contains("  - parameter `factor` changed (3.0 -> NaN)"),
        "{out}"
    );
    let json = cli(&store, &["explain", "run-inf", "scale", "--json"]).json();
    assert_eq!(json["changes"][0]["old"], "NaN");
    assert_eq!(json["changes"][0]["new"], "inf");
    let out = cli(&store, &["diff", "run-inf", "run-neg"]).ok();
    assert!(
        line(&out, "scale").contains("parameter `factor` changed (inf -> -inf)"),
        "{out}"
    );
    assert!(!out.contains("null"), "{out}");
}

#[test]
fn explain_works_on_what_gc_keeps() {
    let store = fresh_dir("gc-explain").join("store");
    common::build_history(&store);
    let report = cli(&store, &["gc", "--keep-last", "1", "--json"]).json();
    assert_eq!(
        report["runs_removed"],
        serde_json::json!(["run-beta", "run-alpha"])
    );

    // `source` reused run-alpha's execution, whose run is gone; the outputs are intact.
    let out = cli(&store, &["explain", "run-gamma", "source"]).ok();
    assert!(
        out.starts_with("Step `source` in run `run-gamma` was cached: it reused execution "),
        "{out}"
    );
    assert!(out.contains("since been removed from the store"), "{out}");
    assert!(out.contains("  output `output`: "), "{out}");
    let json = cli(&store, &["explain", "run-gamma", "source", "--json"]).json();
    assert_eq!(json["reused"]["removed"], true);
    assert!(json["reused"]["execution_id"].as_i64().is_some());

    // `scale` was compared with run-beta's execution, also gone: the comparison was
    // recorded with it, so the explanation reads as before gc.
    let out = cli(&store, &["explain", "run-gamma", "scale"]).ok();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with(": parameter `factor` changed (2.0 -> 3.0)."),
        "{out}"
    );
    assert!(
        out.contains("(`scale` in run `run-beta`, since removed from the store"),
        "{out}"
    );
    assert!(
        out.contains("  - parameter `factor` changed (2.0 -> 3.0)"),
        "{out}"
    );
    let json = cli(&store, &["explain", "run-gamma", "scale", "--json"]).json();
    assert_eq!(json["previous"]["removed"], true);
    assert_eq!(json["previous"]["run_name"], "run-beta");
    assert_eq!(json["changes"][0]["name"], "factor");

    // An input's producer in the kept run is still there to point at.
    let out = cli(&store, &["explain", "run-gamma", "total"]).ok();
    assert!(out.contains("  - input `xs` changed"), "{out}");
    assert!(
        out.contains("see `pipeline explain run-gamma scale`"),
        "{out}"
    );
}

#[test]
fn runs_are_named_by_unique_prefixes_of_names_and_ids() {
    let out = cli(history(), &["show", "run-g"]).ok();
    assert!(out.contains("run `run-gamma`"), "{out}");
    let runs = cli(history(), &["runs", "--json"]).json();
    let id = runs[2]["id"].as_str().unwrap().to_string();
    // Find a prefix of the id that is unique among the three ids.
    let ids: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let len = (1..=16)
        .find(|&n| ids.iter().filter(|i| i.starts_with(&id[..n])).count() == 1)
        .unwrap();
    let out = cli(history(), &["show", &id[..len.max(4)]]).ok();
    assert!(out.contains("run `run-alpha`"), "{out}");
    let out = cli(history(), &["explain", &id, "scale"]).ok();
    assert!(out.contains("run `run-alpha`"), "{out}");
}

#[test]
fn replay_prints_the_command_that_replays_a_step_with_the_users_binary() {
    let out = cli(history(), &["replay", "run-gamma", "scale"]).ok();
    assert!(out.contains("has none of your steps"), "{out}");
    assert!(out.contains("pipeline::worker::enter()"), "{out}");
    let json = cli(history(), &["replay", "run-gamma", "scale", "--json"]).json();
    let id = json["run"].as_str().unwrap();
    let command = json["command"].as_str().unwrap();
    assert!(
        command.starts_with(&format!("<your-binary> --pipeline-replay {id} scale")),
        "{command}"
    );
    assert!(
        out.contains(command),
        "the text shows the same command: {out}"
    );

    let err = cli(history(), &["replay", "run-gamma", "nosuch"]).fails();
    assert!(err.contains("has no step call `nosuch`"), "{err}");
    assert!(err.contains("source, scale, total"), "{err}");
}

#[test]
fn unknown_run_ambiguous_prefix_and_unknown_step_exit_2() {
    let err = cli(history(), &["show", "nope"]).fails();
    assert!(err.contains("no run `nope`"), "{err}");
    assert!(err.contains("pipeline runs"), "{err}");

    let err = cli(history(), &["explain", "run-", "scale"]).fails();
    assert!(err.contains("`run-` is ambiguous"), "{err}");
    for name in RUNS {
        assert!(err.contains(name), "{err}");
    }
    let err = cli(history(), &["diff", "run-alpha", "nope"]).fails();
    assert!(err.contains("no run `nope`"), "{err}");
    let err = cli(history(), &["lineage", "run-", "--dot", "-"]).fails();
    assert!(err.contains("ambiguous"), "{err}");

    let err = cli(history(), &["explain", "run-alpha", "nosuch"]).fails();
    assert!(err.contains("has no step `nosuch`"), "{err}");
    assert!(err.contains("`source`, `scale`, `total`"), "{err}");
}

#[test]
fn a_missing_store_is_an_error_and_is_not_created() {
    let dir = fresh_dir("missing");
    let missing = dir.join("nowhere");
    let err = cli(&missing, &["runs"]).fails();
    assert!(err.contains("no pipeline store at"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists(), "the store must not be created");

    // Default ./.pipeline in the working directory, and PIPELINE_HOME.
    let err = run_raw(&[OsStr::new("runs")], Some(&dir), None).fails();
    assert!(err.contains(".pipeline"), "{err}");
    assert!(!dir.join(".pipeline").exists());
    let err = run_raw(&[OsStr::new("runs")], Some(&dir), Some(&missing)).fails();
    assert!(err.contains("nowhere"), "{err}");
    assert!(!missing.exists());

    // A URL given as the store folder: refused, its password never shown, no folder made.
    let url = "postgres://ci:hunter2secret@127.0.0.1:1/pipeline";
    let err = run_raw(
        &[OsStr::new("--store"), OsStr::new(url), OsStr::new("runs")],
        Some(&dir),
        None,
    )
    .fails();
    assert!(err.contains("PIPELINE_METADATA"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    let err = run_raw(&[OsStr::new("runs")], Some(&dir), Some(Path::new(url))).fails();
    assert!(err.contains("is a URL"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(!dir.join("postgres:").exists());

    // An existing directory that is not a store.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let err = cli(&dir.join("empty"), &["runs"]).fails();
    assert!(err.contains("no metadata.sqlite"), "{err}");
    assert!(!dir.join("empty/metadata.sqlite").exists());
    std::fs::write(dir.join("file"), "x").unwrap();
    let err = cli(&dir.join("file"), &["runs"]).fails();
    assert!(err.contains("not a directory"), "{err}");

    // PIPELINE_HOME names a real store.
    let out = run_raw(&[OsStr::new("runs")], Some(&dir), Some(history())).ok();
    assert!(out.contains("run-gamma"), "{out}");
}

#[test]
fn bad_arguments_exit_2() {
    let ran = cli(history(), &["frobnicate"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let ran = cli(history(), &["explain", "run-alpha"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
}

#[test]
fn lineage_writes_dot_and_html() {
    let dir = fresh_dir("lineage");
    let (html, dot) = (dir.join("run.html"), dir.join("run.dot"));
    let out = cli(
        history(),
        &[
            "lineage",
            "run-beta",
            "--html",
            html.to_str().unwrap(),
            "--dot",
            dot.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.contains("run.html") && out.contains("run.dot"), "{out}");

    let dot = std::fs::read_to_string(dot).unwrap();
    assert!(dot.starts_with("digraph \"run-beta\" {"), "{dot}");
    assert!(dot.contains("n0 -> n1 [label=\"xs"), "{dot}");
    assert!(dot.contains("n1 -> n2 [label=\"xs"), "{dot}");
    assert!(dot.contains("label=\"scale\\nexecuted"), "{dot}");
    assert!(dot.contains("label=\"source\\ncached"), "{dot}");

    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
    assert!(!html.contains("https://"), "no network fetches");
    assert!(html.contains("<svg"));
    for (step, status) in [
        ("source", "cached"),
        ("scale", "executed"),
        ("total", "executed"),
    ] {
        assert!(
            html.contains(&format!("data-step=\"{step}\" data-status=\"{status}\"")),
            "{step}"
        );
    }

    // Without a file, the DOT text goes to standard output; --json gives the graph.
    let out = cli(history(), &["lineage", "run-beta"]).ok();
    assert!(out.starts_with("digraph"), "{out}");
    let json = cli(history(), &["lineage", "run-beta", "--json"]).json();
    let edges = json["edges"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = edges
        .iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("source", "scale"), ("scale", "total")]);
    assert_eq!(json["nodes"][2]["layer"], 2);
    assert!(edges[0]["size"].as_u64().unwrap() > 0);
}

#[test]
fn lineage_of_a_failed_run_with_two_outputs() {
    let json = cli(failed_store(), &["lineage", "broken-run", "--json"]).json();
    let mut pairs: Vec<(String, String, String)> = json["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["output"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    pairs.sort();
    let expected = [
        ("measure", "report", "-"),
        ("source", "split", "output"),
        ("split", "measure", "low"),
        ("split", "report", "high"),
        ("split", "total", "high"),
    ];
    let mut expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    expected.sort();
    assert_eq!(pairs, expected);
}

#[test]
fn gc_dry_run_reports_then_gc_removes_old_runs_and_blobs() {
    let store = fresh_dir("gc").join("store");
    common::build_history(&store);
    let blobs = || {
        walk(&store.join("artifacts"))
            .into_iter()
            .filter(|p| p.extension().is_none() && p.file_name().unwrap().len() == 32)
            .count()
    };
    let before = blobs();
    // Blobs younger than --min-age stay, so make them old.
    age_blobs(&store);

    let out = cli(&store, &["gc", "--keep-last", "1", "--dry-run"]).ok();
    assert!(out.contains("Would remove 2 of 3 runs:"), "{out}");
    assert!(
        out.contains("run-alpha") && out.contains("run-beta"),
        "{out}"
    );
    assert!(!out.contains("run-gamma"), "{out}");
    assert!(out.contains("would free"), "{out}");
    assert!(out.contains("Dry run: nothing was removed."), "{out}");
    let report = cli(
        &store,
        &[
            "gc",
            "--keep-last",
            "1",
            "--min-age",
            "2m",
            "--dry-run",
            "--json",
        ],
    )
    .json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["runs_kept"], 1);
    let would_free = report["bytes_freed"].as_u64().unwrap();
    let would_remove = report["blobs_removed"].as_u64().unwrap();
    assert!(would_free > 0 && would_remove > 0, "{report}");
    assert_eq!(blobs(), before, "a dry run removes nothing");
    assert_eq!(
        cli(&store, &["runs", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Pinned runs stay.
    let out = cli(&store, &["pin", "run-al"]).ok();
    assert_eq!(out, "Pinned run `run-alpha`.\n");
    let report = cli(&store, &["gc", "--keep-last", "1", "--json"]).json();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["runs_removed"], serde_json::json!(["run-beta"]));
    let runs = cli(&store, &["runs", "--json"]).json();
    let names: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["run-gamma", "run-alpha"]);
    assert!(blobs() < before);

    cli(&store, &["unpin", "run-alpha"]).ok();
    let out = cli(&store, &["gc", "--keep-last", "1"]).ok();
    assert!(out.contains("Removed 1 of 2 runs:\n  run-alpha\n"), "{out}");
    assert!(out.contains("Kept 1 run(s)"), "{out}");
    let out = cli(&store, &["show", "run-gamma"]).ok();
    assert!(out.contains("scale"), "{out}");
    let err = cli(&store, &["show", "run-alpha"]).fails();
    assert!(err.contains("no run `run-alpha`"), "{err}");

    let err = cli(&store, &["gc", "--max-size", "12X"]).fails();
    assert!(err.contains("unknown size unit"), "{err}");
}

#[test]
fn gc_accepts_any_min_age_and_zero_removes_fresh_garbage() {
    let store = fresh_dir("gc-min-age").join("store");
    common::build_history(&store);
    for age in ["0s", "0", "119s", "1m"] {
        let out = cli(&store, &["gc", "--min-age", age, "--dry-run"]).ok();
        assert!(out.contains("Dry run: nothing was removed."), "{out}");
    }
    // Nothing is running: with no age floor, every blob of the removed runs goes at once.
    let out = cli(&store, &["gc", "--keep-last", "0", "--min-age", "0s"]).ok();
    assert!(out.contains("Removed 3 of 3 runs"), "{out}");
    let blobs: Vec<_> = walk(&store.join("artifacts"))
        .into_iter()
        .filter(|p| !p.starts_with(store.join("artifacts").join("tmp")))
        // The store's claim on its folder is not a blob.
        .filter(|p| !p.starts_with(store.join("artifacts").join(".pipeline-stores")))
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

/// Sets the times of every blob and sidecar to an hour ago.
fn age_blobs(store: &std::path::Path) {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let times = std::fs::FileTimes::new()
        .set_modified(hour_ago)
        .set_accessed(hour_ago);
    for path in walk(&store.join("artifacts")) {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_times(times))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn gc_on_a_missing_store_exits_2_without_creating_it() {
    let missing = fresh_dir("gc-missing").join("store");
    let err = cli(&missing, &["gc", "--dry-run"]).fails();
    assert!(err.contains("no pipeline store"), "{err}");
    let err = cli(&missing, &["gc"]).fails();
    assert!(err.contains("no pipeline store"), "{err}");
    assert!(!missing.exists());
}

/// Every viewing command works on the store at `store`, which cannot be written, and
/// leaves it unchanged; every writing command fails with the read-only error. `run` runs the
/// binary on the store; `out` is a directory it may write.
fn check_read_only_store(store: &Path, out: &Path, run: impl Fn(&[&str]) -> Ran) {
    let before = walk(store);
    let runs = run(&["runs"]).ok();
    for name in RUNS {
        assert!(runs.contains(name), "{runs}");
    }
    assert_eq!(run(&["runs", "--json"]).json().as_array().unwrap().len(), 3);
    let show = run(&["show", "run-gamma"]).ok();
    assert!(show.contains("scale"), "{show}");
    let explain = run(&["explain", "run-gamma", "scale"]).ok();
    assert!(
        explain.contains("parameter `factor` changed (2.0 -> 3.0)"),
        "{explain}"
    );
    let diff = run(&["diff", "run-alpha", "run-gamma"]).ok();
    assert!(diff.contains("steps differ"), "{diff}");
    let dot = run(&["lineage", "run-gamma"]).ok();
    assert!(dot.starts_with("digraph"), "{dot}");
    let html = out.join("lineage.html");
    let html_arg = html.to_str().unwrap();
    run(&["lineage", "run-gamma", "--html", html_arg]).ok();
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    let verify = run(&["verify"]).ok();
    assert!(verify.contains("no problems"), "{verify}");
    // A dry run of gc only reads.
    let gc = run(&["gc", "--keep-last", "1", "--dry-run"]).ok();
    assert!(gc.contains("Would remove 2 of 3 runs:"), "{gc}");

    let read_only = format!(
        "store at {} is read-only (its file system is read-only or this process may not write to it)",
        store.display()
    );
    for args in [
        &["pin", "run-alpha"][..],
        &["unpin", "run-alpha"],
        &["gc"],
        &["verify", "--repair"],
    ] {
        let err = run(args).fails();
        assert!(
            err.contains(&read_only) && err.contains("copy the store directory"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(walk(store), before, "nothing created or removed");
}

#[test]
fn viewing_commands_work_on_read_only_media_and_writing_ones_say_why_not() {
    let work = fresh_dir("read-only-media");
    let src = work.join("store");
    common::build_history(&src);
    let ro = match read_only::ReadOnlyDir::new(&src, &work.join("ro")) {
        Ok(ro) => ro,
        Err(why) => {
            eprintln!("SKIPPED: no way to make a read-only directory here: {why}");
            return;
        }
    };
    eprintln!("read-only media made by {:?}", ro.method());
    check_read_only_store(ro.path(), &work, |args| cli(ro.path(), args));
}

/// Runs the binary as user `nobody` (uid 65534) through `setpriv`.
fn cli_as_nobody(store: &Path, args: &[&str]) -> Ran {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("PIPELINE_HOME")
        .output()
        .expect("run setpriv");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn viewing_commands_work_for_a_user_without_write_permission() {
    // A store owned by root, which another user may read but not write.
    if read_only::permissions_apply().unwrap() {
        eprintln!(
            "not root: the read-only media test already uses a store without write permission"
        );
        return;
    }
    let probe = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "true",
        ])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot run a command as another user here (setpriv)");
        return;
    }
    let work = fresh_dir("no-write-permission");
    let store = work.join("store");
    common::build_history(&store);
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = cli_as_nobody(&store, &["runs"]);
    if ran.code == Some(2) && ran.stderr.contains("Permission denied") {
        eprintln!("SKIPPED: user nobody cannot reach {}", store.display());
        return;
    }
    check_read_only_store(&store, &out, |args| cli_as_nobody(&store, args));
}

#[test]
fn verify_reports_deleted_and_damaged_sidecars_and_repair_restores_them() {
    let store = fresh_dir("verify-sidecars").join("store");
    common::build_history(&store);
    let out = cli(&store, &["verify"]).ok();
    assert!(out.contains("no problems"), "{out}");
    let sidecars: Vec<_> = walk(&store.join("artifacts"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        // The store's claim on its folder is no sidecar.
        .filter(|p| !p.starts_with(store.join("artifacts").join(".pipeline-stores")))
        .collect();
    assert!(sidecars.len() >= 2, "{sidecars:?}");
    let (deleted, damaged) = (&sidecars[0], &sidecars[1]);
    let originals = [
        std::fs::read(deleted).unwrap(),
        std::fs::read(damaged).unwrap(),
    ];
    std::fs::remove_file(deleted).unwrap();
    std::fs::write(damaged, b"{\"content_hash\": \"").unwrap();

    let ran = cli(&store, &["verify"]);
    assert_eq!(
        ran.code,
        Some(1),
        "problems found: exit code 1\n{}",
        ran.stderr
    );
    let out = ran.stdout;
    assert!(out.contains(": 2 problems:"), "{out}");
    assert!(
        out.contains(&format!("has no sidecar {}", deleted.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("sidecar {} of blob", damaged.display())),
        "{out}"
    );
    assert!(out.contains("pipeline verify --repair"), "{out}");
    let ran = cli(&store, &["verify", "--json"]);
    assert_eq!(ran.code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let mut kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["corrupt_sidecar", "missing_sidecar"]);

    let out = cli(&store, &["verify", "--repair"]).ok();
    assert!(out.contains("Repaired 2 problems:"), "{out}");
    assert!(
        out.contains(&format!("restored sidecar {}", deleted.display())),
        "{out}"
    );
    assert!(out.contains("no problems"), "{out}");
    // Restored from the metadata exactly as the step wrote them.
    assert_eq!(std::fs::read(deleted).unwrap(), originals[0]);
    assert_eq!(std::fs::read(damaged).unwrap(), originals[1]);
    let out = cli(&store, &["verify"]).ok();
    assert!(out.contains("no problems"), "{out}");
}

/// Fails on its first attempt, then logs a metric and metadata that depend on `k`.
#[pipeline::step(retries = 1)]
fn scored(k: u32) -> f64 {
    let ctx = pipeline::context().expect("inside a step");
    if ctx.attempt() == 1 {
        panic!("warming up");
    }
    let score = 1.0 / f64::from(k + 1);
    ctx.log_metric("score", score).unwrap();
    ctx.log_metadata("k", k);
    score
}

#[pipeline::pipeline(name = "scores")]
fn scores(k: u32) -> pipeline::Artifact<f64> {
    scored(k)
}

#[test]
fn show_and_diff_print_attempts_metrics_and_metadata() {
    let store = fresh_dir("scores").join("store");
    for (k, name) in [(1, "score-1"), (3, "score-3")] {
        scores(k)
            .store_path(&store)
            .run_name(name)
            .run()
            .expect("the retry succeeds");
    }
    let out = cli(&store, &["show", "score-1"]).ok();
    assert!(out.contains("`scored` ran 2 attempts:"), "{out}");
    assert!(out.contains("1. failed after"), "{out}");
    assert!(out.contains("panicked: warming up"), "{out}");
    assert!(out.contains("2. succeeded in"), "{out}");
    assert!(out.contains("`scored` metrics:\n  score = 0.5"), "{out}");
    assert!(out.contains("`scored` metadata:\n  k = 1"), "{out}");
    let json = cli(&store, &["show", "score-1", "--json"]).json();
    let step = &json["steps"][0];
    assert_eq!(step["metrics"]["score"], 0.5);
    assert_eq!(step["metadata"]["k"], 1);
    assert_eq!(step["attempts"].as_array().unwrap().len(), 2);

    let diff = cli(&store, &["diff", "score-1", "score-3"]).ok();
    assert!(diff.contains("score 0.5 -> 0.25"), "{diff}");
    let row = diff
        .lines()
        .find(|l| l.contains("score 0.5 -> 0.25"))
        .unwrap();
    assert_eq!(columns(row).first(), Some(&"scored"), "{diff}");
    assert_eq!(columns(row).last(), Some(&"-0.25"), "{diff}");
    let json = cli(&store, &["diff", "score-1", "score-3", "--json"]).json();
    assert_eq!(json["steps"][0]["metrics"][0]["a"], 0.5);
    assert_eq!(json["steps"][0]["metrics"][0]["b"], 0.25);

    // The dashboard's run page counts the attempts.
    let run = pipeline::Store::open(&store)
        .unwrap()
        .run("score-1")
        .unwrap()
        .id;
    let page = common::dashboard_page(&store, &format!("/runs/{run}"));
    assert!(
        page.contains(r#"<td class="attempts">2 (1 failed)</td>"#),
        "{page}"
    );

    // The lineage page's step panel gets them too.
    let page = store.with_file_name("score-1.html");
    cli(
        &store,
        &["lineage", "score-1", "--html", page.to_str().unwrap()],
    )
    .ok();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(r#""metrics":{"score":0.5}"#), "{html}");
    assert!(html.contains(r#""metadata":{"k":1}"#), "{html}");
    assert!(html.contains("'metric ' + k"), "the panel lists them");
}
