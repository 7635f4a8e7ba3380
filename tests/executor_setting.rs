//! `PIPELINE_EXECUTOR` chooses the executor by configuration alone: `slurm` with a local
//! store is refused before anything is submitted or recorded, naming the setting that would
//! make it work. One test in its own binary, because it sets a process-wide variable.

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
fn pipeline_executor_slurm_with_a_local_store_is_refused_before_anything_runs() {
    // Only this test runs in this binary, so no other thread reads the environment.
    std::env::set_var("PIPELINE_EXECUTOR", "slurm");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = doubled(21).store(store.clone()).run().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Executor {
                backend: "slurm",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("SQLite file"), "{text}");
    assert!(text.contains("PIPELINE_METADATA=postgres://"), "{text}");
    assert!(text.contains("Nothing was submitted"), "{text}");
    assert!(store.runs(None).unwrap().is_empty(), "a run was recorded");
    // Threads, chosen in code, win over the variable.
    let run = doubled(21)
        .store(store)
        .executor(pipeline::config::ExecutorKind::Threads)
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 42);
}
