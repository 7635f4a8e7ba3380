//! `PIPELINE_EXECUTOR=slurm` is not built yet: a run says so once, at WARN, and runs its
//! steps on threads, instead of ignoring the setting in silence (`processes` is built; see
//! tests/workers.rs). One test in its
//! own binary, because it sets a process-wide variable.

mod common;

use common::{capture_logs, statuses};
use pipeline::prelude::*;

#[step]
fn double(x: u64) -> u64 {
    x * 2
}

#[pipeline]
fn doubled(x: u64) -> Artifact<u64> {
    double(x)
}

#[test]
fn an_executor_this_version_lacks_is_named_in_a_warning_and_steps_run_on_threads() {
    let logs = capture_logs();
    // Only this test runs in this binary, so no other thread reads the environment.
    std::env::set_var("PIPELINE_EXECUTOR", "slurm");
    let dir = tempfile::tempdir().unwrap();
    let first = doubled(21)
        .store_path(dir.path().join("store"))
        .run()
        .unwrap();
    let second = doubled(21)
        .store_path(dir.path().join("store"))
        .run()
        .unwrap();
    assert_eq!(first.output().load().unwrap(), 42);
    assert_eq!(
        statuses(&second),
        [("double".to_string(), StepStatus::Cached)]
    );
    let warnings: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .collect();
    assert_eq!(
        warnings,
        ["WARN PIPELINE_EXECUTOR=slurm is not supported by this version yet: steps run on threads in this process"],
        "one warning per process"
    );
}
