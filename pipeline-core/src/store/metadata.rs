//! The metadata seam: runs, executions, leases, lineage and the queries, behind one trait,
//! so that more than one backend carries the runtime: SQLite (`SqliteMetadata`, the local
//! store) and PostgreSQL (`PostgresMetadata`, feature `postgres`). [`Store`](super::Store)
//! holds one as an `Arc<dyn Backend>`: [`MetadataStore`] (public: runs, leases, the
//! queries, pins, gc, damage marks) and [`Backend`] on top (crate-internal, as its
//! rows are the executor's types: the per-wave pass, rows recorded outside a pass, miss
//! explanations). Every implementation must pass
//! [`contract::metadata`](super::contract::metadata).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::artifacts::ArtifactStore;
use super::copy::ExportedRun;
use super::earlier::{Candidates, EarlierCall};
use super::gc::{GcPolicy, GcReport};
use super::guard::{Completion, Lease, LeaseGuard, LeaseToken};
use super::lease::{Begin, Holder};
use super::logs::ExecutionLog;
use super::verify::{SidecarRow, VerifyRows};
use super::{
    ArtifactRecord, ExecutionRow, InputRow, Lineage, Lookup, RunRecord, RunStatus, SqliteMetadata,
    StepRecord,
};
use crate::error::Result;
use crate::key::{Hash128, KeyComponents, OutputDecl};
use crate::status::StepStatus;

/// One input of a step about to be decided, as its execution row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInput {
    /// The parameter's name in the step's signature.
    pub name: String,
    /// Content hash of an artifact input; `None` for a parameter.
    pub hash: Option<Hash128>,
    /// The execution that produced an artifact input.
    pub producer: Option<i64>,
    /// The blob holding a parameter's stored form (bincode), when it was written.
    pub value: Option<Hash128>,
}

/// A step about to be decided by [`MetadataStore::begin_step`].
#[derive(Debug, Clone)]
pub struct StepStart {
    /// The run's id.
    pub run_id: String,
    /// The run's name (for messages).
    pub run_name: String,
    /// The call's name within the run.
    pub name: String,
    /// The step's name.
    pub step: String,
    /// The call's position in the run's graph.
    pub position: usize,
    /// The cache key.
    pub cache_key: Hash128,
    /// What the key was computed from.
    pub components: KeyComponents,
    /// The step's inputs, in signature order.
    pub inputs: Vec<StepInput>,
    /// The step's outputs, in declaration order.
    pub outputs: Vec<OutputDecl>,
    /// The step's cache expiry as a time (microseconds since the Unix epoch): a completed
    /// execution that finished before it is not reused, and the key is claimed instead.
    /// `None`: no expiry.
    pub not_before_us: Option<i64>,
}

/// A run about to start, for [`MetadataStore::begin_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// A unique id.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The run's name.
    pub name: String,
    /// When it started, in microseconds since the Unix epoch.
    pub started_at_us: i64,
}

/// What the runtime and the queries need from a metadata backend: runs, executions,
/// leases, lineage and the queries. `SqliteMetadata` implements it on SQLite and
/// `PostgresMetadata` on PostgreSQL; [`Store::metadata_store`](super::Store::metadata_store)
/// hands out a store's. Every implementation must pass
/// [`contract::metadata`](super::contract::metadata).
///
/// # The invariants and how a backend keeps them
///
/// Each method names the transaction it needs. The SQLite implementation takes SQLite's
/// single write lock (`BEGIN IMMEDIATE`) for every write transaction, which serializes
/// them; the PostgreSQL implementation (`store/postgres/metadata.rs`) keeps the same
/// invariants with row locks:
///
/// 1. **One claim per key.** [`begin_step`](MetadataStore::begin_step) looks up a
///    completed execution, reads the key's lease and writes the claim (lease row and
///    `running` execution row) in one transaction. PostgreSQL: `INSERT INTO leases ..
///    ON CONFLICT (cache_key) DO NOTHING RETURNING ..`; when nothing is returned,
///    `SELECT .. FROM leases WHERE cache_key = $1 FOR UPDATE` and decide take-over (dead or
///    expired holder: `UPDATE .. SET owner = ..`) or `Busy` under that row lock. The
///    completed-execution lookup runs in the same transaction, after the lease row is
///    locked, so a commit cannot slip between the two. (A first lookup before the claim
///    lets a hit, the common case, record its cached row without touching the lease; a
///    miss is only decided by the lookup under the lock.)
/// 2. **A lease is dropped in the commit.** [`commit_lease`](MetadataStore::commit_lease)
///    updates the `running` row, inserts the outputs, and deletes the lease and its holds in
///    one transaction (PostgreSQL: one `BEGIN .. COMMIT`, the lease row deleted by
///    `DELETE .. WHERE cache_key = $1 AND owner = $2`). A waiter therefore never sees the
///    key free without its execution.
/// 3. **A blob is in place before its row commits.** The artifact bytes are put first;
///    the execution that references them commits after. Before a blob takes its content
///    address, its lease holds it ([`hold_blob`](MetadataStore::hold_blob), its own short
///    transaction, committed before the put).
/// 4. **gc spares what a running run relies on.** gc deletes blobs inside one write
///    transaction, after re-checking that no row references them, no live lease holds
///    them, and no run that may have found them before they became unreferenced is still
///    running (`condemned.since_us` against the oldest running run's start). PostgreSQL:
///    gc takes `pg_advisory_xact_lock(<store id>)` and `LOCK TABLE holds IN SHARE ROW
///    EXCLUSIVE MODE` for the transaction; `hold_blob` takes the table lock in `ROW
///    EXCLUSIVE` mode (the default for its `INSERT`), so a hold either commits before gc
///    looks, or waits until gc has committed its deletions and puts the blob back.
/// 5. **Heartbeats and liveness.** [`heartbeat`](MetadataStore::heartbeat) refreshes every
///    lease of the handle in one `UPDATE .. WHERE owner = $1`. A lease expires by heartbeat
///    only across hosts; on one host a dead holder is proven by its file lock. PostgreSQL
///    proves more: each handle holds a session-level `pg_try_advisory_lock(<owner hash>)`
///    on a connection of its own, which the server releases when that session ends, so a
///    holder whose lock no session holds (`pg_locks`) is dead, whatever its host.
/// 6. **A wave is one transaction.** `Backend::pass` (crate-internal) opens one
///    transaction for the lookups, miss explanations and cached rows of the steps the
///    coordinator resolves at once (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN`, each
///    hit's execution locked `FOR KEY SHARE` by its lookup), so a cached row points at what
///    its lookup found and nothing can delete it in between. No step body runs while a
///    pass is open.
pub trait MetadataStore: Send + Sync {
    /// Records a run as running, owned by this handle.
    ///
    /// # Errors
    ///
    /// The backend's error when the row cannot be written (e.g. [`Error::ReadOnly`](crate::Error::ReadOnly)).
    fn begin_run(&self, run: &RunStart) -> Result<()>;

    /// Records how a run ended.
    ///
    /// # Errors
    ///
    /// The backend's error when the row cannot be written.
    fn finish_run(&self, id: &str, status: RunStatus, duration: Duration) -> Result<()>;

    /// Decides a step in one write transaction: reuse a completed execution with its key
    /// (recording the step as cached), claim the key (recording it `running`), or report
    /// who holds it. A holder proven dead, or silent for `lease_ttl`, is taken over.
    ///
    /// # Errors
    ///
    /// The backend's error when the transaction fails.
    fn begin_step(&self, step: &StepStart) -> Result<Begin>;

    /// Per `(key, holder)`: whether `holder` still holds a live lease on `key`, in one
    /// read for the whole batch.
    ///
    /// # Errors
    ///
    /// The backend's error when the leases cannot be read.
    fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>>;

    /// Commits a lease: completes its `running` row with `done`, records the outputs, and
    /// deletes the lease and its holds, in one transaction. Returns the execution's id.
    ///
    /// # Errors
    ///
    /// The backend's error when the transaction fails (nothing is recorded then).
    fn commit_lease(&self, lease: &Lease, done: &Completion) -> Result<i64>;

    /// Releases an uncommitted lease: its `running` row becomes failed, the lease and its
    /// holds go.
    ///
    /// # Errors
    ///
    /// The backend's error when the transaction fails.
    fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// Holds blob `hash` for `lease` until the lease ends, in a transaction committed
    /// before the blob takes its content address.
    ///
    /// # Errors
    ///
    /// The backend's error when the hold cannot be written.
    fn hold_blob(&self, lease: &Lease, hash: Hash128) -> Result<()>;

    /// A guard of `lease` ended (committed, released or exported): the handle may stop
    /// beating it. Infallible bookkeeping.
    fn lease_closed(&self, lease: &Lease);

    /// Refreshes every lease this handle holds; returns how many.
    ///
    /// # Errors
    ///
    /// The backend's error when the update fails.
    fn heartbeat(&self) -> Result<usize>;

    /// Takes over a lease exported by another process ([`LeaseGuard::into_token`]).
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when the lease is no longer held as
    /// the token says; the backend's error when the transaction fails.
    fn adopt_lease(&self, token: LeaseToken) -> Result<LeaseGuard>;

    /// Marks what processes proven dead left behind: their runs and `running` rows failed,
    /// their leases and holds deleted.
    ///
    /// # Errors
    ///
    /// The backend's error when the transaction fails.
    fn recover(&self) -> Result<()>;

    /// Runs, newest first, of one pipeline or all.
    ///
    /// # Errors
    ///
    /// The backend's error when the rows cannot be read.
    fn runs(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>>;

    /// One run by id, name or unique id prefix.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) or
    /// [`Error::AmbiguousRun`](crate::Error::AmbiguousRun), or the backend's error.
    fn run(&self, run: &str) -> Result<RunRecord>;

    /// The executions of a run, in graph order (`running` ones included).
    ///
    /// # Errors
    ///
    /// As for [`run`](MetadataStore::run).
    fn run_steps(&self, run: &str) -> Result<Vec<StepRecord>>;

    /// One execution by id.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStep`](crate::Error::UnknownStep) when there is none, or the
    /// backend's error.
    fn execution(&self, id: i64) -> Result<StepRecord>;

    /// Where an artifact came from and what consumed it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownArtifact`](crate::Error::UnknownArtifact) when no artifact has this
    /// hash, or the backend's error.
    fn lineage(&self, content_hash: Hash128) -> Result<Lineage>;

    /// Names of the pipelines with at least one run, sorted.
    ///
    /// # Errors
    ///
    /// The backend's error when the rows cannot be read.
    fn pipelines(&self) -> Result<Vec<String>>;

    /// The run that execution `id` belongs to.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) when no execution has id `id`, or
    /// the backend's error.
    fn execution_run(&self, id: i64) -> Result<RunRecord>;

    /// The newest completed execution of step `step` before execution `before`, whichever
    /// call and run it was.
    ///
    /// # Errors
    ///
    /// The backend's error when the rows cannot be read.
    fn previous_execution(&self, step: &str, before: i64) -> Result<Option<StepRecord>>;

    /// The earlier execution a cache miss of `execution` was compared with
    /// ([`Store::compared_execution`](crate::Store::compared_execution)).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) when there is no such execution, or
    /// the backend's error.
    fn compared_execution(&self, execution: i64) -> Result<Option<EarlierCall>>;

    /// Pins (or unpins) a run against garbage collection.
    ///
    /// # Errors
    ///
    /// As for [`run`](MetadataStore::run); the backend's error when the row cannot be
    /// written.
    fn set_pinned(&self, run: &str, pinned: bool) -> Result<()>;

    /// Garbage collection ([`Store::gc`](crate::Store::gc)) of the runs this backend
    /// records and of `blobs`, the store's artifact bytes. It writes this store's claim on
    /// `blobs` ([`ArtifactStore::put_claim`]) and deletes nothing where another store has
    /// claimed them, checked before anything changes and again after listing the blobs
    /// (`store/claim.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::SharedArtifacts`](crate::Error::SharedArtifacts) where another store has
    /// claimed `blobs`; the backend's error, or the artifact store's
    /// ([`Error::Io`](crate::Error::Io)).
    fn gc(&self, policy: &GcPolicy, blobs: &dyn ArtifactStore) -> Result<GcReport>;

    /// The schema version of the metadata.
    ///
    /// # Errors
    ///
    /// The backend's error when it cannot be read.
    fn schema_version(&self) -> Result<i64>;

    /// A load found blob `hash` missing (or, with `corrupt`, damaged): the next lookup of
    /// a key with it among its outputs must not reuse it.
    ///
    /// # Errors
    ///
    /// The backend's error when the mark cannot be written.
    fn blob_damaged(&self, hash: Hash128, corrupt: bool) -> Result<()>;

    /// Output `output` of execution `execution` does not decode as `type_name`
    /// (`message` says why): lookups stop reusing it.
    ///
    /// # Errors
    ///
    /// The backend's error when the record cannot be written.
    fn undecodable(
        &self,
        execution: i64,
        output: &str,
        type_name: &str,
        message: &str,
    ) -> Result<()>;
}

/// The part of the seam the executor drives, whose rows are crate-internal types: the
/// per-wave pass (lookups, miss explanations and cached rows in one transaction), rows
/// recorded outside a pass (skipped steps, runs with caching off), and the artifact rows
/// behind [`Store::artifact_by_hash`](crate::Store::artifact_by_hash).
/// [`Store`](crate::Store) holds an `Arc<dyn Backend>`.
pub(crate) trait Backend: MetadataStore {
    /// Opens a pass: one transaction that the coordinator's lookups, explanations and
    /// cached rows for the steps that became ready at once go in (SQLite: `BEGIN
    /// IMMEDIATE`; PostgreSQL: `BEGIN`, with the executions a lookup found locked `FOR KEY
    /// SHARE` until the commit). No step body runs while a pass is open.
    fn pass(&self) -> Result<Box<dyn MetadataPass + '_>>;

    /// A lookup in a transaction of its own.
    fn lookup(&self, key: Hash128) -> Result<Lookup>;

    /// Records rows in one transaction; returns their ids. Blobs must be in place.
    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>>;

    /// The completed calls of `step` in the run a miss is compared with (see
    /// `store/earlier.rs`), among executions before `before`.
    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>>;

    /// The newest artifact row with `hash`: its record, execution id, the execution's name
    /// and key components.
    fn artifact_found(&self, hash: Hash128) -> Result<Option<FoundArtifact>>;

    /// What [`Store::verify`](crate::Store::verify) checks, read in one snapshot.
    fn verify_rows(&self) -> Result<VerifyRows>;

    /// This metadata store's id, the name of its claim on its artifact location
    /// (`store/claim.rs`); with `create`, one is made and recorded when there is none
    /// (unless the handle is read-only).
    fn store_id(&self, create: bool) -> Result<Option<String>>;

    /// What the sidecar of blob `hex` is rewritten from
    /// ([`Store::repair`](crate::Store::repair)), if a completed execution references it.
    fn sidecar_row(&self, hex: &str) -> Result<Option<SidecarRow>>;

    /// A run's rows for [`Store::copy_to`](crate::Store::copy_to), read in one snapshot;
    /// `None` when there is no such run.
    fn export_run(&self, run_id: &str) -> Result<Option<ExportedRun>>;

    /// Imports a run exported by another store in one write transaction
    /// ([`copy::import_run`](super::copy::import_run) says how ids are kept or remapped;
    /// `mapped` maps the source's execution ids of runs copied before). Returns the
    /// mapping of the run's own executions. Its blobs must be in place.
    fn import_run(
        &self,
        run: &ExportedRun,
        mapped: &HashMap<i64, i64>,
    ) -> Result<HashMap<i64, i64>>;

    /// Records the streams kept of a job (`store/logs.rs`) in one transaction, replacing
    /// rows of the same execution and stream. Their blobs must be in place.
    fn record_logs(&self, logs: &[ExecutionLog]) -> Result<()>;

    /// The streams kept of execution `execution`, stdout first.
    fn execution_logs(&self, execution: i64) -> Result<Vec<ExecutionLog>>;

    /// Ends the claimed row of a step whose worker ended without recording it, as the
    /// run's report has it: failed with `error` (the job's end, its stderr's tail), or
    /// skipped with `reason` when the run's cancel stopped it (`store/lease.rs`,
    /// `END_UNRECORDED_SQL`); false when the row holds anything else.
    fn end_unrecorded(
        &self,
        execution: i64,
        status: StepStatus,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool>;
}

/// An artifact row found by hash: the record, its execution's id, name and key components.
pub(crate) type FoundArtifact = (ArtifactRecord, i64, String, KeyComponents);

/// An open pass ([`Backend::pass`]); rolls back on drop unless committed.
pub(crate) trait MetadataPass {
    /// A lookup inside the pass's transaction.
    fn lookup(&self, key: Hash128) -> Result<Lookup>;

    /// [`Backend::earlier_calls`] inside the pass's transaction.
    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
    ) -> Result<Option<Candidates>>;

    /// Inserts rows; they commit with the pass.
    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>>;

    /// Commits what the pass recorded.
    fn commit(self: Box<Self>) -> Result<()>;
}

impl SqliteMetadata {
    /// Decides a step; see [`MetadataStore::begin_step`].
    fn begin_step_start(&self, step: &StepStart) -> Result<Begin> {
        let inputs: Vec<InputRow> = step
            .inputs
            .iter()
            .map(|i| InputRow {
                name: i.name.clone(),
                hash: i.hash,
                producer: i.producer,
                value: i.value,
            })
            .collect();
        let row = ExecutionRow {
            details: Default::default(),
            run_id: &step.run_id,
            name: &step.name,
            step: &step.step,
            position: step.position,
            status: StepStatus::Running,
            cache_key: Some(step.cache_key),
            components: &step.components,
            reason: None,
            error: None,
            reused: None,
            compared: None,
            started_at_us: crate::time::now_micros(),
            duration: Duration::ZERO,
            outputs: Vec::new(),
            inputs,
            outputs_of: None,
            lease_holder: None,
        };
        let holder = self.holder(&step.run_id, &step.run_name, &step.name);
        self.begin_step_row(
            step.cache_key,
            &row,
            &step.outputs,
            &holder,
            step.not_before_us,
        )
    }
}

impl MetadataStore for SqliteMetadata {
    fn begin_run(&self, run: &RunStart) -> Result<()> {
        SqliteMetadata::begin_run(self, &run.id, &run.pipeline, &run.name, run.started_at_us)
    }

    fn finish_run(&self, id: &str, status: RunStatus, duration: Duration) -> Result<()> {
        SqliteMetadata::finish_run(self, id, status, duration)
    }

    fn begin_step(&self, step: &StepStart) -> Result<Begin> {
        self.begin_step_start(step)
    }

    fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>> {
        SqliteMetadata::still_held(self, waits)
    }

    fn commit_lease(&self, lease: &Lease, done: &Completion) -> Result<i64> {
        self.commit_lease_sqlite(lease, done)
    }

    fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.release_lease_sqlite(lease)
    }

    fn hold_blob(&self, lease: &Lease, hash: Hash128) -> Result<()> {
        self.hold_blob_sqlite(lease, hash)
    }

    fn lease_closed(&self, _lease: &Lease) {
        self.lease_closed_sqlite()
    }

    fn heartbeat(&self) -> Result<usize> {
        SqliteMetadata::heartbeat(self)
    }

    fn adopt_lease(&self, token: LeaseToken) -> Result<LeaseGuard> {
        SqliteMetadata::adopt_lease(self, token)
    }

    fn recover(&self) -> Result<()> {
        SqliteMetadata::recover(self)
    }

    fn runs(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>> {
        SqliteMetadata::runs(self, pipeline)
    }

    fn run(&self, run: &str) -> Result<RunRecord> {
        SqliteMetadata::run(self, run)
    }

    fn run_steps(&self, run: &str) -> Result<Vec<StepRecord>> {
        SqliteMetadata::run_steps(self, run)
    }

    fn execution(&self, id: i64) -> Result<StepRecord> {
        SqliteMetadata::execution(self, id)
    }

    fn lineage(&self, content_hash: Hash128) -> Result<Lineage> {
        SqliteMetadata::lineage(self, content_hash)
    }

    fn pipelines(&self) -> Result<Vec<String>> {
        SqliteMetadata::pipelines(self)
    }

    fn execution_run(&self, id: i64) -> Result<RunRecord> {
        SqliteMetadata::execution_run(self, id)
    }

    fn previous_execution(&self, step: &str, before: i64) -> Result<Option<StepRecord>> {
        SqliteMetadata::previous_execution(self, step, before)
    }

    fn compared_execution(&self, execution: i64) -> Result<Option<EarlierCall>> {
        SqliteMetadata::compared_execution(self, execution)
    }

    fn set_pinned(&self, run: &str, pinned: bool) -> Result<()> {
        SqliteMetadata::set_pinned(self, run, pinned)
    }

    fn gc(&self, policy: &GcPolicy, blobs: &dyn ArtifactStore) -> Result<GcReport> {
        self.gc_of(policy, blobs)
    }

    fn schema_version(&self) -> Result<i64> {
        SqliteMetadata::schema_version(self)
    }

    fn blob_damaged(&self, hash: Hash128, _corrupt: bool) -> Result<()> {
        // Without its recorded stat, the next lookup stats the blob (finding it missing)
        // and re-hashes it (finding it corrupt).
        self.forget_blob_stat(hash)
    }

    fn undecodable(
        &self,
        execution: i64,
        output: &str,
        type_name: &str,
        message: &str,
    ) -> Result<()> {
        self.record_undecodable(execution, output, type_name, message)
    }
}

impl Backend for SqliteMetadata {
    fn pass(&self) -> Result<Box<dyn MetadataPass + '_>> {
        Ok(Box::new(SqliteMetadata::pass(self)?))
    }

    fn lookup(&self, key: Hash128) -> Result<Lookup> {
        SqliteMetadata::lookup(self, key)
    }

    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        SqliteMetadata::record(self, rows)
    }

    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>> {
        SqliteMetadata::earlier_calls(self, step, pipeline, exclude_run, before)
    }

    fn artifact_found(&self, hash: Hash128) -> Result<Option<FoundArtifact>> {
        SqliteMetadata::artifact_found(self, hash)
    }

    fn verify_rows(&self) -> Result<VerifyRows> {
        SqliteMetadata::verify_rows(self)
    }

    fn store_id(&self, create: bool) -> Result<Option<String>> {
        SqliteMetadata::store_id(self, create)
    }

    fn sidecar_row(&self, hex: &str) -> Result<Option<SidecarRow>> {
        SqliteMetadata::sidecar_row(self, hex)
    }

    fn export_run(&self, run_id: &str) -> Result<Option<ExportedRun>> {
        SqliteMetadata::export_run(self, run_id)
    }

    fn import_run(
        &self,
        run: &ExportedRun,
        mapped: &HashMap<i64, i64>,
    ) -> Result<HashMap<i64, i64>> {
        SqliteMetadata::import_run(self, run, mapped)
    }

    fn record_logs(&self, logs: &[ExecutionLog]) -> Result<()> {
        SqliteMetadata::record_logs(self, logs)
    }

    fn execution_logs(&self, execution: i64) -> Result<Vec<ExecutionLog>> {
        SqliteMetadata::execution_logs(self, execution)
    }

    fn end_unrecorded(
        &self,
        execution: i64,
        status: StepStatus,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        SqliteMetadata::end_unrecorded(self, execution, status, reason, error)
    }
}

/// A shared handle to any metadata backend.
pub type SharedMetadata = Arc<dyn MetadataStore>;
