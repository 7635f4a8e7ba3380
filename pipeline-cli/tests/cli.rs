//! The `pipeline` binary on a store with a three-run history: every subcommand's text and
//! JSON output, and its errors (exit code 2, never a panic).

mod common;

use std::ffi::OsStr;

use common::{cli, failed_store, fresh_dir, history, run_raw, RUNS};

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
    // Compared with the newest earlier execution: the one in run-beta.
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

    let out = cli(
        &store,
        &["gc", "--keep-last", "1", "--min-age", "0s", "--dry-run"],
    )
    .ok();
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
            "0s",
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
    let report = cli(
        &store,
        &["gc", "--keep-last", "1", "--min-age", "0s", "--json"],
    )
    .json();
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
    let out = cli(&store, &["gc", "--keep-last", "1", "--min-age", "0s"]).ok();
    assert!(out.contains("Removed 1 of 2 runs:\n  run-alpha\n"), "{out}");
    assert!(out.contains("Kept 1 run(s)"), "{out}");
    let out = cli(&store, &["show", "run-gamma"]).ok();
    assert!(out.contains("scale"), "{out}");
    let err = cli(&store, &["show", "run-alpha"]).fails();
    assert!(err.contains("no run `run-alpha`"), "{err}");

    let err = cli(&store, &["gc", "--max-size", "12X"]).fails();
    assert!(err.contains("unknown size unit"), "{err}");
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
