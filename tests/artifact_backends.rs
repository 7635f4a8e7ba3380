//! A store whose blobs live in another artifact backend (`object_store`'s local file
//! system) behaves as with its own folder: misses write through the backend, hits read no
//! bytes, loads verify, a blob deleted behind the store's back re-executes its step, and gc
//! and verify work on it. Nothing lands in the store's own `artifacts/` folder.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::statuses;
use pipeline::prelude::*;
use pipeline::store::artifacts::{ArtifactStore, ObjectArtifacts};
use pipeline::store::{GcPolicy, StoreOptions};

static SQUARES: AtomicUsize = AtomicUsize::new(0);

/// The tests count executions of `squares` in one counter, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[step]
fn squares(n: u64) -> Vec<u64> {
    SQUARES.fetch_add(1, SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[step]
fn sum(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

#[pipeline]
fn sum_of_squares(n: u64) -> Artifact<u64> {
    let xs = squares(n);
    sum(&xs)
}

/// A store in `dir/store` whose blobs go to `dir/objects` through `object_store`.
fn object_backed(dir: &Path) -> (Store, Arc<dyn ArtifactStore>) {
    let blobs: Arc<dyn ArtifactStore> =
        Arc::new(ObjectArtifacts::local(dir.join("objects")).unwrap());
    let options = StoreOptions {
        artifacts: Some(Arc::clone(&blobs)),
        ..StoreOptions::default()
    };
    (Store::open_with(dir.join("store"), options).unwrap(), blobs)
}

/// Files under `dir`, recursively (the store's own blob folder must hold none).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "tmp" {
                out.extend(files_under(&path));
            }
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn a_store_runs_on_an_object_store_backend() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (store, blobs) = object_backed(dir.path());
    let p = sum_of_squares(1000).store(store.clone());

    let first = p.run().unwrap();
    assert!(statuses(&first)
        .iter()
        .all(|(_, s)| *s == StepStatus::Executed));
    let want: u64 = (0..1000u64).map(|i| i * i).sum();
    assert_eq!(first.output().load().unwrap(), want);
    let listed = blobs.list().unwrap();
    // Both outputs, and the parameter's stored form (`n`, for workers and replays).
    assert_eq!(
        listed.len(),
        3,
        "both outputs and the parameter are objects: {listed:?}"
    );
    let path = first.output().path().unwrap();
    assert!(
        path.to_string_lossy().starts_with("file://"),
        "an artifact's location names the backend: {}",
        path.display()
    );
    assert!(
        files_under(&dir.path().join("store/artifacts")).is_empty(),
        "no blob in the store's own folder"
    );
    let sidecar = blobs
        .get_sidecar(first.output().content_hash().unwrap())
        .unwrap()
        .expect("the sidecar is written through the backend");
    let doc: serde_json::Value = serde_json::from_slice(&sidecar).unwrap();
    assert_eq!(doc["produced_by"]["step"], "sum");

    // A fresh handle (another process, say): the hit stats the objects and reads no bytes.
    let (again, _) = object_backed(dir.path());
    let executed = SQUARES.load(SeqCst);
    let second = sum_of_squares(1000).store(again.clone()).run().unwrap();
    assert!(statuses(&second)
        .iter()
        .all(|(_, s)| *s == StepStatus::Cached));
    assert_eq!(SQUARES.load(SeqCst), executed, "no step body ran");
    assert_eq!(
        again.stats().blob_reads,
        0,
        "a cached run reads no artifact bytes"
    );
    assert_eq!(again.stats().bytes_read, 0);
    assert_eq!(second.output().load().unwrap(), want);
    assert_eq!(
        again.stats().blob_reads,
        1,
        "a load reads through the backend"
    );

    assert!(
        store.verify().unwrap().problems.is_empty(),
        "verify is clean"
    );

    // An object deleted behind the store's back: the next run executes its step again.
    let squares_hash = store
        .artifact(first.name(), "squares", "output")
        .unwrap()
        .content_hash();
    assert!(blobs.delete(squares_hash).unwrap());
    assert!(
        !store.verify().unwrap().problems.is_empty(),
        "verify sees the loss"
    );
    let third = p.run().unwrap();
    assert_eq!(
        third.step("squares").unwrap().status(),
        StepStatus::Executed,
        "a missing object is a miss"
    );
    assert_eq!(SQUARES.load(SeqCst), executed + 1);
    assert!(
        blobs.stat(squares_hash).unwrap().is_some(),
        "and is written again"
    );
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn gc_removes_unreferenced_objects_through_the_backend() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (store, blobs) = object_backed(dir.path());
    let orphan = store.save_blob(&vec![1u64, 2, 3], &Bincode).unwrap();
    sum_of_squares(10).store(store.clone()).run().unwrap();
    // The orphan, two outputs and the parameter's stored form.
    assert_eq!(blobs.list().unwrap().len(), 4);

    let policy = GcPolicy::default();
    let fresh = store.gc(&policy).unwrap();
    assert_eq!(fresh.blobs_removed, 0, "a blob written just now stays");

    // Age every object past `min_blob_age` (their files are this backend's storage).
    let old = SystemTime::now() - policy.min_blob_age - Duration::from_secs(60);
    for blob in blobs.list().unwrap() {
        let file = fs::File::options()
            .write(true)
            .open(
                blobs
                    .location(blob.hash)
                    .to_string_lossy()
                    .trim_start_matches("file://"),
            )
            .unwrap();
        file.set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
    }
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.blobs_removed, 1, "only the unreferenced object goes");
    assert_eq!(blobs.stat(orphan).unwrap(), None);
    assert_eq!(
        blobs.list().unwrap().len(),
        3,
        "the run's outputs and its parameter's stored form stay"
    );
    assert!(store.verify().unwrap().problems.is_empty());
}

/// Two stores (two metadata databases) whose blobs go to one folder: both run and share
/// bytes, but neither's gc deletes anything there, since each sees only its own
/// references; the error names both stores and the way out. Once a store is gone and its
/// claim removed, gc works again.
#[test]
fn gc_deletes_nothing_where_another_store_keeps_blobs() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    for object_store in [false, true] {
        let shared = shared.join(if object_store { "objects" } else { "folder" });
        let blobs: Arc<dyn ArtifactStore> = if object_store {
            Arc::new(ObjectArtifacts::local(&shared).unwrap())
        } else {
            Arc::new(pipeline::store::artifacts::LocalArtifacts::new(
                &shared, "shared",
            ))
        };
        let open = |name: &str| {
            let options = StoreOptions {
                artifacts: Some(Arc::clone(&blobs)),
                ..StoreOptions::default()
            };
            Store::open_with(dir.path().join(format!("{name}-{object_store}")), options).unwrap()
        };
        let (a, b) = (open("a"), open("b"));
        let first = sum_of_squares(10).store(b.clone()).run().unwrap();
        sum_of_squares(20).store(a.clone()).run().unwrap();
        let everything = blobs.list().unwrap().len();
        // Per run: two outputs and the parameter's stored form (for workers and replays).
        assert_eq!(everything, 6, "both stores' blobs are in the folder");

        let now = GcPolicy {
            keep_last: 0,
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        };
        let claims = blobs.claims().unwrap();
        assert_eq!(claims.len(), 2, "each store claimed the folder: {claims:?}");
        for (store, dry_run) in [(&a, false), (&b, false), (&a, true)] {
            let err = store
                .gc(&GcPolicy {
                    dry_run,
                    ..now.clone()
                })
                .unwrap_err();
            assert!(
                matches!(err, pipeline::Error::SharedArtifacts { .. }),
                "{err:?}"
            );
            let message = err.to_string();
            for (id, _) in &claims {
                assert!(message.contains(id), "both stores named: {message}");
            }
            assert!(
                message.contains(&shared.display().to_string())
                    && message.contains("an artifact location of its own")
                    && message.contains(".pipeline-stores"),
                "where and what to do: {message}"
            );
        }
        assert_eq!(blobs.list().unwrap().len(), everything, "nothing deleted");
        assert_eq!(a.runs(None).unwrap().len(), 1, "no run removed either");
        assert!(b.verify().unwrap().is_ok());
        assert_eq!(first.output().load().unwrap(), 285);

        // Store b is gone: its claim is removed as the error says, and a's gc works.
        let b_claim = claims
            .iter()
            .find(|(_, doc)| String::from_utf8_lossy(doc).contains("b-"))
            .map(|(id, _)| id.clone())
            .unwrap();
        fs::remove_file(
            shared
                .join(".pipeline-stores")
                .join(format!("{b_claim}.json")),
        )
        .unwrap();
        drop(b);
        let report = a.gc(&now).unwrap();
        assert_eq!(report.runs_removed.len(), 1);
        assert_eq!(report.blobs_removed, everything, "b's blobs and a's");
    }
}
