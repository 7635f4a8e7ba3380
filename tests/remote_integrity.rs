//! Integrity of stores whose artifact bytes are in S3 (Garage), with metadata in
//! PostgreSQL or SQLite, as a new user meets it: a corrupt object heals in one run, blobs
//! deleted behind the store's back are all redone by the run after `verify`, and two
//! stores sharing one prefix never garbage-collect each other's blobs.
//!
//! `PIPELINE_TEST_POSTGRES` and `PIPELINE_TEST_S3` (with the `AWS_*` variables) name the
//! services, as in `tests/postgres_store.rs`; without them the tests say so and pass,
//! unless `PIPELINE_TEST_REQUIRE_SERVICES=1`.

#[path = "common/services.rs"]
mod services;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

use pipeline::config::{ArtifactLocation, StoreConfig};
use pipeline::prelude::*;
use pipeline::store::GcPolicy;
use pipeline::{Error, StepStatus, StoreOptions};

use services::{fresh_database, fresh_prefix, service};

static SQUARES: AtomicUsize = AtomicUsize::new(0);
static SUMS: AtomicUsize = AtomicUsize::new(0);

/// The tests count executions in shared counters, so they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[step]
fn squares(n: u64) -> Vec<u64> {
    SQUARES.fetch_add(1, SeqCst);
    (0..n).map(|i| i * i).collect()
}

#[step]
fn sum(xs: &[u64]) -> u64 {
    SUMS.fetch_add(1, SeqCst);
    xs.iter().sum()
}

#[pipeline]
fn sum_of_squares(n: u64) -> Artifact<u64> {
    let xs = squares(n);
    sum(&xs)
}

fn statuses(run: &Run<Artifact<u64>>) -> Vec<StepStatus> {
    run.steps().iter().map(|s| s.status()).collect()
}

/// The metadata locations to test against: PostgreSQL (a fresh database, kept alive by
/// the returned guard) and SQLite in `dir`.
fn metadata_locations(
    dir: &Path,
    test: &str,
) -> Option<Vec<(String, Option<services::TestDatabase>)>> {
    let db = fresh_database(test)?;
    let sqlite = format!(
        "sqlite:{}",
        dir.join("lite").join("metadata.sqlite").display()
    );
    Some(vec![(db.url.clone(), Some(db)), (sqlite, None)])
}

/// Raw access to the bucket of `config`, as someone with the keys has it.
struct Bucket {
    s3: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    fn of(config: &StoreConfig) -> Bucket {
        let ArtifactLocation::S3 { bucket, prefix } = config.artifacts().clone() else {
            panic!("not an S3 location");
        };
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .unwrap();
        Bucket {
            s3: Arc::new(s3),
            prefix,
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    fn key(&self, hash: pipeline::Hash128) -> Key {
        let hex = hash.to_hex();
        Key::from(format!("{}/{}/{hex}", self.prefix, &hex[..2]))
    }

    /// Flips one byte of the object of blob `hash` (same size, other bytes).
    fn corrupt(&self, hash: pipeline::Hash128) {
        let key = self.key(hash);
        let mut bytes = self
            .runtime
            .block_on(async { self.s3.get(&key).await?.bytes().await })
            .unwrap()
            .to_vec();
        bytes[0] ^= 0xff;
        self.runtime
            .block_on(self.s3.put(&key, bytes.into()))
            .unwrap();
    }
}

/// Output hashes of run `run`'s steps, by step name.
fn output_of(store: &Store, run: &str, step: &str) -> pipeline::Hash128 {
    store
        .run_steps(run)
        .unwrap()
        .into_iter()
        .find(|s| s.name == step)
        .unwrap()
        .outputs[0]
        .content_hash
}

/// A corrupt object in the bucket: the load that finds it fails, the next run executes
/// the step again and its output replaces the corrupt object (it has the same name), so
/// the run after is cached and loads the right value, and `verify` finds nothing.
#[test]
fn a_corrupt_object_heals_in_one_run() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(locations) = metadata_locations(dir.path(), "corrupt_heals") else {
        return;
    };
    for (metadata, _db) in locations {
        let prefix = fresh_prefix("corrupt_heals").unwrap();
        let config = StoreConfig::new(&metadata, Some(&prefix)).unwrap();
        // Each handle with a read cache of its own, as on another machine.
        let open = |name: &str| {
            let options = StoreOptions {
                local_dir: Some(dir.path().join(format!("local-{name}"))),
                ..StoreOptions::default()
            };
            Store::connect_with(&config, options).unwrap()
        };
        let bucket = Bucket::of(&config);
        let store = open("1");
        let first = sum_of_squares(10)
            .store(store.clone())
            .run_name("first")
            .run()
            .unwrap();
        let hash = first.output().content_hash().unwrap();
        bucket.corrupt(hash);

        let store = open("2");
        let second = sum_of_squares(10).store(store.clone()).run().unwrap();
        assert_eq!(statuses(&second), [StepStatus::Cached; 2], "{metadata}");
        let err = second.output().load().unwrap_err();
        assert!(
            matches!(err, Error::BlobCorrupt { .. }),
            "{metadata}: {err:?}"
        );

        SUMS.store(0, SeqCst);
        let third = sum_of_squares(10).store(store.clone()).run().unwrap();
        assert_eq!(
            statuses(&third),
            [StepStatus::Cached, StepStatus::Executed],
            "{metadata}"
        );
        let reason = third.step("sum").unwrap().reason().to_string();
        assert!(reason.contains("corrupt"), "{metadata}: {reason}");
        assert_eq!(
            third.output().content_hash().unwrap(),
            hash,
            "same bytes, same name"
        );
        assert_eq!(third.output().load().unwrap(), 285, "{metadata}");

        // Another handle (an empty read cache): cached, and the object itself is intact.
        let store = open("3");
        let fourth = sum_of_squares(10).store(store.clone()).run().unwrap();
        assert_eq!(statuses(&fourth), [StepStatus::Cached; 2], "{metadata}");
        assert_eq!(fourth.output().load().unwrap(), 285, "{metadata}");
        assert_eq!(SUMS.load(SeqCst), 1, "{metadata}: healed in one execution");
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{metadata}: {:?}", report.problems);
    }
}

/// Two objects deleted behind the store's back: `verify` reports both and marks them, so
/// the next single run executes both steps again, instead of failing once per blob.
#[test]
fn after_verify_one_run_redoes_every_missing_blob() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(locations) = metadata_locations(dir.path(), "verify_marks") else {
        return;
    };
    for (metadata, _db) in locations {
        let prefix = fresh_prefix("verify_marks").unwrap();
        let config = StoreConfig::new(&metadata, Some(&prefix)).unwrap();
        let options = StoreOptions {
            local_dir: Some(dir.path().join("local")),
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&config, options).unwrap();
        sum_of_squares(12)
            .store(store.clone())
            .run_name("first")
            .run()
            .unwrap();
        let gone = [
            output_of(&store, "first", "squares"),
            output_of(&store, "first", "sum"),
        ];
        for hash in gone {
            assert!(store.artifact_store().delete(hash).unwrap());
        }
        let report = store.verify().unwrap();
        let missing = report
            .problems
            .iter()
            .filter(|p| matches!(p, pipeline::Problem::MissingBlob { .. }))
            .count();
        assert_eq!(missing, 2, "{metadata}: {:?}", report.problems);

        SQUARES.store(0, SeqCst);
        let again = sum_of_squares(12).store(store.clone()).run().unwrap();
        assert_eq!(
            statuses(&again),
            [StepStatus::Executed; 2],
            "{metadata}: one run redoes both"
        );
        assert_eq!(SQUARES.load(SeqCst), 1);
        assert_eq!(again.output().load().unwrap(), 506, "{metadata}");
        assert!(store.verify().unwrap().is_ok(), "{metadata}");
    }
}

/// Two PostgreSQL databases pointed at one S3 prefix: both run (content addressing makes
/// sharing bytes safe), but gc on either deletes nothing and says why.
#[test]
fn gc_of_a_store_sharing_its_prefix_deletes_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(db_a), Some(db_b), Some(prefix)) = (
        fresh_database("shared_prefix_a"),
        fresh_database("shared_prefix_b"),
        fresh_prefix("shared_prefix"),
    ) else {
        return;
    };
    let _ = service("PIPELINE_TEST_S3", "shared_prefix");
    let dir = tempfile::tempdir().unwrap();
    let open = |url: &str, name: &str| {
        let config = StoreConfig::new(url, Some(&prefix)).unwrap();
        let options = StoreOptions {
            local_dir: Some(dir.path().join(name)),
            ..StoreOptions::default()
        };
        Store::connect_with(&config, options).unwrap()
    };
    let (a, b) = (open(&db_a.url, "a"), open(&db_b.url, "b"));
    let from_b = sum_of_squares(10).store(b.clone()).run().unwrap();
    sum_of_squares(20).store(a.clone()).run().unwrap();
    let blobs = a.artifact_store().list().unwrap().len();
    // Per run: two outputs and the parameter's stored form (for workers and replays).
    assert_eq!(blobs, 6);
    let now = GcPolicy {
        keep_last: 0,
        min_blob_age: Duration::ZERO,
        ..GcPolicy::default()
    };
    for store in [&a, &b] {
        let err = store.gc(&now).unwrap_err();
        assert!(matches!(err, Error::SharedArtifacts { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&prefix) && message.contains("an artifact location of its own"),
            "{message}"
        );
        for url in [&db_a.url, &db_b.url] {
            let password = url::Url::parse(url).unwrap().password().map(str::to_string);
            if let Some(password) = password {
                assert!(!message.contains(&password), "no credentials: {message}");
            }
        }
    }
    assert_eq!(a.artifact_store().list().unwrap().len(), blobs);
    assert_eq!(a.runs(None).unwrap().len(), 1);
    assert_eq!(from_b.output().load().unwrap(), 285);
    assert!(b.verify().unwrap().is_ok());
}

/// Files named `name` under `dir`, recursively.
fn find_files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(find_files(&path, name));
        } else if entry.file_name() == name {
            out.push(path);
        }
    }
    out
}

/// A local read-cache copy whose bytes changed on disk is not the blob: the load drops it
/// and downloads the object again, and nothing is marked damaged (the next run is cached).
#[test]
fn a_tampered_read_cache_copy_is_downloaded_again_not_damage() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(locations) = metadata_locations(dir.path(), "tampered_copy") else {
        return;
    };
    for (metadata, _db) in locations {
        let prefix = fresh_prefix("tampered_copy").unwrap();
        let config = StoreConfig::new(&metadata, Some(&prefix)).unwrap();
        let local = tempfile::tempdir_in(dir.path()).unwrap();
        let options = StoreOptions {
            local_dir: Some(local.path().to_path_buf()),
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&config, options).unwrap();
        let first = sum_of_squares(30).store(store.clone()).run().unwrap();
        assert_eq!(first.output().load().unwrap(), 8555, "{metadata}");
        let hash = first.output().content_hash().unwrap();
        let copies = find_files(dir.path(), &hash.to_hex());
        assert_eq!(copies.len(), 1, "{metadata}: one cached copy: {copies:?}");
        let mut bytes = std::fs::read(&copies[0]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&copies[0], &bytes).unwrap();

        assert_eq!(
            first.output().load().unwrap(),
            8555,
            "{metadata}: the load downloads the blob again"
        );
        assert_ne!(
            std::fs::read(&copies[0]).unwrap(),
            bytes,
            "the copy is good again"
        );
        SUMS.store(0, SeqCst);
        let again = sum_of_squares(30).store(store.clone()).run().unwrap();
        assert_eq!(
            statuses(&again),
            [StepStatus::Cached; 2],
            "{metadata}: a bad local copy is no damage of the stored object"
        );
        assert_eq!(SUMS.load(SeqCst), 0);
    }
}

// `FileRef` and the `Files` cacher on S3: the files travel inside the blob, so another
// host (here: a handle with another local folder, the original files deleted) gets them.

#[step(cacher = pipeline::cacher::Files)]
fn export_model(dir: std::path::PathBuf) -> pipeline::cacher::FileRef {
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("weights.bin"), [1u8, 2, 3]).unwrap();
    std::fs::write(dir.join("config.json"), "{\"layers\": 2}").unwrap();
    pipeline::cacher::FileRef::new(dir)
}

#[step]
fn bytes_in(model: &pipeline::cacher::FileRef) -> u64 {
    std::fs::read_dir(model.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[pipeline]
fn exported_model(dir: std::path::PathBuf) -> Artifact<u64> {
    let model = export_model(dir);
    bytes_in(&model)
}

#[test]
fn files_travel_inside_their_blob_to_another_host() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(locations) = metadata_locations(dir.path(), "files_on_s3") else {
        return;
    };
    let Some(prefix) = fresh_prefix("files_on_s3") else {
        return;
    };
    for (i, (metadata, _db)) in locations.into_iter().enumerate() {
        let prefix = format!("{prefix}/{i}");
        let config = StoreConfig::new(&metadata, Some(&prefix)).unwrap();
        let handle = |local: &str| {
            let options = StoreOptions {
                local_dir: Some(dir.path().join(format!("{local}-{i}"))),
                ..StoreOptions::default()
            };
            Store::connect_with(&config, options).unwrap()
        };
        let out = dir.path().join(format!("model-{i}"));
        let first = exported_model(out.clone())
            .store(handle("host-a"))
            .run()
            .unwrap();
        assert_eq!(first.output().load().unwrap(), 16);
        std::fs::remove_dir_all(&out).unwrap();

        // Another host: a new local folder; the files come from the bucket.
        let other = handle("host-b");
        let second = exported_model(out.clone())
            .store(other.clone())
            .run()
            .unwrap();
        assert_eq!(
            second
                .steps()
                .iter()
                .map(|s| s.status())
                .collect::<Vec<_>>(),
            [StepStatus::Cached, StepStatus::Cached]
        );
        let run_id = second.id().to_string();
        let model = other
            .artifact(&run_id, "export_model", "output")
            .unwrap()
            .load_with(&pipeline::cacher::Files)
            .unwrap();
        assert!(
            !model.path().starts_with(&out),
            "{}",
            model.path().display()
        );
        assert!(
            model
                .path()
                .starts_with(dir.path().join(format!("host-b-{i}")))
                || model.path().exists()
        );
        assert_eq!(
            std::fs::read(model.path().join("weights.bin")).unwrap(),
            [1, 2, 3]
        );
        assert_eq!(
            std::fs::read_to_string(model.path().join("config.json")).unwrap(),
            "{\"layers\": 2}"
        );
    }
}
