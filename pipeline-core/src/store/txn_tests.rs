//! Store transactions: `begin_step`, the lease guard, lease tokens, and gc beside them.

use std::time::Duration;

use super::*;
use crate::status::StepStatus;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    (dir, path)
}

fn decl() -> crate::OutputDecl {
    crate::OutputDecl {
        name: "output".into(),
        type_name: "u32".into(),
        shape: String::new(),
        cacher: "bincode".into(),
        cacher_version: 1,
    }
}

/// Step `s` of run `run` with cache key `key` and one `u32` output.
fn step(run: &str, key: u128) -> StepStart {
    StepStart {
        run_id: run.into(),
        run_name: run.into(),
        name: "s".into(),
        step: "s".into(),
        position: 0,
        cache_key: Hash128(key),
        components: KeyComponents {
            format: 1,
            step: "s".into(),
            module: String::new(),
            code_signature: "0".into(),
            code_parts: Vec::new(),
            outputs: vec![decl()],
            inputs: vec![],
        },
        inputs: vec![],
        outputs: vec![decl()],
        not_before_us: None,
    }
}

fn begin_run(store: &Store, run: &str) {
    store
        .begin_run(run, "p", run, crate::time::now_micros())
        .unwrap();
}

fn claimed(begin: Begin) -> LeaseGuard {
    match begin {
        Begin::Claimed { lease, .. } => lease,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// Writes `value` as the step's output under `lease` (held before it is in place).
fn write_output(store: &Store, lease: &LeaseGuard, value: u32) -> StepOutput {
    let mut writer = store.blob_writer().unwrap();
    crate::Cacher::save(&crate::Bincode, &value, &mut writer).unwrap();
    let (hash, size) = store.finish_held_blob(writer, lease).unwrap();
    StepOutput {
        name: "output".into(),
        hash,
        size,
        type_name: "u32".into(),
        cacher: "bincode".into(),
        cacher_version: 1,
        metadata: None,
    }
}

fn executed(outputs: Vec<StepOutput>) -> Completion {
    Completion {
        details: Default::default(),
        status: StepStatus::Executed,
        reason: Some("first execution".into()),
        error: None,
        compared: None,
        duration: Duration::from_millis(3),
        outputs,
    }
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .lite()
        .db()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn step_status(store: &Store, run: &str) -> StepStatus {
    store.run_steps(run).unwrap()[0].status
}

#[test]
fn a_claim_is_a_running_row_until_its_commit_records_it_and_ends_the_lease_together() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    begin_run(&store, "r1");
    let lease = claimed(store.begin_step(&step("r1", 1)).unwrap());
    let steps = store.run_steps("r1").unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].status,
        StepStatus::Running,
        "watchable while it runs"
    );
    assert!(steps[0].started_at_us > 0);
    assert_eq!(lease.execution(), steps[0].execution_id);
    assert_eq!(count(&store, "leases"), 1);

    let output = write_output(&store, &lease, 42);
    assert_eq!(count(&store, "holds"), 1, "the lease holds its output");
    let id = lease.commit(executed(vec![output.clone()])).unwrap();
    assert_eq!(
        id, steps[0].execution_id,
        "the running row is completed, not added"
    );
    assert_eq!(step_status(&store, "r1"), StepStatus::Executed);
    assert_eq!(count(&store, "leases"), 0, "the lease ends in the commit");
    assert_eq!(count(&store, "holds"), 0, "and its holds with it");
    assert_eq!(count(&store, "executions"), 1);

    begin_run(&store, "r2");
    match store.begin_step(&step("r2", 1)).unwrap() {
        Begin::Hit {
            reused, outputs, ..
        } => {
            assert_eq!(reused, id);
            assert_eq!(outputs, vec![(output.hash, output.size)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.load::<u32>("r2", "s", "output").unwrap(), 42);
}

#[test]
fn a_dropped_guard_frees_its_key_at_once_and_fails_its_running_row() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    begin_run(&store, "r1");
    let lease = claimed(store.begin_step(&step("r1", 2)).unwrap());
    let output = write_output(&store, &lease, 7);
    drop(lease);
    assert_eq!(step_status(&store, "r1"), StepStatus::Failed);
    assert_eq!((count(&store, "leases"), count(&store, "holds")), (0, 0));
    begin_run(&store, "r2");
    let again = claimed(store.begin_step(&step("r2", 2)).unwrap());
    // Its output was never recorded: it is garbage now.
    let report = store
        .gc(&GcPolicy {
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.blobs_removed, 0, "r2 is running: {report:?}");
    drop(again);
    for run in ["r1", "r2"] {
        store
            .finish_run(run, RunStatus::Failed, Duration::ZERO)
            .unwrap();
    }
    let report = store
        .gc(&GcPolicy {
            min_blob_age: Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert!(!store.blob_path(output.hash).exists());
}

#[test]
fn another_handle_is_busy_until_the_holder_commits_then_hits() {
    let (_dir, path) = fresh();
    let a = Store::open(&path).unwrap();
    let b = Store::open(&path).unwrap();
    begin_run(&a, "ra");
    begin_run(&b, "rb");
    let lease = claimed(a.begin_step(&step("ra", 3)).unwrap());
    match b.begin_step(&step("rb", 3)).unwrap() {
        Begin::Busy(holder) => {
            assert_eq!((holder.run_id.as_str(), holder.step.as_str()), ("ra", "s"));
            assert_eq!(holder.owner, a.lite().owner_token());
        }
        other => panic!("{other:?}"),
    }
    let output = write_output(&a, &lease, 3);
    let id = lease.commit(executed(vec![output])).unwrap();
    assert!(matches!(
        b.begin_step(&step("rb", 3)).unwrap(),
        Begin::Hit { reused, .. } if reused == id
    ));
}

#[test]
fn a_lease_token_is_adopted_by_another_handle_that_beats_and_commits_it() {
    let (_dir, path) = fresh();
    let driver = Store::open(&path).unwrap();
    let worker = Store::open(&path).unwrap();
    begin_run(&driver, "run");
    let lease = claimed(driver.begin_step(&step("run", 4)).unwrap());
    let token: LeaseToken =
        serde_json::from_str(&serde_json::to_string(&lease.into_token()).unwrap()).unwrap();
    assert_eq!(count(&driver, "leases"), 1, "exporting keeps the claim");
    let adopted = worker.adopt_lease(token.clone()).unwrap();
    assert_eq!(adopted.lease().holder.owner, worker.lite().owner_token());
    // The driver's handle goes away (its lock is released): the key stays held, by the
    // worker, which is alive.
    drop(driver);
    let other = Store::open(&path).unwrap();
    begin_run(&other, "other");
    match other.begin_step(&step("other", 4)).unwrap() {
        Begin::Busy(holder) => assert_eq!(holder.owner, worker.lite().owner_token()),
        b => panic!("{b:?}"),
    }
    assert_eq!(worker.heartbeat().unwrap(), 1, "the worker beats it");
    // A token adopted once is spent.
    match other.adopt_lease(token).unwrap_err() {
        Error::LeaseLost { key, .. } => assert_eq!(key, Hash128(4).to_hex()),
        e => panic!("{e:?}"),
    }
    let output = write_output(&worker, &adopted, 4);
    let id = adopted.commit(executed(vec![output])).unwrap();
    assert_eq!(step_status(&other, "run"), StepStatus::Executed);
    assert!(matches!(
        other.begin_step(&step("other", 4)).unwrap(),
        Begin::Hit { reused, .. } if reused == id
    ));
}

#[test]
fn the_handles_heartbeat_keeps_a_claim_alive_past_its_ttl() {
    let (_dir, path) = fresh();
    let options = StoreOptions {
        lease_ttl: Duration::from_millis(600),
        ..StoreOptions::default()
    };
    let a = Store::open_with(&path, options.clone()).unwrap();
    let b = Store::open_with(&path, options).unwrap();
    begin_run(&a, "ra");
    begin_run(&b, "rb");
    let lease = claimed(a.begin_step(&step("ra", 5)).unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        matches!(b.begin_step(&step("rb", 5)).unwrap(), Begin::Busy(_)),
        "beaten every 200 ms, the claim has not expired"
    );
    // A claim nobody beats any more expires.
    let token = lease.into_token();
    std::thread::sleep(Duration::from_millis(1500));
    let taken = claimed(b.begin_step(&step("rb", 5)).unwrap());
    assert_eq!(step_status(&a, "ra"), StepStatus::Failed, "abandoned");
    assert!(matches!(
        a.adopt_lease(token).unwrap_err(),
        Error::LeaseLost { .. }
    ));
    drop(taken);
}

#[test]
fn gc_at_any_age_spares_what_running_runs_rely_on_and_removes_it_after() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    let now = GcPolicy {
        keep_last: 0,
        min_blob_age: Duration::ZERO,
        ..GcPolicy::default()
    };
    // An unreferenced blob with nothing running goes at once.
    let orphan = store.save_blob(&1u32, &crate::Bincode).unwrap();
    assert_eq!(store.gc(&now).unwrap().blobs_removed, 1);
    assert!(!store.blob_path(orphan).exists());

    // r1 computes a blob; r2 starts, and may have found it as a hit it has not recorded.
    begin_run(&store, "r1");
    let lease = claimed(store.begin_step(&step("r1", 6)).unwrap());
    let output = write_output(&store, &lease, 6);
    lease.commit(executed(vec![output.clone()])).unwrap();
    store
        .finish_run("r1", RunStatus::Completed, Duration::ZERO)
        .unwrap();
    begin_run(&store, "r2");
    let report = store.gc(&now).unwrap();
    assert_eq!(report.runs_removed, ["r1"]);
    assert_eq!(report.blobs_removed, 0, "r2 may rely on it: {report:?}");
    assert!(store.blob_path(output.hash).exists());
    // A run that starts after the blob lost its last reference cannot have found it.
    store
        .finish_run("r2", RunStatus::Completed, Duration::ZERO)
        .unwrap();
    begin_run(&store, "r3");
    let report = store.gc(&now).unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert!(!store.blob_path(output.hash).exists());

    // A blob a lease holds stays even when its run no longer counts as running.
    let lease = claimed(store.begin_step(&step("r3", 7)).unwrap());
    let held = write_output(&store, &lease, 7);
    store
        .finish_run("r3", RunStatus::Failed, Duration::ZERO)
        .unwrap();
    assert_eq!(store.gc(&now).unwrap().blobs_removed, 0);
    assert!(store.blob_path(held.hash).exists());
    drop(lease);
    assert_eq!(store.gc(&now).unwrap().blobs_removed, 1);
}

/// A fresh SQLite store in a temporary directory, for the metadata contract.
struct SqliteFixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    blobs: Store,
}

impl contract::MetadataFixture for SqliteFixture {
    fn open(&self) -> std::sync::Arc<dyn MetadataStore> {
        Store::open(&self.path).unwrap().metadata_store()
    }

    fn put_blob(&self, bytes: &[u8]) -> (Hash128, u64) {
        use std::io::Write;
        let mut writer = self.blobs.blob_writer().unwrap();
        writer.write_all(bytes).unwrap();
        self.blobs.finish_blob(writer).unwrap()
    }
}

#[test]
fn sqlite_passes_the_metadata_contract() {
    contract::metadata(|| {
        let (dir, path) = fresh();
        let blobs = Store::open(&path).unwrap();
        SqliteFixture {
            _dir: dir,
            path,
            blobs,
        }
    });
}
