//! [`Store`]: a store's metadata behind the seam ([`Backend`], SQLite or PostgreSQL) and
//! the [`ArtifactStore`] holding its blobs. Everything that needs both (writing and reading
//! blobs, loads that find damage) is here; everything else is one call of the backend.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::artifacts::ArtifactStore;
use super::earlier::{Candidates, EarlierCall};
use super::gc::{GcPolicy, GcReport};
use super::guard::{LeaseGuard, LeaseToken};
use super::lease::{Begin, Holder};
use super::metadata::{Backend, MetadataPass, MetadataStore, RunStart, StepStart};
use super::{
    blob, default_path, sidecar_path, BlobCounters, BlobWriter, ContentHash, ExecutionRow, Lineage,
    Lookup, RunRecord, RunStatus, Sidecar, SqliteMetadata, StepRecord, StoreOptions, StoreStats,
};
use crate::error::{BoxError, Error, ReadOnlyCause, Result};
use crate::key::Hash128;

/// A handle to a store: its metadata (runs, executions, leases, lineage) in SQLite or
/// PostgreSQL, and its artifact bytes in an [`ArtifactStore`]. Cheap to clone and
/// shareable between threads.
///
/// [`Store::open`] opens a local store (a folder holding `metadata.sqlite` and
/// `artifacts/`); [`Store::connect`] and [`Store::from_env`] open what a configuration
/// names, including metadata in PostgreSQL (`PIPELINE_METADATA=postgres://..`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Handle>,
}

struct Handle {
    /// The metadata backend.
    meta: Arc<dyn Backend>,
    /// The same backend when it is SQLite (the SQLite tests reach its internals).
    #[cfg_attr(not(test), allow(dead_code))]
    sqlite: Option<SqliteMetadata>,
    /// The store folder (SQLite), or the local folder of a remote store: its read cache
    /// and temporary files.
    root: PathBuf,
    /// What names the metadata in messages (a path, or a URL without its password).
    describe: String,
    /// Where the blobs are.
    blobs: Arc<dyn ArtifactStore>,
    content_hash: ContentHash,
    /// Why this handle cannot write; `None` when it can.
    read_only: Option<ReadOnlyCause>,
    counters: Arc<BlobCounters>,
    /// The configuration it was opened from ([`Store::connect`]), so that a worker
    /// process can open the same store; `None` for [`Store::open`] (a local folder).
    config: Option<crate::config::StoreConfig>,
    /// How long its claims live without a heartbeat (`StoreOptions::lease_ttl`), which a
    /// worker process that adopts one must beat within.
    lease_ttl: Duration,
    /// Set once this store's claim on the artifact location is written (`claim.rs`).
    claimed: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("metadata", &self.inner.describe)
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Store {
    /// Opens the store in directory `path`, creating it if it does not exist.
    ///
    /// Refuses a path that is a file, a non-empty directory that is not a store, a SQLite
    /// database of another application or with a schema version this library never writes
    /// (a negative one, say), and a store written by a newer version. A refused path is left
    /// as it was: nothing is created or changed before every check has passed.
    ///
    /// An existing store that this process cannot write (read-only media) opens for
    /// reading only; see [`Store::open_with`].
    ///
    /// # Errors
    ///
    /// [`Error::NotAStore`] and [`Error::StoreTooNew`] for what it refuses;
    /// [`Error::ReadOnly`] when a store must be created or its schema upgraded where nothing
    /// can be written; [`Error::Database`] or [`Error::Io`] when SQLite or the file system
    /// fails.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store in `path` with `options`.
    ///
    /// # Read-only handles and read-only media
    ///
    /// With `options.read_only`, nothing is created or changed and every write fails with
    /// [`Error::ReadOnly`]. An existing store that this process cannot write (the kernel's
    /// `access(2)` says so for a read-only mount, an immutable file, or missing write
    /// permission) opens the same way even without `read_only`, with
    /// [`ReadOnlyCause::Media`]: queries and loads work,
    /// and a run fails with an error that names the path and the fix.
    ///
    /// SQLite reads a database in WAL mode through an index file beside it,
    /// `metadata.sqlite-shm`, which it creates when missing:
    ///
    /// * Where that file exists or can be created, the database is opened plainly
    ///   read-only. That sees every committed transaction, including those of a writer in
    ///   another process. (In a writable directory this leaves the `-shm` and `-wal` files
    ///   behind; the next writer removes them.)
    /// * On read-only media without it (the usual state: the last writer removed it when it
    ///   closed), the database is opened with SQLite's `immutable=1`, which reads the main
    ///   file without locks or index. That is exact while nobody writes the store, which
    ///   read-only media guarantee. Where another user may still write it (a store you only
    ///   lack permission on), a handle opened this way does not see later runs, and may
    ///   fail on a page being rewritten at that moment: reopen it. A leftover
    ///   `metadata.sqlite-wal` with changes not yet merged cannot be read this way; that is
    ///   refused with [`Error::ReadOnly`] rather than shown as an older state.
    ///
    /// # Errors
    ///
    /// As for [`Store::open`]; besides, [`Error::Config`] for a path that reads as a URL
    /// (`postgres://..`: use [`Store::connect`]), and a read-only open of a path that holds no store
    /// fails with [`Error::NotAStore`] instead of creating one, and a store of an older
    /// schema cannot be opened read-only ([`Error::ReadOnly`]: a writable open upgrades it).
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        crate::config::refuse_url_as_folder(path.as_ref(), crate::config::Origin::Code)?;
        let counters = Arc::new(BlobCounters::default());
        let sqlite = SqliteMetadata::open_with(path, options, Arc::clone(&counters))?;
        Ok(Store::from_sqlite(sqlite, counters))
    }

    /// Opens `$PIPELINE_HOME` if set, else `./.pipeline`, as [`Store::open`] does: creates
    /// the store if needed, and opens an existing store on read-only media for reading only.
    ///
    /// # Errors
    ///
    /// As for [`Store::open`].
    pub fn open_default() -> Result<Store> {
        Store::open(default_path())
    }

    fn from_sqlite(sqlite: SqliteMetadata, counters: Arc<BlobCounters>) -> Store {
        Store {
            inner: Arc::new(Handle {
                meta: Arc::new(sqlite.clone()),
                root: sqlite.path().to_path_buf(),
                describe: sqlite.path().display().to_string(),
                blobs: Arc::clone(sqlite.artifact_store()),
                content_hash: sqlite.content_hash_algorithm(),
                read_only: sqlite.read_only(),
                counters,
                lease_ttl: sqlite.options().lease_ttl,
                sqlite: Some(sqlite),
                config: None,
                claimed: Default::default(),
            }),
        }
    }

    /// A store on any metadata backend: `root` is its local folder (read cache, temporary
    /// files), `describe` names the metadata in messages.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_backend(
        meta: Arc<dyn Backend>,
        blobs: Arc<dyn ArtifactStore>,
        content_hash: ContentHash,
        root: PathBuf,
        describe: String,
        read_only: Option<ReadOnlyCause>,
        lease_ttl: Duration,
    ) -> Store {
        Store {
            inner: Arc::new(Handle {
                meta,
                sqlite: None,
                root,
                describe,
                blobs,
                content_hash,
                read_only,
                counters: Arc::new(BlobCounters::default()),
                config: None,
                lease_ttl,
                claimed: Default::default(),
            }),
        }
    }

    /// Remembers the configuration this store was opened from (see [`Store::location`]).
    pub(crate) fn opened_from(mut self, config: &crate::config::StoreConfig) -> Store {
        if let Some(handle) = Arc::get_mut(&mut self.inner) {
            handle.config = Some(config.clone());
        }
        self
    }

    /// How long its claims live without a heartbeat.
    pub(crate) fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// Where another process finds this store: the metadata and artifact locations as
    /// [`StoreConfig::new`](crate::config::StoreConfig::new) reads them, with no password,
    /// and the PostgreSQL password apart (to hand over through the environment).
    pub(crate) fn location(&self) -> (String, Option<String>, Option<String>) {
        use crate::config::{ArtifactLocation, MetadataLocation};
        let Some(config) = &self.inner.config else {
            let db = self.inner.root.join("metadata.sqlite");
            return (format!("sqlite:{}", db.display()), None, None);
        };
        let (metadata, password) = match config.metadata() {
            MetadataLocation::Sqlite { path } => (format!("sqlite:{}", path.display()), None),
            MetadataLocation::Postgres(url) => (url.without_password(), url.password()),
        };
        let artifacts = match config.artifacts() {
            ArtifactLocation::Folder { path } => path.display().to_string(),
            ArtifactLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                format!("s3://{bucket}")
            }
            ArtifactLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        };
        (metadata, Some(artifacts), password)
    }

    /// The metadata backend, as the public seam ([`MetadataStore`]).
    pub fn metadata_store(&self) -> Arc<dyn MetadataStore> {
        Arc::clone(&self.inner.meta) as Arc<dyn MetadataStore>
    }

    pub(crate) fn metadata(&self) -> &dyn Backend {
        self.inner.meta.as_ref()
    }

    /// The SQLite metadata, when the store's metadata is SQLite.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn sqlite(&self) -> Option<&SqliteMetadata> {
        self.inner.sqlite.as_ref()
    }

    /// What names the metadata in messages (a path, or a URL without its password).
    pub(crate) fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// Whether `other` is a clone of this handle.
    pub(crate) fn same_handle(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Why this handle cannot write, or `None` when it can.
    pub fn read_only(&self) -> Option<ReadOnlyCause> {
        self.inner.read_only
    }

    /// The store directory; for a store whose metadata is remote (PostgreSQL), the local
    /// folder holding its read cache and temporary files.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Blob reads since this handle was opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            blob_reads: self.inner.counters.blob_reads.load(Ordering::Relaxed),
            bytes_read: self.inner.counters.bytes_read.load(Ordering::Relaxed),
        }
    }

    /// The schema version of this store's metadata (SQLite and PostgreSQL count their own).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read.
    pub fn schema_version(&self) -> Result<i64> {
        self.inner.meta.schema_version()
    }

    /// The algorithm that names this store's blobs.
    pub fn content_hash_algorithm(&self) -> ContentHash {
        self.inner.content_hash
    }

    /// Fails with [`Error::ReadOnly`] on a read-only handle.
    pub(crate) fn check_writable(&self, action: &str) -> Result<()> {
        if let Some(cause) = self.inner.read_only {
            // A remote store is named by its URL (password hidden), not its local folder.
            let path = match &self.inner.sqlite {
                Some(_) => self.inner.root.clone(),
                None => PathBuf::from(&self.inner.describe),
            };
            return Err(Error::ReadOnly {
                path,
                action: action.to_string(),
                cause,
            });
        }
        Ok(())
    }

    /// Where the blob with content hash `hash` is: its path in the store's `artifacts/`
    /// folder, or, with another [`artifacts`](StoreOptions::artifacts) backend, its
    /// location there (a URL for remote ones).
    pub fn blob_path(&self, hash: Hash128) -> PathBuf {
        self.inner.blobs.location(hash)
    }

    /// The backend holding this store's blobs.
    pub fn artifact_store(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.blobs
    }

    /// The location of the blob backend, for I/O errors that concern no single blob.
    pub(crate) fn blobs_location(&self) -> PathBuf {
        super::artifacts::backend_location(self.inner.blobs.as_ref(), &self.inner.root)
    }

    pub(crate) fn blob_writer(&self) -> Result<BlobWriter> {
        self.blob_writer_for(false)
    }

    /// A writer of a blob; with `replace`, its commit replaces a stored blob of the same
    /// name ([`ArtifactStore::put_replacing`]: the step executes again because its stored
    /// output was found damaged).
    pub(crate) fn blob_writer_for(&self, replace: bool) -> Result<BlobWriter> {
        self.check_writable("write artifacts")?;
        self.claim_artifacts()?;
        let blobs = &self.inner.blobs;
        let put = if replace {
            blobs.put_replacing(self.inner.content_hash)
        } else {
            blobs.put(self.inner.content_hash)
        }
        .map_err(|e| Error::io(self.blobs_location(), e))?;
        Ok(BlobWriter { put })
    }

    /// Writes this store's claim on its artifact location before its first blob there
    /// (once per handle), so that the gc of another store sharing the location knows it is
    /// not alone (`store/claim.rs`).
    pub(crate) fn claim_artifacts(&self) -> Result<()> {
        if self.inner.claimed.get().is_some() {
            return Ok(());
        }
        if let Some(id) = self.inner.meta.store_id(true)? {
            super::claim::write_claim(self.inner.blobs.as_ref(), &id, &self.inner.describe)
                .map_err(|e| Error::io(self.blobs_location(), e))?;
        }
        let _ = self.inner.claimed.set(());
        Ok(())
    }

    /// Finishes a blob: in place and durable under its hash; returns (hash, size).
    pub(crate) fn finish_blob(&self, writer: BlobWriter) -> Result<(Hash128, u64)> {
        writer
            .put
            .commit()
            .map_err(|e| Error::io(self.blobs_location(), e))
    }

    /// Reads blob `hash` through `decode`, verifying the content hash of every byte.
    pub(crate) fn read_blob<V>(
        &self,
        hash: Hash128,
        cacher: &str,
        decode: impl FnOnce(&mut dyn Read) -> Result<V, BoxError>,
    ) -> Result<V> {
        let path = self.blob_path(hash);
        let input = match self.inner.blobs.open(hash) {
            Ok(Some(input)) => input,
            Ok(None) => {
                self.blob_damaged(hash, false);
                return Err(Error::BlobMissing {
                    hash: hash.to_hex(),
                    path,
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        self.inner
            .counters
            .blob_reads
            .fetch_add(1, Ordering::Relaxed);
        let mut reader = blob::HashingReader::new(input, self.inner.content_hash);
        let decoded = decode(&mut reader);
        let (actual, bytes) = reader.finish().map_err(|e| Error::io(&path, e))?;
        self.inner
            .counters
            .bytes_read
            .fetch_add(bytes, Ordering::Relaxed);
        if actual != hash {
            // Tell the metadata, so the next cache lookup finds it damaged and re-executes
            // the producing step (best effort: the load fails either way).
            self.blob_damaged(hash, true);
            return Err(Error::BlobCorrupt {
                hash: hash.to_hex(),
                path,
                actual: actual.to_hex(),
            });
        }
        decoded.map_err(|e| Error::Cacher {
            cacher: cacher.to_string(),
            action: "load",
            what: format!("blob {hash}"),
            source: e,
        })
    }

    /// Records that output `output` written by `execution` does not decode as `type_name`,
    /// so cache lookups stop reusing it (the next run executes the step again), and returns
    /// the error to report. Recording is best effort: a read-only store, an unknown
    /// execution (0) or a failed write only cost one more failed load later.
    pub(crate) fn undecodable(
        &self,
        execution: i64,
        step: &str,
        output: &str,
        type_name: &str,
        cacher: &str,
        source: BoxError,
    ) -> Error {
        let message = source.to_string();
        tracing::warn!(
            target: "pipeline",
            "Stored output `{output}` of `{step}` could not be decoded as `{type_name}` ({message}); the next run executes `{step}` again."
        );
        if execution > 0 && self.inner.read_only.is_none() {
            if let Err(e) = self
                .inner
                .meta
                .undecodable(execution, output, type_name, &message)
            {
                tracing::warn!(
                    target: "pipeline",
                    "Could not record that output `{output}` of `{step}` is undecodable: {e}"
                );
            }
        }
        Error::Undecodable {
            step: step.to_string(),
            output: output.to_string(),
            type_name: type_name.to_string(),
            cacher: cacher.to_string(),
            source,
        }
    }

    /// Tells the metadata that a load (or `verify`) found blob `hash` missing or corrupt;
    /// best effort, and nothing on a read-only handle.
    pub(crate) fn blob_damaged(&self, hash: Hash128, corrupt: bool) {
        if self.inner.read_only.is_some() {
            return;
        }
        if let Err(e) = self.inner.meta.blob_damaged(hash, corrupt) {
            tracing::warn!(
                target: "pipeline",
                "Could not record that blob {hash} is damaged: {e}"
            );
        }
    }

    /// Finishes a blob written for `lease`'s step: the lease holds it before it takes its
    /// content address, so gc cannot remove it before the commit references it.
    pub(crate) fn finish_held_blob(
        &self,
        writer: BlobWriter,
        lease: &LeaseGuard,
    ) -> Result<(Hash128, u64)> {
        writer
            .put
            .commit_with(&mut |hash| lease.hold_blob(hash).map_err(std::io::Error::other))
            .map_err(|e| Error::io(self.blobs_location(), e))
    }

    /// Writes `<blob>.json` beside a blob: what it holds, readable without this library.
    pub(crate) fn write_sidecar(&self, hash: Hash128, sidecar: &Sidecar<'_>) -> Result<()> {
        let doc = sidecar.to_json(hash);
        let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        self.inner
            .blobs
            .put_sidecar(hash, &text)
            .map_err(|e| Error::io(sidecar_path(&self.blob_path(hash)), e))
    }
}

/// The runtime's calls, each one call of the metadata backend.
impl Store {
    pub(crate) fn begin_run(
        &self,
        id: &str,
        pipeline: &str,
        name: &str,
        started_at_us: i64,
    ) -> Result<()> {
        self.check_writable("record a run")?;
        self.inner.meta.begin_run(&RunStart {
            id: id.to_string(),
            pipeline: pipeline.to_string(),
            name: name.to_string(),
            started_at_us,
        })
    }

    pub(crate) fn finish_run(&self, id: &str, status: RunStatus, duration: Duration) -> Result<()> {
        self.inner.meta.finish_run(id, status, duration)
    }

    /// Decides a step; see [`MetadataStore::begin_step`].
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; the backend's error
    /// ([`Error::StoreLocked`], [`Error::Database`], [`Error::Remote`], [`Error::Io`]) when
    /// the transaction fails.
    pub fn begin_step(&self, step: &StepStart) -> Result<Begin> {
        self.check_writable("run a pipeline")?;
        self.inner.meta.begin_step(step)
    }

    /// See [`MetadataStore::still_held`].
    pub(crate) fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>> {
        self.inner.meta.still_held(waits)
    }

    /// Opens a pass; see [`Backend::pass`].
    pub(crate) fn pass(&self) -> Result<Box<dyn MetadataPass + '_>> {
        self.inner.meta.pass()
    }

    /// A lookup outside any pass.
    pub(crate) fn lookup(&self, key: Hash128) -> Result<Lookup> {
        self.inner.meta.lookup(key)
    }

    /// Commits execution rows in one transaction; returns their ids.
    pub(crate) fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        self.check_writable("record executions")?;
        self.inner.meta.record(rows)
    }

    /// See [`Backend::earlier_calls`].
    pub(crate) fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>> {
        self.inner
            .meta
            .earlier_calls(step, pipeline, exclude_run, before)
    }

    /// Refreshes every lease this handle holds, in one statement; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`] or [`Error::Database`] when the update fails.
    pub fn heartbeat(&self) -> Result<usize> {
        self.inner.meta.heartbeat()
    }

    /// Takes over a lease another process exported with [`LeaseGuard::into_token`]: from
    /// now on this handle beats it, its liveness is this process's, and the returned guard
    /// commits or releases it.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] when the store no longer holds the lease as the token says
    /// (committed, released, already adopted elsewhere, or taken over after `lease_ttl`
    /// without a beat); [`Error::ReadOnly`] on a read-only handle; [`Error::StoreLocked`]
    /// or [`Error::Database`] when the transaction fails.
    pub fn adopt_lease(&self, token: LeaseToken) -> Result<LeaseGuard> {
        self.check_writable("adopt a lease")?;
        self.inner.meta.adopt_lease(token)
    }
}

/// Queries and maintenance, each one call of the metadata backend.
impl Store {
    /// Runs, newest first; only those of `pipeline` when given.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn runs(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>> {
        self.inner.meta.runs(pipeline)
    }

    /// Names of the pipelines with at least one run, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read.
    pub fn pipelines(&self) -> Result<Vec<String>> {
        self.inner.meta.pipelines()
    }

    /// The run with this id or name, or the only one whose id or name starts with it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `id_or_name` names no run or several;
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn run(&self, id_or_name: &str) -> Result<RunRecord> {
        self.inner.meta.run(id_or_name)
    }

    /// The run that execution `id` belongs to.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when no execution has id `id`; [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn execution_run(&self, id: i64) -> Result<RunRecord> {
        self.inner.meta.execution_run(id)
    }

    /// The newest execution of step `step` (the step's own name, shared by repeated calls)
    /// that ran or was reused before execution `before`, whichever call it was. Failed and
    /// skipped executions are left out. What a cache miss was compared with, the earlier
    /// execution of the same call, is [`Store::compared_execution`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn previous_execution(&self, step: &str, before: i64) -> Result<Option<StepRecord>> {
        self.inner.meta.previous_execution(step, before)
    }

    /// The step records of a run (by id or name), in pipeline order.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `run` names no run or several;
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn run_steps(&self, run: &str) -> Result<Vec<StepRecord>> {
        self.inner.meta.run_steps(run)
    }

    /// Metric `name` (logged with [`StepContext::log_metric`](crate::StepContext::log_metric))
    /// in every run of `pipeline`, oldest run first: one value per step call that logged
    /// it, a cached call giving the value of the execution it reused. For a sweep:
    /// `store.metric("digits", "accuracy")` after five runs with five `gamma` values.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn metric(&self, pipeline: &str, name: &str) -> Result<Vec<super::MetricValue>> {
        let mut runs = self.runs(Some(pipeline))?;
        runs.sort_by_key(|r| r.started_at_us);
        let mut values = Vec::new();
        for run in runs {
            for step in self.run_steps(&run.id)? {
                if let Some(value) = step.metrics.get(name) {
                    values.push(super::MetricValue {
                        run_id: run.id.clone(),
                        run_name: run.name.clone(),
                        run_started_at_us: run.started_at_us,
                        step: step.name.clone(),
                        value: *value,
                    });
                }
            }
        }
        Ok(values)
    }

    /// One execution record by id.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when no execution has id `id`; [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn execution(&self, id: i64) -> Result<StepRecord> {
        self.inner.meta.execution(id)
    }

    /// Which executions produced, reused and consumed the artifact with `content_hash`.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn lineage(&self, content_hash: Hash128) -> Result<Lineage> {
        self.inner.meta.lineage(content_hash)
    }

    /// The earlier execution that a cache miss of execution `execution` was compared with
    /// (see [`EarlierCall`]): the one recorded with it at run time, or, for an execution
    /// recorded without one (by an older version, or one that ran with caching off or
    /// over a damaged blob), the one the same rule finds among the executions before it.
    /// `None` when there is no earlier completed call of the step.
    ///
    /// # Errors
    /// [`Error::UnknownRun`] when no execution `execution` is in the store; database errors.
    pub fn compared_execution(&self, execution: i64) -> Result<Option<EarlierCall>> {
        self.inner.meta.compared_execution(execution)
    }

    /// Removes runs the policy does not keep and the blobs nothing references any more,
    /// in one write transaction; safe beside running pipelines whatever the policy (see the
    /// module documentation). Blobs that a running run may still rely on are kept and
    /// removed by a later gc, once those runs have ended.
    ///
    /// Deletes nothing when other stores (another SQLite folder, another PostgreSQL
    /// database) keep blobs in the same artifact location: each store claims the location
    /// before its first blob there, and gc, which sees only this store's references,
    /// refuses where it finds another store's claim.
    ///
    /// # Errors
    ///
    /// [`Error::SharedArtifacts`] when another store has claimed the artifact location
    /// (nothing is changed); [`Error::ReadOnly`] on a read-only handle (dry runs excepted);
    /// [`Error::StoreLocked`], [`Error::Database`] or [`Error::Io`] when the store cannot be
    /// changed.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport> {
        if !policy.dry_run {
            self.check_writable("collect garbage")?;
        }
        self.inner.meta.gc(policy, self.inner.blobs.as_ref())
    }

    /// Pins a run (id, name or unique prefix): garbage collection always keeps it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `run` names no run or several,
    /// [`Error::ReadOnly`] on a read-only handle, [`Error::StoreLocked`] or
    /// [`Error::Database`] when the change cannot be written.
    pub fn pin(&self, run: &str) -> Result<()> {
        self.check_writable("pin runs")?;
        self.inner.meta.set_pinned(run, true)
    }

    /// Unpins a run.
    ///
    /// # Errors
    ///
    /// As for [`pin`](Self::pin).
    pub fn unpin(&self, run: &str) -> Result<()> {
        self.check_writable("pin runs")?;
        self.inner.meta.set_pinned(run, false)
    }
}

#[cfg(test)]
impl Store {
    /// The SQLite backend, for tests that reach its internals (`db()`, `holder()`, ..).
    pub(crate) fn lite(&self) -> &SqliteMetadata {
        self.sqlite().expect("a store with SQLite metadata")
    }
}
