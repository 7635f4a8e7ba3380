//! A `PIPELINE_EXECUTOR` that names no executor fails the run, also when the store is
//! chosen in code: it used to run every step on threads without a word. One test in its
//! own binary, because it sets a process-wide variable read once per process.

use pipeline::prelude::*;
use pipeline::Error;

#[step]
fn double(x: u64) -> u64 {
    x * 2
}

#[pipeline]
fn doubled(x: u64) -> Artifact<u64> {
    double(x)
}

#[test]
fn a_misspelled_pipeline_executor_is_an_error_not_the_thread_executor() {
    // Only this test runs in this binary, so no other thread reads the environment.
    std::env::set_var("PIPELINE_EXECUTOR", "process");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = doubled(21).store(store.clone()).run().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("$PIPELINE_EXECUTOR"), "{text}");
    assert!(text.contains("unknown executor `process`"), "{text}");
    assert!(text.contains("threads, processes, slurm"), "{text}");
    assert!(store.runs(None).unwrap().is_empty(), "a run was recorded");
    // An executor chosen in code does not read the variable.
    let run = doubled(21)
        .store(store)
        .executor(pipeline::config::ExecutorKind::Threads)
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 42);
}
