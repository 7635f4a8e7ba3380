//! `Store::connect` opens the store a configuration names: SQLite metadata with the blobs
//! in another folder, or in an S3 bucket (Garage, started by `scripts/services.sh`; named
//! by `PIPELINE_TEST_S3` and the standard `AWS_*` variables). The same pipeline runs on
//! each: misses write through the backend, a second run on a new handle caches every step
//! and reads no bytes, loads verify, and an object deleted behind the store's back makes
//! its step execute again (in S3, once a load or `verify` has found it gone: a hit there
//! trusts the recorded rows).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::StepStatus;

static SQUARES: AtomicUsize = AtomicUsize::new(0);

/// The tests count executions of `squares` in one counter, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[step]
fn squares(n: u64) -> Vec<u64> {
    SQUARES.fetch_add(1, SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[step]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

#[pipeline]
fn sum_of_squares(n: u64) -> Artifact<u64> {
    let xs = squares(n);
    total(&xs)
}

fn statuses(run: &pipeline::Run<Artifact<u64>>) -> Vec<StepStatus> {
    run.steps().iter().map(|s| s.status()).collect()
}

/// Runs the pipeline twice on stores opened from `config` and checks what a user relies on.
/// `remote`: the blobs are in S3, where a cache hit trusts the recorded rows (no request
/// per output), so a blob deleted behind the store's back is found by a load or `verify`,
/// not by the lookup; in a folder the lookup's stat finds it.
fn exercise(config: &StoreConfig, n: u64, remote: bool) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let store = Store::connect(config).unwrap();
    let before = SQUARES.load(SeqCst);
    let first = sum_of_squares(n).store(store.clone()).run().unwrap();
    assert_eq!(SQUARES.load(SeqCst), before + 1);
    let expected: u64 = (0..n).map(|i| i * i).sum();
    assert_eq!(first.output().load().unwrap(), expected);

    // A new handle, as a new process would open it: every step cached, no bytes read.
    let again = Store::connect(config).unwrap();
    let second = sum_of_squares(n).store(again.clone()).run().unwrap();
    assert_eq!(statuses(&second), [StepStatus::Cached, StepStatus::Cached]);
    assert_eq!(again.stats().blob_reads, 0, "a cached run reads no blobs");
    assert_eq!(SQUARES.load(SeqCst), before + 1);
    // Loading verifies the bytes through the backend.
    assert_eq!(second.output().load().unwrap(), expected);
    assert!(again.verify().unwrap().problems.is_empty());

    // An object deleted behind the store's back: the next run executes its step again.
    let hash = again
        .artifact(second.name(), "squares", "output")
        .unwrap()
        .content_hash();
    assert!(again.artifact_store().delete(hash).unwrap());
    if remote {
        let problems = again.verify().unwrap().problems;
        assert!(
            matches!(problems.as_slice(), [pipeline::Problem::MissingBlob { .. }]),
            "verify finds the object gone, and marks it: {problems:?}"
        );
    }
    let third = sum_of_squares(n)
        .store(Store::connect(config).unwrap())
        .run()
        .unwrap();
    assert_eq!(
        third.step("squares").unwrap().status(),
        StepStatus::Executed
    );
    assert_eq!(SQUARES.load(SeqCst), before + 2);
}

#[test]
fn blobs_in_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta/metadata.sqlite");
    let blobs = dir.path().join("blobs");
    let config = StoreConfig::new(
        &format!("sqlite:{}", db.display()),
        Some(blobs.to_str().unwrap()),
    )
    .unwrap();
    exercise(&config, 50, false);
    assert!(
        !dir.path().join("meta/artifacts").join("ab").exists()
            && std::fs::read_dir(&blobs).unwrap().count() > 0,
        "blobs went to the configured folder"
    );
}

#[test]
fn blobs_in_s3() {
    let Some(url) = std::env::var("PIPELINE_TEST_S3")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("PIPELINE_TEST_S3 is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start Garage with scripts/services.sh");
        }
        eprintln!("blobs_in_s3: skipped, PIPELINE_TEST_S3 is not set (scripts/test.sh starts Garage and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metadata.sqlite");
    let prefix = format!(
        "{}/configured-{}-{}",
        url.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = StoreConfig::new(&format!("sqlite:{}", db.display()), Some(&prefix)).unwrap();
    // 1 MB of squares: big enough to matter, small enough for a quick test.
    exercise(&config, 125_000, true);
    assert!(
        !dir.path().join("artifacts").join("ab").exists(),
        "no blob went to the local folder"
    );
}
