//! Contract test suites for the backend seams: every implementation runs the same checks.
//!
//! [`metadata`] takes a factory of fresh backends. SQLite runs it in this crate's tests
//! (`sqlite_passes_the_metadata_contract`); a PostgreSQL backend calls the same function
//! from its own tests:
//!
//! ```text
//! #[test]
//! fn postgres_passes_the_metadata_contract() {
//!     pipeline_core::store::contract::metadata(|| PgFixture::new(&url));
//! }
//! ```
//!
//! A check that fails panics with a message naming the check and what differed, as a
//! test assertion does.

use std::sync::Arc;
use std::time::Duration;

use super::guard::{Completion, LeaseGuard, StepOutput};
use super::lease::Begin;
use super::metadata::{MetadataStore, RunStart, StepStart};
use super::RunStatus;
use crate::error::Error;
use crate::key::{Hash128, KeyComponents, OutputDecl};
use crate::status::StepStatus;

/// One fresh, empty backend for one check of [`metadata`].
pub trait MetadataFixture {
    /// A new handle on this backend, as another process would open it: its own owner
    /// identity, its own leases and heartbeat.
    fn open(&self) -> Arc<dyn MetadataStore>;

    /// Puts `bytes` into the artifact store that goes with the backend, so that an
    /// execution can reference them; returns their content hash and size.
    fn put_blob(&self, bytes: &[u8]) -> (Hash128, u64);
}

/// One check of the contract, on a fresh backend.
type Check = fn(&dyn MetadataFixture);

/// Runs every metadata check against backends made by `fresh` (one fresh backend per
/// check).
///
/// # Panics
///
/// When the backend breaks the contract, with a message naming the check.
pub fn metadata<F: MetadataFixture>(fresh: impl Fn() -> F) {
    let checks: [(&str, Check); 8] = [
        (
            "a claim is running until its commit",
            claim_running_commit_hit,
        ),
        ("a held key is busy for other handles", busy_until_released),
        (
            "handles racing for one key: exactly one claims it",
            racing_handles_claim_once,
        ),
        ("a dropped guard releases its key", drop_releases),
        ("still_held follows the lease", still_held_follows_the_lease),
        ("a token is adopted once", token_adoption),
        ("a heartbeat beats the handle's leases", heartbeat_counts),
        ("queries see runs, executions and lineage", queries),
    ];
    for (name, check) in checks {
        let fixture = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&fixture)));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("metadata contract, check `{name}`: {message}");
        }
    }
}

/// The one output every step of the contract declares.
pub(crate) fn decl() -> OutputDecl {
    OutputDecl {
        name: "output".into(),
        type_name: "u32".into(),
        shape: String::new(),
        cacher: "bincode".into(),
        cacher_version: 1,
    }
}

/// Step `s` of run `run`, with cache key `key` and no inputs.
pub(crate) fn step(run: &str, key: u128) -> StepStart {
    StepStart {
        run_id: run.into(),
        run_name: format!("{run}-name"),
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

/// Begins run `run` (named `<run>-name`) on `handle`.
pub(crate) fn start(handle: &dyn MetadataStore, run: &str) {
    handle
        .begin_run(&RunStart {
            id: run.into(),
            pipeline: "contract".into(),
            name: format!("{run}-name"),
            started_at_us: crate::time::now_micros(),
        })
        .expect("begin_run");
}

/// Claims `key` for run `run` on `handle`, which must find it free.
pub(crate) fn claim(handle: &dyn MetadataStore, run: &str, key: u128) -> LeaseGuard {
    match handle.begin_step(&step(run, key)).expect("begin_step") {
        Begin::Claimed { lease, damaged } => {
            assert_eq!(damaged, None, "a fresh key has no damaged execution");
            lease
        }
        other => panic!("expected Claimed, got {other:?}"),
    }
}

/// An executed completion whose one output holds `value`, put in the fixture's blobs.
pub(crate) fn executed(fixture: &dyn MetadataFixture, value: u32) -> Completion {
    let (hash, size) = fixture.put_blob(&value.to_le_bytes());
    Completion {
        details: Default::default(),
        status: StepStatus::Executed,
        reason: Some("first execution".into()),
        error: None,
        compared: None,
        duration: Duration::from_millis(1),
        outputs: vec![StepOutput {
            name: "output".into(),
            hash,
            size,
            type_name: "u32".into(),
            cacher: "bincode".into(),
            cacher_version: 1,
            metadata: None,
        }],
    }
}

fn status(handle: &dyn MetadataStore, run: &str) -> StepStatus {
    let steps = handle.run_steps(run).expect("run_steps");
    assert_eq!(steps.len(), 1, "one execution row per step: {steps:?}");
    steps[0].status
}

fn claim_running_commit_hit(fixture: &dyn MetadataFixture) {
    let h = fixture.open();
    start(&*h, "r1");
    let lease = claim(&*h, "r1", 1);
    assert_eq!(status(&*h, "r1"), StepStatus::Running);
    let done = executed(fixture, 1);
    let hash = done.outputs[0].hash;
    let id = lease.commit(done).expect("commit");
    assert_eq!(status(&*h, "r1"), StepStatus::Executed);
    assert_eq!(h.run_steps("r1").unwrap()[0].execution_id, id);
    start(&*h, "r2");
    match h.begin_step(&step("r2", 1)).expect("begin_step") {
        Begin::Hit {
            reused, outputs, ..
        } => {
            assert_eq!(reused, id, "reuses the committed execution");
            assert_eq!(outputs, vec![(hash, 4)]);
        }
        other => panic!("expected Hit, got {other:?}"),
    }
    assert_eq!(status(&*h, "r2"), StepStatus::Cached);
}

fn busy_until_released(fixture: &dyn MetadataFixture) {
    let (a, b) = (fixture.open(), fixture.open());
    start(&*a, "ra");
    start(&*b, "rb");
    let lease = claim(&*a, "ra", 2);
    match b.begin_step(&step("rb", 2)).expect("begin_step") {
        Begin::Busy(holder) => {
            assert_eq!(holder.run_id, "ra");
            assert_eq!(holder.step, "s");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The same handle, another run: busy too (one claim per key).
    start(&*a, "ra2");
    assert!(matches!(
        a.begin_step(&step("ra2", 2)).expect("begin_step"),
        Begin::Busy(_)
    ));
    drop(lease);
    drop(claim(&*b, "rb", 2));
}

/// Handles in threads of their own decide one key at the same moment: one claims it, the
/// others see it busy with that claim; after the commit every one of them reuses it.
fn racing_handles_claim_once(fixture: &dyn MetadataFixture) {
    const RACERS: usize = 4;
    let handles: Vec<Arc<dyn MetadataStore>> = (0..RACERS).map(|_| fixture.open()).collect();
    let runs: Vec<String> = (0..RACERS).map(|i| format!("race{i}")).collect();
    for (handle, run) in handles.iter().zip(&runs) {
        start(&**handle, run);
    }
    let barrier = std::sync::Barrier::new(RACERS);
    let decided: Vec<Begin> = std::thread::scope(|s| {
        let racers: Vec<_> = handles
            .iter()
            .zip(&runs)
            .map(|(handle, run)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    handle.begin_step(&step(run, 11)).expect("begin_step")
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut claims = Vec::new();
    let mut busy = Vec::new();
    for begin in decided {
        match begin {
            Begin::Claimed { lease, .. } => claims.push(lease),
            Begin::Busy(holder) => busy.push(holder),
            other => panic!("expected Claimed or Busy, got {other:?}"),
        }
    }
    assert_eq!(claims.len(), 1, "exactly one handle claims the key");
    let claimant = claims.pop().unwrap();
    assert_eq!(busy.len(), RACERS - 1);
    for holder in &busy {
        assert_eq!(*holder, claimant.lease().holder, "busy with the one claim");
    }
    let claimed_run = claimant.lease().holder.run_id.clone();
    let id = claimant.commit(executed(fixture, 11)).expect("commit");
    for (handle, run) in handles.iter().zip(&runs) {
        if *run == claimed_run {
            continue;
        }
        match handle.begin_step(&step(run, 11)).expect("begin_step") {
            Begin::Hit { reused, .. } => assert_eq!(reused, id, "reuses the one execution"),
            other => panic!("expected Hit after the commit, got {other:?}"),
        }
    }
}

fn drop_releases(fixture: &dyn MetadataFixture) {
    let h = fixture.open();
    start(&*h, "r");
    drop(claim(&*h, "r", 3));
    assert_eq!(
        status(&*h, "r"),
        StepStatus::Failed,
        "an abandoned row fails"
    );
    let other = fixture.open();
    start(&*other, "o");
    drop(claim(&*other, "o", 3));
}

fn still_held_follows_the_lease(fixture: &dyn MetadataFixture) {
    let (a, b) = (fixture.open(), fixture.open());
    start(&*a, "ra");
    start(&*b, "rb");
    let lease = claim(&*a, "ra", 4);
    let holder = match b.begin_step(&step("rb", 4)).expect("begin_step") {
        Begin::Busy(holder) => holder,
        other => panic!("expected Busy, got {other:?}"),
    };
    assert_eq!(b.still_held(&[(Hash128(4), &holder)]).unwrap(), [true]);
    assert_eq!(
        b.still_held(&[(Hash128(5), &holder)]).unwrap(),
        [false],
        "another key"
    );
    lease.commit(executed(fixture, 4)).expect("commit");
    assert_eq!(b.still_held(&[(Hash128(4), &holder)]).unwrap(), [false]);
    assert!(matches!(
        b.begin_step(&step("rb", 4)).expect("begin_step"),
        Begin::Hit { .. }
    ));
}

fn token_adoption(fixture: &dyn MetadataFixture) {
    let (driver, worker, third) = (fixture.open(), fixture.open(), fixture.open());
    start(&*driver, "run");
    start(&*third, "third");
    let token = claim(&*driver, "run", 6).into_token();
    let json = serde_json::to_string(&token).expect("a token serializes");
    let token: super::LeaseToken = serde_json::from_str(&json).expect("and reads back");
    let adopted = worker.adopt_lease(token.clone()).expect("adopt_lease");
    assert_ne!(adopted.lease().holder.owner, token.holder.owner);
    match third.begin_step(&step("third", 6)).expect("begin_step") {
        Begin::Busy(holder) => assert_eq!(holder.owner, adopted.lease().holder.owner),
        other => panic!("expected Busy, got {other:?}"),
    }
    match third.adopt_lease(token) {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("a spent token must be LeaseLost, got {other:?}"),
    }
    let id = adopted.commit(executed(fixture, 6)).expect("commit");
    assert_eq!(status(&*driver, "run"), StepStatus::Executed);
    assert!(matches!(
        third.begin_step(&step("third", 6)).expect("begin_step"),
        Begin::Hit { reused, .. } if reused == id
    ));
}

fn heartbeat_counts(fixture: &dyn MetadataFixture) {
    let (a, b) = (fixture.open(), fixture.open());
    start(&*a, "ra");
    start(&*b, "rb");
    let first = claim(&*a, "ra", 7);
    let second = claim(&*a, "ra", 8);
    let theirs = claim(&*b, "rb", 9);
    assert_eq!(a.heartbeat().unwrap(), 2, "only this handle's leases");
    drop((first, second, theirs));
    assert_eq!(a.heartbeat().unwrap(), 0);
}

fn queries(fixture: &dyn MetadataFixture) {
    let h = fixture.open();
    start(&*h, "r");
    let lease = claim(&*h, "r", 10);
    let done = executed(fixture, 10);
    let hash = done.outputs[0].hash;
    let id = lease.commit(done).expect("commit");
    h.finish_run("r", RunStatus::Completed, Duration::from_millis(2))
        .expect("finish_run");
    let runs = h.runs(None).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(h.run("r-name").expect("run by name").id, "r");
    let record = h.execution(id).expect("execution");
    assert_eq!(
        (record.name.as_str(), record.status),
        ("s", StepStatus::Executed)
    );
    let lineage = h.lineage(hash).expect("lineage");
    assert_eq!(
        lineage
            .producers
            .iter()
            .map(|p| p.execution_id)
            .collect::<Vec<_>>(),
        [id]
    );
}
