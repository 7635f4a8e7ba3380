//! Store-level faults: schema migrations, foreign and newer stores, read-only handles,
//! locks, purpose-damaged stores found by `verify`.

use std::fs;
use std::time::Duration;

use rusqlite::Connection;

use super::*;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    (dir, path)
}

/// A database at schema `version`, built by applying the first `version` migrations, with
/// one run recorded the way that version recorded runs.
fn store_at_version(path: &Path, version: usize) {
    fs::create_dir_all(path.join("artifacts")).unwrap();
    let conn = Connection::open(path.join("metadata.sqlite")).unwrap();
    for sql in &schema::MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", version as i64)
        .unwrap();
    conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .unwrap();
    conn.execute(
        "INSERT INTO runs(id, pipeline, name, status, started_at_us, duration_s) \
         VALUES ('r1', 'old', 'old-run', 'completed', 1, 0.5)",
        [],
    )
    .unwrap();
}

#[test]
fn migrates_from_every_earlier_version() {
    for version in 1..schema::current_version() as usize {
        let (_dir, path) = fresh();
        store_at_version(&path, version);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::current_version());
        let runs = store.runs(None).unwrap();
        assert_eq!(runs.len(), 1, "data kept when migrating from {version}");
        assert_eq!(runs[0].name, "old-run");
        assert_eq!(store.content_hash_algorithm(), ContentHash::Xxh3);
        // And it is usable: the new tables exist.
        store.db().execute("SELECT count(*) FROM leases", []).ok();
        assert!(store.verify().unwrap().is_ok());
    }
}

#[test]
fn refuses_a_newer_store_and_names_both_versions() {
    let (_dir, path) = fresh();
    Store::open(&path).unwrap();
    let conn = Connection::open(path.join("metadata.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let before = fs::read(path.join("metadata.sqlite")).unwrap();
    let err = Store::open(&path).unwrap_err();
    match &err {
        Error::StoreTooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, schema::current_version())),
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("schema 99") && message.contains("newer than 2"),
        "{message}"
    );
    assert_eq!(
        fs::read(path.join("metadata.sqlite")).unwrap(),
        before,
        "left unchanged"
    );
}

#[test]
fn refuses_things_that_are_not_stores() {
    let (dir, path) = fresh();
    // A plain file (empty or not) where the store directory should be.
    fs::write(&path, b"").unwrap();
    assert!(matches!(Store::open(&path), Err(Error::NotAStore { .. })));
    // Random bytes as metadata.sqlite.
    let random = dir.path().join("random");
    fs::create_dir_all(&random).unwrap();
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(random.join("metadata.sqlite"), &bytes).unwrap();
    let err = Store::open(&random).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(
        fs::read(random.join("metadata.sqlite")).unwrap(),
        bytes,
        "untouched"
    );
    // A directory of other files.
    let other = dir.path().join("photos");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let err = Store::open(&other).unwrap_err();
    assert!(err.to_string().contains("non-empty directory"), "{err}");
    assert!(!other.join("metadata.sqlite").exists(), "nothing created");
    // metadata.sqlite as a directory.
    let odd = dir.path().join("odd");
    fs::create_dir_all(odd.join("metadata.sqlite")).unwrap();
    assert!(matches!(Store::open(&odd), Err(Error::NotAStore { .. })));
    // Another application's SQLite database.
    let foreign = dir.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    let conn = Connection::open(foreign.join("metadata.sqlite")).unwrap();
    conn.execute_batch("CREATE TABLE songs(title TEXT)")
        .unwrap();
    drop(conn);
    let err = Store::open(&foreign).unwrap_err();
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn read_only_handles_refuse_writes_and_change_nothing() {
    let (_dir, path) = fresh();
    Store::open(&path).unwrap();
    let ro = Store::open_with(
        &path,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert!(ro.runs(None).unwrap().is_empty());
    let err = ro.save_blob(&1u32, &crate::Bincode).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = ro.begin_run("x", "p", "n", 0).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    // A read-only open of a missing store does not create it.
    let (_d2, missing) = fresh();
    assert!(Store::open_with(
        &missing,
        StoreOptions {
            read_only: true,
            ..Default::default()
        }
    )
    .is_err());
    assert!(!missing.exists());
}

#[test]
fn a_lock_held_beyond_the_busy_timeout_is_store_locked() {
    let (_dir, path) = fresh();
    let store = Store::open_with(
        &path,
        StoreOptions {
            busy_timeout: Duration::from_millis(100),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let other = Connection::open(path.join("metadata.sqlite")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store.begin_run("id", "p", "name", 0).unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    store.begin_run("id", "p", "name", 0).unwrap();
    assert_eq!(store.runs(None).unwrap().len(), 1);
}

#[test]
fn blake3_stores_name_blobs_by_blake3_and_remember_it() {
    let (_dir, path) = fresh();
    let store = Store::open_with(
        &path,
        StoreOptions {
            content_hash: ContentHash::Blake3,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let hash = store.save_blob(&"hello".to_string(), &crate::Json).unwrap();
    let mut bytes = Vec::new();
    crate::Cacher::<String>::save(&crate::Json, &"hello".to_string(), &mut bytes).unwrap();
    let expected = &blake3::hash(&bytes).to_hex()[..32];
    assert_eq!(hash, expected);
    drop(store);
    // Reopened with default options, the store keeps its algorithm.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.content_hash_algorithm(), ContentHash::Blake3);
    let back: String = store.load_blob(&hash, &crate::Json).unwrap();
    assert_eq!(back, "hello");
}

#[test]
fn verify_reports_each_kind_of_damage() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    let h1 =
        Hash128::from_hex(&store.save_blob(&vec![1u8, 2, 3], &crate::Bincode).unwrap()).unwrap();
    let h2 =
        Hash128::from_hex(&store.save_blob(&vec![4u8, 5, 6], &crate::Bincode).unwrap()).unwrap();
    let components = KeyComponents {
        format: 1,
        step: "s".into(),
        module: String::new(),
        code_signature: "0".into(),
        code_parts: Vec::new(),
        outputs: vec![crate::OutputDecl {
            name: "output".into(),
            type_name: "Vec<u8>".into(),
            cacher: "bincode".into(),
            cacher_version: 1,
        }],
        inputs: vec![],
    };
    store.begin_run("run", "p", "run", 0).unwrap();
    let row = |hash: Option<Hash128>, run: &'static str| ExecutionRow {
        run_id: run,
        name: "s",
        step: "s",
        position: 0,
        status: StepStatus::Executed,
        cache_key: Some(Hash128(7)),
        components: &components,
        reason: None,
        error: None,
        reused: None,
        started_at_us: 0,
        duration: Duration::ZERO,
        outputs: hash
            .map(|h| OutputRow {
                name: "output".into(),
                hash: h,
                size: 4,
                type_name: "Vec<u8>".into(),
                cacher: "bincode".into(),
                cacher_version: 1,
                metadata: None,
            })
            .into_iter()
            .collect(),
        inputs: vec![],
        lease_holder: None,
    };
    store
        .record(&[row(Some(h1), "run"), row(Some(h2), "run"), row(None, "run")])
        .unwrap();
    // Foreign keys keep orphans out of a healthy store; make one by hand.
    store
        .db()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .unwrap();
    store.record(&[row(Some(h1), "gone")]).unwrap();
    store
        .db()
        .execute_batch("PRAGMA foreign_keys = ON")
        .unwrap();
    store
        .finish_run("run", RunStatus::Completed, Duration::ZERO)
        .unwrap();
    assert_eq!(
        store.verify().unwrap().problems.len(),
        2,
        "incomplete + orphan only"
    );

    fs::remove_file(store.blob_path(h2)).unwrap();
    let p1 = store.blob_path(h1);
    let mut bytes = fs::read(&p1).unwrap();
    bytes[1] ^= 0xff;
    fs::write(&p1, bytes).unwrap();
    fs::write(path.join("artifacts/tmp/999999999-1-0.tmp"), b"half").unwrap();
    store
        .db()
        .execute(
            "INSERT INTO runs(id, pipeline, name, status, started_at_us, pid) \
             VALUES ('dead', 'p', 'dead', 'running', 0, 999999999)",
            [],
        )
        .unwrap();

    let report = store.verify().unwrap();
    let kinds: Vec<&str> = report
        .problems
        .iter()
        .map(|p| match p {
            Problem::MissingBlob { .. } => "missing",
            Problem::CorruptBlob { .. } => "corrupt",
            Problem::IncompleteExecution { .. } => "incomplete",
            Problem::OrphanExecution { .. } => "orphan",
            Problem::InterruptedRun { .. } => "interrupted",
            Problem::LeftoverTempFile { .. } => "temp",
        })
        .collect();
    for kind in [
        "missing",
        "corrupt",
        "incomplete",
        "orphan",
        "interrupted",
        "temp",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} not reported: {:?}",
            report.problems
        );
    }

    // Reopening recovers what belongs to dead processes.
    drop(store);
    let store = Store::open(&path).unwrap();
    let kinds: Vec<_> = store.verify().unwrap().problems;
    assert!(
        !kinds.iter().any(|p| matches!(
            p,
            Problem::InterruptedRun { .. } | Problem::LeftoverTempFile { .. }
        )),
        "{kinds:?}"
    );
}
