//! A store written normally, then put on read-only media (a tmpfs remounted `ro`, a
//! read-only bind mount, an immutable copy, or a copy without write permission, whichever
//! this machine allows): it opens, its runs and artifacts read, and a run gets the
//! library's read-only error naming the path and the fix. Nothing is created on it.

#[path = "common/read_only.rs"]
mod read_only;

use std::fs;
use std::path::{Path, PathBuf};

use pipeline::prelude::*;
use pipeline::{ReadOnlyCause, StoreOptions};
use read_only::ReadOnlyDir;

#[step]
fn numbers(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

#[step]
fn total(xs: &[u32]) -> u64 {
    xs.iter().map(|&x| u64::from(x)).sum()
}

#[pipeline]
fn summed(n: u32) -> Artifact<u64> {
    let xs = numbers(n);
    total(&xs)
}

fn read_only() -> StoreOptions {
    StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    }
}

/// Names of everything under `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(listing(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

/// Makes `src` read-only, or prints why this machine offers no way to and returns `None`.
fn make_read_only(src: &Path, work: &Path) -> Option<ReadOnlyDir> {
    match ReadOnlyDir::new(src, work) {
        Ok(ro) => {
            eprintln!("read-only media made by {:?}", ro.method());
            Some(ro)
        }
        Err(why) => {
            eprintln!("SKIPPED: no way to make a read-only directory here: {why}");
            None
        }
    }
}

fn assert_media_error(err: &Error, path: &Path) {
    match err {
        Error::ReadOnly {
            path: p,
            cause: ReadOnlyCause::Media,
            ..
        } => assert_eq!(p, path),
        other => panic!("expected the read-only error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("store at {} is read-only", path.display()))
            && message.contains("copy the store directory to writable storage"),
        "{message}"
    );
}

#[test]
fn a_store_on_read_only_media_reads_runs_and_artifacts_and_refuses_runs() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("written");
    let run = summed(100)
        .store_path(&src)
        .run_name("written-normally")
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 5050);
    drop(run); // the last connection: SQLite merges the WAL and removes -wal and -shm
    assert!(!src.join("metadata.sqlite-shm").exists());
    let Some(ro) = make_read_only(&src, &work.path().join("ro")) else {
        return;
    };
    let path = ro.path().to_path_buf();
    let before = listing(&path);

    // Read-only by request, and writable by request: both read, neither can write.
    for options in [read_only(), StoreOptions::default()] {
        let store = Store::open_with(&path, options).unwrap();
        assert_eq!(store.read_only(), Some(ReadOnlyCause::Media));
        let runs = store.runs(None).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].name, "written-normally");
        let steps = store.run_steps("written-normally").unwrap();
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| s.status == StepStatus::Executed));
        let sum: u64 = store.load("written-normally", "total", "output").unwrap();
        assert_eq!(sum, 5050);
        let xs: Vec<u32> = store.load("written-normally", "numbers", "output").unwrap();
        assert_eq!(xs.len(), 100);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.blobs_checked, 2);

        // A fully cached run still records a run; a new parameter would execute.
        for n in [100, 7] {
            let err = summed(n).store(store.clone()).run().unwrap_err();
            assert_media_error(&err, &path);
        }
        assert_media_error(&store.pin("written-normally").unwrap_err(), &path);
        assert_media_error(&store.repair().unwrap_err(), &path);
        let err = store.gc(&pipeline::GcPolicy::default()).unwrap_err();
        assert_media_error(&err, &path);
        assert_eq!(store.runs(None).unwrap().len(), 1);
    }

    // Through the builder's path and through PIPELINE_HOME (`Store::open_default` and a
    // pipeline without a store). No other test in this file reads PIPELINE_HOME.
    assert_media_error(&summed(100).store_path(&path).run().unwrap_err(), &path);
    std::env::set_var("PIPELINE_HOME", &path);
    let opened = Store::open_default();
    let default_run = summed(100).run();
    std::env::remove_var("PIPELINE_HOME");
    let store = opened.unwrap();
    assert_eq!(store.runs(None).unwrap().len(), 1);
    assert_media_error(&default_run.unwrap_err(), &path);

    drop(store);
    assert_eq!(
        listing(&path),
        before,
        "no -wal, -shm or blob folder created"
    );
}

#[test]
fn a_write_ahead_log_on_read_only_media_is_read_through_its_index_or_refused() {
    let work = tempfile::tempdir().unwrap();
    let live = work.path().join("live");
    let store = Store::open(&live).unwrap();
    summed(10)
        .store(store.clone())
        .run_name("in-the-log")
        .run()
        .unwrap();
    // Copied while the writer is open: the run sits in metadata.sqlite-wal, not yet merged.
    let wal = live.join("metadata.sqlite-wal");
    assert!(fs::metadata(&wal).unwrap().len() > 0);
    let with_index = work.path().join("with-index");
    let without_index = work.path().join("without-index");
    for dst in [&with_index, &without_index] {
        fs::create_dir_all(dst).unwrap();
        read_only::copy_dir(&live, dst).unwrap();
    }
    fs::remove_file(without_index.join("metadata.sqlite-shm")).unwrap();
    drop(store);

    // With the -shm index, a plain read-only open reads the log: the run is there.
    let Some(ro) = make_read_only(&with_index, &work.path().join("ro-with")) else {
        return;
    };
    let store = Store::open_with(ro.path(), read_only()).unwrap();
    let runs = store.runs(None).unwrap();
    assert_eq!(runs.len(), 1, "the run still in the log is seen");
    let sum: u64 = store.load("in-the-log", "total", "output").unwrap();
    assert_eq!(sum, 55);
    drop(store);

    // Without it, SQLite cannot read the log here; an older state is not shown instead.
    let Some(ro) = make_read_only(&without_index, &work.path().join("ro-without")) else {
        return;
    };
    let before = listing(ro.path());
    for options in [read_only(), StoreOptions::default()] {
        let err = Store::open_with(ro.path(), options).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ReadOnly {
                    cause: ReadOnlyCause::Media,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("metadata.sqlite-wal") && message.contains("copy the store"),
            "{message}"
        );
    }
    assert_eq!(listing(ro.path()), before);
}
