//! Store-level faults: schema migrations, foreign and newer stores, read-only handles,
//! locks, purpose-damaged stores found by `verify`.

use std::fs;
use std::time::Duration;

use rusqlite::{params, Connection};

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
        store
            .lite()
            .db()
            .execute("SELECT count(*) FROM leases", [])
            .ok();
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
        message.contains("schema 99")
            && message.contains(&format!("newer than {}", schema::current_version())),
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
    // Refused writable opens create nothing, not even the blob folder.
    for refused in [&random, &foreign, &odd] {
        assert!(!refused.join("artifacts").exists(), "{}", refused.display());
    }
    assert_eq!(
        fs::read_dir(&foreign).unwrap().count(),
        1,
        "only metadata.sqlite"
    );
}

/// Every file and directory under `dir`, with the bytes of each file, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push((path.clone(), None));
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), Some(fs::read(&path).unwrap())));
        }
    }
    out.sort();
    out
}

fn read_only() -> StoreOptions {
    StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    }
}

#[test]
fn refuses_a_negative_user_version_and_changes_nothing() {
    // As found: a SQLite file with `user_version` -1 (here also with tables, and with our
    // application id), opened writable and read-only.
    for (version, tables, app_id) in [
        (-1, false, 0),
        (-1, true, 0),
        (i64::from(i32::MIN), false, schema::APPLICATION_ID),
    ] {
        let (_dir, path) = fresh();
        fs::create_dir_all(&path).unwrap();
        let conn = Connection::open(path.join("metadata.sqlite")).unwrap();
        if tables {
            conn.execute_batch("CREATE TABLE songs(title TEXT)")
                .unwrap();
        }
        conn.pragma_update(None, "user_version", version).unwrap();
        conn.pragma_update(None, "application_id", app_id).unwrap();
        drop(conn);
        let before = snapshot(&path);
        for options in [StoreOptions::default(), read_only()] {
            let err = Store::open_with(&path, options).unwrap_err();
            assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("schema version {version}"))
                    && message.contains("never writes"),
                "{message}"
            );
            assert_eq!(snapshot(&path), before, "nothing changed");
        }
        // Not switched to WAL: bytes 18 and 19 of the header are 1 in rollback mode.
        let bytes = fs::read(path.join("metadata.sqlite")).unwrap();
        assert_eq!(&bytes[18..20], &[1, 1]);
    }
}

#[test]
fn a_negative_user_version_still_in_the_wal_is_refused_too() {
    // The main file's header says 0; the -1 sits in the WAL of a connection kept open, so
    // only the check through SQLite can see it.
    let (_dir, path) = fresh();
    fs::create_dir_all(&path).unwrap();
    let db = path.join("metadata.sqlite");
    let conn = Connection::open(&db).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "user_version", -1).unwrap();
    let main_file = fs::read(&db).unwrap();
    assert_eq!(
        &main_file[60..64],
        &[0, 0, 0, 0],
        "the -1 is not in the main file"
    );
    let names = || {
        let mut names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let listing = names();
    let err = Store::open(&path).unwrap_err();
    assert!(err.to_string().contains("schema version -1"), "{err}");
    assert_eq!(fs::read(&db).unwrap(), main_file);
    assert_eq!(names(), listing, "no blob folder");
    drop(conn);
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
    assert_eq!(hash.to_string(), expected);
    drop(store);
    // Reopened with default options, the store keeps its algorithm.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.content_hash_algorithm(), ContentHash::Blake3);
    let back: String = store.load_blob(hash, &crate::Json).unwrap();
    assert_eq!(back, "hello");
}

#[test]
fn verify_reports_each_kind_of_damage() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    let h1 = store.save_blob(&vec![1u8, 2, 3], &crate::Bincode).unwrap();
    let h2 = store.save_blob(&vec![4u8, 5, 6], &crate::Bincode).unwrap();
    let components = KeyComponents {
        format: 1,
        step: "s".into(),
        module: String::new(),
        code_signature: "0".into(),
        code_parts: Vec::new(),
        outputs: vec![crate::OutputDecl {
            name: "output".into(),
            type_name: "Vec<u8>".into(),
            shape: String::new(),
            cacher: "bincode".into(),
            cacher_version: 1,
        }],
        inputs: vec![],
    };
    store.begin_run("run", "p", "run", 0).unwrap();
    let row = |hash: Option<Hash128>, run: &'static str| ExecutionRow {
        details: Default::default(),
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
        compared: None,
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
        outputs_of: None,
        lease_holder: None,
    };
    store
        .record(&[row(Some(h1), "run"), row(Some(h2), "run"), row(None, "run")])
        .unwrap();
    // Foreign keys keep orphans out of a healthy store; make one by hand.
    store
        .lite()
        .db()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .unwrap();
    store.record(&[row(Some(h1), "gone")]).unwrap();
    store
        .lite()
        .db()
        .execute_batch("PRAGMA foreign_keys = ON")
        .unwrap();
    store
        .finish_run("run", RunStatus::Completed, Duration::ZERO)
        .unwrap();
    // Blobs saved by hand have no sidecar; repair writes them from the recorded rows.
    let report = store.repair().unwrap();
    assert_eq!(report.repaired.len(), 2, "{report:?}");
    assert!(report
        .repaired
        .iter()
        .all(|p| matches!(p, Problem::MissingSidecar { .. })));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(store.blob_path(h2).with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["content_hash"], h2.to_hex());
    assert_eq!(sidecar["type"], "Vec<u8>");
    assert_eq!(sidecar["produced_by"]["run_id"], "run");
    assert_eq!(sidecar["produced_by"]["cache_key"], Hash128(7).to_hex());
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
        .lite()
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
            Problem::MissingSidecar { .. } | Problem::CorruptSidecar { .. } => "sidecar",
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

/// A store whose leases live an hour without a heartbeat: a test that finishes did not
/// wait one out.
fn with_hour_long_leases(path: &Path) -> Store {
    Store::open_with(
        path,
        StoreOptions {
            lease_ttl: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// Records run `run` and its lease on `key` as the process with owner token `owner`
/// (pid 4242 on this host) would, with a fresh heartbeat.
fn lease_held_by(store: &Store, owner: &str, run: &str, key: Hash128) {
    let host = liveness::host_name();
    let conn = store.lite().db();
    conn.execute(
        "INSERT INTO runs(id, pipeline, name, status, started_at_us, pid, owner, host) \
         VALUES (?1, 'p', ?1, 'running', 0, 4242, ?2, ?3)",
        params![run, owner, host],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO leases(cache_key, run_id, step, host, pid, owner, heartbeat_us) \
         VALUES (?1, ?2, 's', ?3, 4242, ?4, ?5)",
        params![key.to_hex(), run, host, owner, crate::time::now_micros()],
    )
    .unwrap();
}

fn run_status(store: &Store, run: &str) -> String {
    store
        .lite()
        .db()
        .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
        .unwrap()
}

fn leases(store: &Store) -> i64 {
    store
        .lite()
        .db()
        .query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
        .unwrap()
}

/// Claims `key` for step `s` of run `mine` in `store`.
fn claim(store: &Store, key: Hash128) -> Begin {
    let components = KeyComponents {
        format: 1,
        step: "s".into(),
        module: String::new(),
        code_parts: Vec::new(),
        code_signature: "0".into(),
        outputs: vec![],
        inputs: vec![],
    };
    if run_exists(store, "mine") == 0 {
        store.begin_run("mine", "p", "mine", 0).unwrap();
    }
    let row = ExecutionRow {
        details: Default::default(),
        run_id: "mine",
        name: "s",
        step: "s",
        position: 0,
        status: StepStatus::Cached,
        cache_key: Some(key),
        components: &components,
        reason: None,
        error: None,
        reused: None,
        started_at_us: 0,
        duration: Duration::ZERO,
        outputs: vec![],
        inputs: vec![],
        outputs_of: None,
        lease_holder: None,
        compared: None,
    };
    let holder = store.lite().holder("mine", "mine", "s");
    store
        .lite()
        .begin_step_row(key, &row, &[], &holder, None)
        .unwrap()
}

fn run_exists(store: &Store, run: &str) -> i64 {
    store
        .lite()
        .db()
        .query_row("SELECT count(*) FROM runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn a_dead_holders_lease_is_taken_over_at_once() {
    let (_dir, path) = fresh();
    let store = with_hour_long_leases(&path);
    // A process that locked its file and died: the file is there, its lock is free.
    let dead = liveness::token_of_another_process(4242);
    drop(liveness::hold_as_another_process(
        &store.lite().tmp_dir(),
        &dead,
    ));
    lease_held_by(&store, &dead, "dead-run", Hash128(1));

    let begun = claim(&store, Hash128(1));
    assert!(
        matches!(begun, Begin::Claimed { .. }),
        "a fresh heartbeat does not keep a dead holder's lease"
    );
    assert_eq!(run_status(&store, "dead-run"), "failed");
    let holder: String = store
        .lite()
        .db()
        .query_row("SELECT run_id FROM leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(holder, "mine");
    assert!(
        store.verify().unwrap().is_ok(),
        "the dead lock file was taken away with the lease"
    );
}

#[test]
fn a_live_holders_lease_and_run_are_left_alone() {
    let (_dir, path) = fresh();
    let store = with_hour_long_leases(&path);
    let live = liveness::token_of_another_process(4242);
    let lock = liveness::hold_as_another_process(&store.lite().tmp_dir(), &live);
    lease_held_by(&store, &live, "live-run", Hash128(2));

    match claim(&store, Hash128(2)) {
        Begin::Busy(holder) => {
            assert_eq!((holder.run_id.as_str(), holder.pid), ("live-run", 4242));
            assert_eq!(holder.owner, live);
            assert!(holder.to_string().contains("(pid 4242 on "), "{holder}");
        }
        _ => panic!("a live holder's key was taken"),
    }
    // Neither recovery (a writable open) nor verify touches what a live process owns.
    let other = Store::open(&path).unwrap();
    assert_eq!(run_status(&other, "live-run"), "running");
    assert_eq!(leases(&other), 1);
    assert!(other.verify().unwrap().is_ok(), "a live run is no problem");

    // Once that process ends, the next claim takes the key at once.
    drop(lock);
    assert!(matches!(claim(&store, Hash128(2)), Begin::Claimed { .. }));
    assert_eq!(run_status(&store, "live-run"), "failed");
}

#[test]
fn reopening_recovers_the_leases_and_runs_of_dead_processes() {
    let (_dir, path) = fresh();
    let store = with_hour_long_leases(&path);
    let dead = liveness::token_of_another_process(4242);
    let lock = liveness::hold_as_another_process(&store.lite().tmp_dir(), &dead);
    lease_held_by(&store, &dead, "dead-run", Hash128(3));
    // A blob it was writing when it died.
    let tmp = store.lite().tmp_dir().join(format!("{dead}-0.tmp"));
    fs::write(&tmp, b"half").unwrap();
    drop(lock);
    let report = store.verify().unwrap();
    assert!(
        report.problems.contains(&Problem::InterruptedRun {
            run: "dead-run".into()
        }) && report
            .problems
            .contains(&Problem::LeftoverTempFile { path: tmp.clone() }),
        "{:?}",
        report.problems
    );

    let reopened = with_hour_long_leases(&path);
    assert_eq!(run_status(&reopened, "dead-run"), "failed");
    assert_eq!(leases(&reopened), 0, "the dead holder's lease is gone");
    assert!(!tmp.exists());
    assert!(reopened.verify().unwrap().is_ok());
    // And its key is free at once.
    assert!(matches!(
        claim(&reopened, Hash128(3)),
        Begin::Claimed { .. }
    ));
}

#[test]
fn each_writable_handle_holds_a_lock_file_while_it_lives() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    let token = store.lite().owner_token().to_string();
    let lock_file = store.lite().tmp_dir().join(format!("{token}-owner.lock"));
    assert!(lock_file.exists());
    let read_only = Store::open_with(
        &path,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        read_only.lite().owner_token(),
        "",
        "a read-only handle writes nothing"
    );
    assert_eq!(
        read_only.lite().liveness(&token, None, false),
        liveness::Liveness::Alive
    );
    drop(store);
    assert!(!lock_file.exists(), "removed when the handle is dropped");
    assert_eq!(
        read_only.lite().liveness(&token, None, false),
        liveness::Liveness::Dead
    );
}

/// The holder `lease_held_by` records for `run`.
fn holder_of(store: &Store, run: &str, owner: &str) -> Holder {
    Holder {
        owner: owner.to_string(),
        ..store.lite().holder(run, run, "s")
    }
}

#[test]
fn still_held_tells_in_one_check_which_waited_keys_their_holders_still_hold() {
    let (_dir, path) = fresh();
    let store = with_hour_long_leases(&path);
    let live = liveness::token_of_another_process(4242);
    let _lock = liveness::hold_as_another_process(&store.lite().tmp_dir(), &live);
    let dead = liveness::token_of_another_process(4343);
    drop(liveness::hold_as_another_process(
        &store.lite().tmp_dir(),
        &dead,
    ));
    lease_held_by(&store, &live, "live-run", Hash128(10));
    lease_held_by(&store, &dead, "dead-run", Hash128(11));
    lease_held_by(&store, &live, "other-run", Hash128(12));
    let live_holder = holder_of(&store, "live-run", &live);
    let dead_holder = holder_of(&store, "dead-run", &dead);

    let held = store
        .still_held(&[
            (Hash128(10), &live_holder),
            (Hash128(11), &dead_holder),
            // Committed or released: no lease any more.
            (Hash128(13), &live_holder),
            // Now held by someone else than the one waited for: decide again.
            (Hash128(12), &live_holder),
        ])
        .unwrap();
    assert_eq!(held, [true, false, false, false]);
    assert!(store.still_held(&[]).unwrap().is_empty());

    // A lease whose heartbeat is older than the TTL is no longer held.
    let short = Store::open_with(
        &path,
        StoreOptions {
            lease_ttl: Duration::from_millis(1),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        short.still_held(&[(Hash128(10), &live_holder)]).unwrap(),
        [false]
    );
}

#[test]
fn a_handle_beats_all_its_leases_at_once_and_its_guards_release_only_their_own() {
    let (_dir, path) = fresh();
    let store = with_hour_long_leases(&path);
    let guards: Vec<Begin> = [20, 21, 22]
        .into_iter()
        .map(|key| claim(&store, Hash128(key)))
        .collect();
    assert!(guards.iter().all(|b| matches!(b, Begin::Claimed { .. })));
    let other = liveness::token_of_another_process(4242);
    let _lock = liveness::hold_as_another_process(&store.lite().tmp_dir(), &other);
    lease_held_by(&store, &other, "other-run", Hash128(23));
    let beats = |store: &Store| -> Vec<i64> {
        store
            .lite()
            .db()
            .prepare("SELECT heartbeat_us FROM leases ORDER BY cache_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    store
        .lite()
        .db()
        .execute("UPDATE leases SET heartbeat_us = 1", [])
        .unwrap();

    assert_eq!(store.heartbeat().unwrap(), 3);
    let after = beats(&store);
    assert_eq!(after.iter().filter(|&&b| b > 1).count(), 3, "{after:?}");
    assert_eq!(after.iter().filter(|&&b| b == 1).count(), 1, "{after:?}");

    drop(guards);
    let holders: Vec<String> = store
        .lite()
        .db()
        .prepare("SELECT run_id FROM leases")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(holders, ["other-run"]);
}

#[test]
fn hash_algorithm_names_round_trip_and_unknown_ones_are_errors() {
    for kind in ContentHash::ALL {
        assert_eq!(kind.to_string().parse::<ContentHash>(), Ok(kind));
    }
    assert_eq!(ContentHash::Blake3.to_string(), "blake3-128");
    let err = "sha256".parse::<ContentHash>().unwrap_err();
    assert_eq!((err.what(), err.value()), ("hash algorithm", "sha256"));
}

#[test]
fn a_store_of_schema_8_migrates_to_the_current_schema_and_keeps_logs_with_their_execution() {
    let (_dir, path) = fresh();
    store_at_version(&path, 8);
    {
        let conn = Connection::open(path.join("metadata.sqlite")).unwrap();
        conn.execute(
            "INSERT INTO executions(id, run_id, name, step, position, status, code_signature, \
             components, started_at_us, duration_s) \
             VALUES (1, 'r1', 'talk', 'talk', 0, 'failed', '00', '{}', 1, 0.1)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::current_version());
    assert!(store.execution_logs(1).unwrap().is_empty());
    let kept = store
        .keep_logs(
            1,
            &[
                (LogStream::Stdout, b"said\n".as_slice(), 5),
                (LogStream::Stderr, b"the end".as_slice(), 100),
            ],
        )
        .unwrap();
    let logs = store.execution_logs(1).unwrap();
    assert_eq!(logs, kept);
    assert_eq!(
        logs.iter().map(|l| l.stream).collect::<Vec<_>>(),
        [LogStream::Stdout, LogStream::Stderr]
    );
    assert!(!logs[0].truncated());
    assert!(logs[1].truncated(), "100 bytes written, 7 kept");
    assert_eq!(store.read_log(&logs[1]).unwrap(), b"the end");
    assert!(store.verify().unwrap().is_ok());
    // Kept again (a retried job): replaced, not doubled.
    store
        .keep_logs(1, &[(LogStream::Stdout, b"again\n".as_slice(), 6)])
        .unwrap();
    let again = store.execution_logs(1).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(store.read_log(&again[0]).unwrap(), b"again\n");
    // gc removes them with their execution's run.
    let report = store
        .gc(&GcPolicy {
            keep_last: 0,
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.runs_removed, ["old-run"]);
    assert!(store.execution_logs(1).unwrap().is_empty());
    assert!(matches!(
        store.read_log(&logs[1]),
        Err(Error::BlobMissing { .. })
    ));
}
