//! The store survives the process: the same pipeline run by two processes on one
//! `PIPELINE_HOME`; the second executes nothing.
//!
//! The child is this test binary itself, started with `--exact child_run_pipeline` and an
//! environment variable that makes that test run the pipeline.

use std::process::Command;

use pipeline::prelude::*;

#[step]
fn numbers(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[step]
fn squares(xs: &[u32]) -> Vec<u64> {
    xs.iter().map(|&x| u64::from(x) * u64::from(x)).collect()
}

#[step]
fn sum(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

#[pipeline]
fn persisted(n: u32) -> Artifact<u64> {
    let xs = numbers(n);
    let sq = squares(&xs);
    sum(&sq)
}

const CHILD: &str = "PIPELINE_TEST_CHILD";

#[test]
fn child_run_pipeline() {
    if std::env::var_os(CHILD).is_none() {
        return; // only does work when started by `store_survives_the_process`
    }
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stdout)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let run = persisted(100).run().unwrap(); // default store: $PIPELINE_HOME
    let total: u64 = run.output().load().unwrap();
    println!("RESULT {total}");
}

fn run_child(home: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_run_pipeline",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("PIPELINE_HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn store_survives_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let first = run_child(&home);
    for step in ["numbers", "squares", "sum"] {
        assert!(
            first.contains(&format!("Step `{step}` has started.")),
            "{first}"
        );
    }
    let second = run_child(&home);
    for step in ["numbers", "squares", "sum"] {
        assert!(
            second.contains(&format!("Using cached version of `{step}`.")),
            "{second}"
        );
    }
    assert!(
        !second.contains("has started"),
        "second process executed a step:\n{second}"
    );
    assert!(second.contains("RESULT 328350"), "{second}");
    assert!(first.contains("RESULT 328350"), "{first}");
}
