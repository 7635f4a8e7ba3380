//! The seed example (`examples/caching.rs`): its pipeline in the three caching modes, the
//! example binary run as two processes on one store, and its argument errors.
//!
//! The pipeline is the example's own (`examples/common/digits_pipeline.rs`), trained on a
//! subset of the digits so that debug builds stay fast.

#[path = "../examples/common/digits.rs"]
mod digits;
#[path = "../examples/common/digits_pipeline.rs"]
mod digits_pipeline;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use pipeline::prelude::*;

use digits::{DEFAULT_C, DEFAULT_GAMMA};
use digits_pipeline::{digits_pipeline, STEPS};

/// Training rows used by the tests (of 1437): enough for an accuracy above 0.9.
const TRAIN_LIMIT: usize = 300;

use StepStatus::{Cached, Executed};

/// Runs `first` then `second` on a fresh store and returns both runs, and the store's
/// directory, which lives as long as the caller keeps it.
fn two_runs(
    first: Pipeline<Artifact<f64>>,
    second: Pipeline<Artifact<f64>>,
) -> (Run<Artifact<f64>>, Run<Artifact<f64>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let one = first.store(store.clone()).run().unwrap();
    let two = second.store(store).run().unwrap();
    (one, two, dir)
}

fn statuses(run: &Run<Artifact<f64>>) -> Vec<(String, StepStatus)> {
    run.steps()
        .iter()
        .map(|s| (s.name().to_string(), s.status()))
        .collect()
}

fn expect(statuses: [StepStatus; 4]) -> Vec<(String, StepStatus)> {
    STEPS.iter().map(|s| s.to_string()).zip(statuses).collect()
}

fn accuracy(run: &Run<Artifact<f64>>) -> f64 {
    let acc = run.output().load().unwrap();
    assert!(acc > 0.9, "accuracy {acc} of run `{}`", run.name());
    acc
}

fn pipeline(gamma: f64, cache_normalizer: bool) -> Pipeline<Artifact<f64>> {
    digits_pipeline(gamma, DEFAULT_C, Some(TRAIN_LIMIT), cache_normalizer)
}

#[test]
fn default_mode_second_run_is_fully_cached() {
    let (one, two, _dir) = two_runs(pipeline(DEFAULT_GAMMA, true), pipeline(DEFAULT_GAMMA, true));
    assert_eq!(statuses(&one), expect([Executed; 4]));
    assert_eq!(statuses(&two), expect([Cached; 4]));
    assert_eq!(accuracy(&one), accuracy(&two));
}

#[test]
fn invalidate_mode_reruns_trainer_and_evaluator() {
    let (one, two, _dir) = two_runs(
        pipeline(DEFAULT_GAMMA, true),
        pipeline(DEFAULT_GAMMA / 2.0, true),
    );
    assert_eq!(statuses(&one), expect([Executed; 4]));
    assert_eq!(statuses(&two), expect([Cached, Cached, Executed, Executed]));
    match two.step("svc_trainer").unwrap().reason() {
        Reason::ParameterChanged { name, .. } => assert_eq!(name, "gamma"),
        other => panic!("trainer re-ran for another reason: {other}"),
    }
    accuracy(&one);
    accuracy(&two);
}

#[test]
fn the_evaluator_logs_accuracy_and_a_sweep_reads_it_back_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let gammas = [0.02, 0.04, 0.08, 0.16, 0.32];
    let mut returned = Vec::new();
    for gamma in gammas {
        let run = pipeline(gamma, true).store(store.clone()).run().unwrap();
        returned.push(run.output().load().unwrap());
    }
    let logged = store.metric("digits_pipeline", "accuracy").unwrap();
    let values: Vec<f64> = logged.iter().map(|m| m.value).collect();
    assert_eq!(values, returned, "one accuracy per run, oldest first");
    assert!(logged.iter().all(|m| m.step == "evaluator"));
    // A cached rerun carries the accuracy of the execution it reused.
    let again = pipeline(gammas[0], true)
        .store(store.clone())
        .run()
        .unwrap();
    assert_eq!(again.step("evaluator").unwrap().status(), Cached);
    let logged = store.metric("digits_pipeline", "accuracy").unwrap();
    assert_eq!(logged.len(), 6);
    assert_eq!(logged[5].value, returned[0]);
}

#[test]
fn disable_mode_reruns_normalizer_and_cuts_off_early() {
    let (one, two, _dir) = two_runs(
        pipeline(DEFAULT_GAMMA, true),
        pipeline(DEFAULT_GAMMA, false),
    );
    assert_eq!(statuses(&one), expect([Executed; 4]));
    // The normalizer re-runs with caching off, writes the same bytes, so the steps after
    // it keep their cache keys (early cutoff).
    assert_eq!(statuses(&two), expect([Cached, Executed, Cached, Cached]));
    assert_eq!(
        two.step("normalizer").unwrap().reason(),
        &Reason::CacheDisabled
    );
    let hash = |run: &Run<Artifact<f64>>| {
        run.store()
            .artifact(run.id(), "normalizer", "x_train")
            .unwrap()
            .content_hash()
    };
    assert_eq!(hash(&one), hash(&two));
    assert_eq!(accuracy(&one), accuracy(&two));
}

/// The example binary, built (or found up to date) by cargo with this test's profile.
///
/// Integration tests get no `CARGO_BIN_EXE_*` for examples, so ask cargo itself: it
/// rebuilds the example if its sources changed and prints the executable's path. Offline,
/// since this test's own build already fetched every dependency.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--offline", "--example", "caching"])
            .arg("--message-format=json-render-diagnostics");
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("cannot start cargo");
        assert!(
            out.status.success(),
            "cargo build --example caching failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|msg| {
                msg["reason"] == "compiler-artifact"
                    && msg["target"]["name"] == "caching"
                    && msg["target"]["kind"][0] == "example"
            })
            .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
            .expect("cargo printed no executable for the `caching` example")
    })
}

fn run_example(args: &[&str]) -> Output {
    Command::new(example_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PIPELINE_HOME")
        .output()
        .expect("cannot start the example")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn second_process_executes_no_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let limit = TRAIN_LIMIT.to_string();
    let args = ["--store", store, "--train-limit", &limit];

    let first = run_example(&args);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    // Standard error is a pipe here: no progress bar is drawn on it, and the log lines
    // carry no span context (the spans the bar reads are DEBUG).
    assert!(stderr.is_empty(), "drawn on a pipe: {stderr:?}");
    assert!(!stdout.contains("run{"), "{stdout}");
    for step in STEPS {
        assert!(
            stdout.contains(&format!("Step `{step}` has started.")),
            "first process did not execute `{step}`:\n{stdout}"
        );
    }

    let second = run_example(&args);
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("has started."),
        "second process executed a step:\n{stdout}"
    );
    for step in STEPS {
        // Once per run: the second process runs the pipeline twice itself.
        let line = format!("Using cached version of `{step}`.");
        assert_eq!(
            stdout.matches(&line).count(),
            2,
            "`{step}` not cached in both runs of the second process:\n{stdout}"
        );
    }
    assert!(stdout.contains("Note: run 1 reused steps"), "{stdout}");
}

#[test]
fn bad_arguments_exit_with_code_2() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--mode", "foo"],
            "invalid value 'foo' for '--mode <MODE>'",
        ),
        (
            &["--gamma", "-1"],
            "invalid value '-1' for '--gamma <GAMMA>': must be a finite number greater than 0",
        ),
        (&["--gamma", "0"], "must be a finite number greater than 0"),
        (&["--c", "abc"], "`abc` is not a number"),
    ];
    for (args, message) in cases {
        let out = run_example(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{stdout}\n{stderr}");
        assert!(stderr.contains(message), "{args:?}:\n{stderr}");
        assert!(stdout.is_empty(), "{args:?} ran something:\n{stdout}");
    }
    let out = run_example(&["--mode", "foo"]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("[possible values: default, invalidate, disable]"),
        "{stderr}"
    );
}

#[test]
fn fresh_refuses_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let out = run_example(&["--store", dir.path().to_str().unwrap(), "--fresh"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("not a pipeline store"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
}
