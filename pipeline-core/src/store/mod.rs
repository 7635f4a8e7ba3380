//! A store: its metadata (runs, executions, leases, lineage) behind the [`MetadataStore`]
//! seam, and its artifact bytes in an [`ArtifactStore`]. [`Store`] (`handle.rs`) holds one
//! of each; everything that needs both (writing a blob, then recording it; a load that finds
//! damage and says so) is there, everything else is one call of the metadata backend.
//!
//! Two metadata backends:
//!
//! * SQLite (`SqliteMetadata`, `sqlite.rs`, and `gc.rs`, `verify.rs`, `query.rs`,
//!   `lease.rs`, `guard.rs`, `pass.rs`, `earlier.rs`), the local store:
//!
//!   ```text
//!   <store>/metadata.sqlite          runs, executions, artifacts, lineage inputs, blob stats
//!   <store>/artifacts/ab/ab12...     content-addressed blobs (xxh3-128 hex)
//!   ```
//!
//! * PostgreSQL (`PostgresMetadata`, `postgres/`, feature `postgres`), for stores shared
//!   by processes on several hosts, opened by [`Store::connect`] for a `postgres://` URL.
//!
//! # Invariants
//!
//! The store keeps these itself, whatever its callers do, on either backend;
//! [`MetadataStore`] says how each backend keeps each one per transaction (SQLite with its
//! single write lock, PostgreSQL with row locks and advisory locks).
//!
//! 1. **A blob is in place before its row commits.** A step's outputs are written through
//!    the [`ArtifactStore`] (locally: to `artifacts/tmp/`, synced), held by the step's
//!    lease (`holds`), put at their content address, and only then referenced by the
//!    execution's commit. A row never names bytes that are not there (a reader may still
//!    find them damaged later: loads verify the hash, and tell the backend).
//! 2. **A lease is dropped in the commit.** [`LeaseGuard::commit`] completes the step's
//!    `running` row, records its outputs and deletes the lease and its holds in one write
//!    transaction; a guard dropped uncommitted releases the lease (the row becomes
//!    failed). Nobody waiting for the key sees it free without its execution.
//! 3. **One claim per key.** [`Store::begin_step`] looks for a completed execution and
//!    claims the key in one write transaction; a holder proven dead (SQLite: its file lock
//!    is free, `liveness.rs`; PostgreSQL: its session's advisory lock is gone) or silent
//!    for `lease_ttl` is taken over.
//! 4. **gc spares what a running hit relies on**, and what a step is writing: gc deletes
//!    blob files inside its own write transaction, only when no row references them, no
//!    live lease holds them, and no run that was running when they lost their last
//!    reference is still running (`gc.rs`). Ages (`min_blob_age`) are a plain option on
//!    top, not what makes gc safe. PostgreSQL: the same rules in one transaction
//!    (`postgres/metadata.rs`, `gc`). Where another store keeps blobs in the same
//!    artifact location (its claim is there, `claim.rs`), gc deletes none.
//! 5. **A wave is one transaction.** The coordinator's lookups, miss explanations and
//!    cached rows for the steps that became ready at once go in one pass (`pass.rs`; on
//!    PostgreSQL one `BEGIN .. COMMIT`, the executions its hits reuse locked against
//!    deletion until it commits), so a cached row points at exactly what its lookup found.
//!
//! The blobs go through an [`ArtifactStore`]: the folder above by default, any other
//! backend through [`StoreOptions::artifacts`] or the configuration ([`Store::connect`]).

pub mod artifacts;
mod blob;
pub mod contract;
mod earlier;
pub use earlier::EarlierCall;
pub(crate) use earlier::{label_of, Call, Candidates};

mod claim;
mod details;
pub(crate) use details::details_of_e;
pub use details::{Attempt, ExecutionDetails, MetricValue};
mod connect;
mod copy;
mod gc;
mod guard;
mod handle;
mod lease;
mod liveness;
mod logs;
mod metadata;
mod open;
mod pass;
// The PostgreSQL metadata backend: connecting, its schema, and `PostgresMetadata`, the
// `MetadataStore` on it, which `Store::connect` opens for a `postgres://` URL.
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod rows;
mod schema;
mod sqlite;
mod stored;
mod verify;

pub use crate::local_fs::{default_path, PIPELINE_HOME};
pub use crate::time::utc_timestamp;
pub use copy::{CopyEvent, CopyOptions, CopyProgress, CopyReport};
pub use gc::{GcPolicy, GcReport};
pub use guard::{Completion, Lease, LeaseGuard, LeaseToken, StepOutput};
pub use handle::Store;
pub(crate) use lease::CLAIM_ENDED;
pub use lease::{Begin, Holder};
pub use logs::{ExecutionLog, LogStream, LOG_KEPT};
pub(crate) use metadata::MetadataPass;
pub use metadata::{MetadataStore, RunStart, SharedMetadata, StepInput, StepStart};
#[cfg(feature = "postgres")]
pub use postgres::PostgresMetadata;
pub(crate) use sqlite::SqliteMetadata;
pub use stored::StoredArtifact;
pub use verify::{Problem, VerifyReport};

pub(crate) use query::{compare_records, split_item};
pub use query::{
    ArtifactRecord, ExecutionRef, InputRecord, Lineage, RunComparison, RunRecord, RunStatus,
    StepComparison, StepRecord,
};

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use artifacts::{ArtifactStore, BlobPut};
pub use blob::ContentHash;
#[doc(hidden)]
pub use blob::HashingWriter;

use crate::cacher::Cacher;
use crate::error::{Error, Result};
use crate::key::{Hash128, KeyComponents};
use crate::status::StepStatus;

/// Settings of a store handle. `content_hash` applies when the store is created; an
/// existing store keeps the algorithm it was created with.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a writer waits for another process's transaction before
    /// [`Error::StoreLocked`]. Default 30 s.
    pub busy_timeout: Duration,
    /// How long a claim on a cache key lives without a heartbeat before another process may
    /// take it over. A holder whose process is proven dead (its file lock is free) is taken
    /// over at once; the TTL covers holders whose liveness cannot be told (another host, a
    /// file system without locks) and live holders that stopped beating. Default 10 s.
    pub lease_ttl: Duration,
    /// Blob naming for a new store. Default xxh3-128.
    pub content_hash: ContentHash,
    /// Open for reading only: nothing is created or changed, and runs and other writes fail
    /// with [`Error::ReadOnly`]. An existing store that this process cannot write opens
    /// this way even without it; see [`Store::open_with`].
    pub read_only: bool,
    /// Where the bytes of artifacts go. Default (`None`): the folder `artifacts/` beside
    /// the database ([`LocalArtifacts`](artifacts::LocalArtifacts)). Any [`ArtifactStore`] that passes
    /// [`artifacts::contract::artifact_store`] may stand in, e.g.
    /// [`ObjectArtifacts`](artifacts::ObjectArtifacts); the metadata stays in the store
    /// directory. Every handle on one store must be given the same backend.
    pub artifacts: Option<Arc<dyn ArtifactStore>>,
    /// For a store whose metadata is in PostgreSQL ([`Store::connect`]): the local folder
    /// that keeps the read-through cache of S3 downloads (`<dir>/artifacts/cache/`) and
    /// that [`Store::path`] returns. Default (`None`): `$PIPELINE_HOME`, else `./.pipeline`.
    /// A local store ignores it (its folder is the store).
    pub local_dir: Option<PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(10),
            content_hash: ContentHash::Xxh3,
            read_only: false,
            artifacts: None,
            local_dir: None,
        }
    }
}

/// Blob reads since a store handle was opened.
#[derive(Debug, Default)]
pub(crate) struct BlobCounters {
    pub(crate) blob_reads: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
}

/// Counters of blob reads since the store handle was opened (tests use them to show that
/// cached runs read no artifact bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Number of blobs opened for reading (loads and re-verifications).
    pub blob_reads: u64,
    /// Bytes read from blobs.
    pub bytes_read: u64,
}

/// Result of looking up a cache key.
pub(crate) enum Lookup {
    /// A completed execution whose blobs are all present and intact.
    Hit {
        execution: i64,
        outputs: Vec<(Hash128, u64)>,
        /// The execution holding the output rows (`execution` or the one it copied).
        holder: OutputsHolder,
        /// When the holder finished (microseconds since the Unix epoch): what a step's
        /// `cache_expires` is measured from.
        produced_at_us: i64,
    },
    /// No completed execution with this key.
    Miss,
    /// A completed execution exists but an output cannot be reused.
    Damaged(Damage),
}

/// The execution whose artifact and input rows a cached row can point at
/// (`outputs_of`), and the fingerprint of its key components (`None` for rows written
/// before schema 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputsHolder {
    pub id: i64,
    pub fingerprint: Option<i64>,
}

/// Why a completed execution's output cannot be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The blob is gone.
    Missing {
        /// The output's name.
        output: String,
    },
    /// The blob's bytes do not hash to its name.
    Corrupt {
        /// The output's name.
        output: String,
    },
    /// The bytes failed to decode as `type_name` when last loaded.
    Undecodable {
        /// The output's name.
        output: String,
        /// The type they did not decode as.
        type_name: String,
    },
}

/// One output written by an execution: the same record a lease commit takes.
pub(crate) use guard::StepOutput as OutputRow;

/// What a blob's sidecar (`<blob>.json`) records: the blob's own facts and the execution
/// that produced it.
pub(crate) struct Sidecar<'a> {
    pub size: u64,
    pub type_name: &'a str,
    pub cacher: &'a str,
    pub cacher_version: u32,
    pub metadata: Option<serde_json::Value>,
    pub run_id: &'a str,
    /// The execution's name within its run.
    pub step: &'a str,
    pub output: &'a str,
    pub cache_key: Option<Hash128>,
}

impl Sidecar<'_> {
    fn to_json(&self, hash: Hash128) -> serde_json::Value {
        serde_json::json!({
            "content_hash": hash.to_hex(),
            "size": self.size,
            "type": self.type_name,
            "cacher": self.cacher,
            "cacher_version": self.cacher_version,
            "metadata": self.metadata,
            "produced_by": {
                "run_id": self.run_id,
                "step": self.step,
                "output": self.output,
                "cache_key": self.cache_key.map(Hash128::to_hex),
            },
        })
    }
}

/// The SQL expression (a literal, for `concat!`) for the key components of execution `e`:
/// a cached row pointing at another (`outputs_of`) stores them as `''` when they are the
/// same as that one's.
macro_rules! components_of_e {
    () => {
        "COALESCE(NULLIF(e.components, ''), \
         (SELECT h.components FROM executions h WHERE h.id = e.outputs_of), '')"
    };
}
pub(crate) use components_of_e;

/// `<blob>.json` beside the blob at `blob`.
pub(crate) fn sidecar_path(blob: &Path) -> PathBuf {
    blob.with_extension("json")
}

/// One input consumed by an execution.
pub(crate) struct InputRow {
    pub name: String,
    pub hash: Option<Hash128>,
    pub producer: Option<i64>,
    /// A parameter's stored form, as a blob (see `worker.rs`).
    pub value: Option<Hash128>,
}

/// An execution row and its artifacts and inputs, committed together.
pub(crate) struct ExecutionRow<'a> {
    pub run_id: &'a str,
    pub name: &'a str,
    pub step: &'a str,
    pub position: usize,
    pub status: StepStatus,
    pub cache_key: Option<Hash128>,
    pub components: &'a KeyComponents,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub reused: Option<i64>,
    /// The earlier execution a miss was compared with, as JSON ([`EarlierCall`]).
    pub compared: Option<String>,
    pub started_at_us: i64,
    pub duration: Duration,
    pub outputs: Vec<OutputRow>,
    pub inputs: Vec<InputRow>,
    /// For a cached row: the execution holding the rows of the one it reuses, as a lookup
    /// *in the same transaction* found it (nothing can have removed it since). `None`:
    /// `record_in` looks it up again.
    pub outputs_of: Option<OutputsHolder>,
    /// The lease this execution held on its key, released when the row commits.
    pub lease_holder: Option<&'a Holder>,
    /// Its attempts, metadata and metrics (empty for cached and skipped rows).
    pub details: ExecutionDetails,
}

impl Store {
    /// Loads output `output` of step `step` in run `run` (an id or a name) as `T`: the
    /// shorthand for `store.artifact(run, step, output)?.load()` (see
    /// [`StoredArtifact::load`]).
    ///
    /// Works for outputs stored by the built-in bincode and JSON cachers; use
    /// [`Store::load_with`] for other cachers.
    ///
    /// # Errors
    ///
    /// - [`Error::UnknownRun`], [`Error::AmbiguousRun`] or [`Error::UnknownStep`] when
    ///   `run`, `step` or `output` names nothing recorded;
    /// - [`Error::TypeMismatch`] when the artifact was stored as another type, or as a type
    ///   of the same name whose serde shape differs from `T`'s (the type was edited since);
    /// - [`Error::Undecodable`] when the bytes do not decode as `T` (recorded, so the next
    ///   run executes the step again);
    /// - [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged;
    /// - [`Error::Cacher`] when a cacher other than bincode or JSON stored it;
    /// - [`Error::Io`] or [`Error::Database`] when the store cannot be read.
    pub fn load<T>(&self, run: &str, step: &str, output: &str) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.artifact(run, step, output)?.load()
    }

    /// Loads an artifact by run, step and output name with an explicit cacher: the
    /// shorthand for `store.artifact(run, step, output)?.load_with(cacher)`.
    ///
    /// # Errors
    ///
    /// - [`Error::UnknownRun`], [`Error::AmbiguousRun`] or [`Error::UnknownStep`] when
    ///   `run`, `step` or `output` names nothing recorded;
    /// - [`Error::TypeMismatch`] when `T` is not the type the step returned;
    /// - [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged;
    /// - [`Error::Cacher`] when the cacher cannot read them (its error is the source);
    /// - [`Error::Io`] or [`Error::Database`] when the store cannot be read.
    pub fn load_with<T: 'static, C: Cacher<T>>(
        &self,
        run: &str,
        step: &str,
        output: &str,
        cacher: &C,
    ) -> Result<T> {
        self.artifact(run, step, output)?.load_with(cacher)
    }

    /// Loads the artifact with content hash `hash` (32 hex digits) as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownArtifact`] when `hash` is not 32 hex digits or no artifact has it;
    /// otherwise as [`StoredArtifact::load`].
    #[deprecated(
        note = "use `store.artifact_by_hash(hash)?.load()`, which takes a typed `Hash128`"
    )]
    pub fn load_hash<T>(&self, hash: &str) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let hash = hash
            .parse::<Hash128>()
            .map_err(|_| Error::UnknownArtifact(hash.to_string()))?;
        self.artifact_by_hash(hash)?.load()
    }

    /// Loads a recorded artifact with `cacher`, checking its recorded type first.
    ///
    /// # Errors
    ///
    /// As [`StoredArtifact::load_with`].
    #[deprecated(
        note = "use `store.artifact(run, step, output)?.load_with(&cacher)` (or `artifact_by_hash`)"
    )]
    pub fn load_artifact<T: 'static, C: Cacher<T>>(
        &self,
        artifact: &ArtifactRecord,
        cacher: &C,
    ) -> Result<T> {
        let requested = std::any::type_name::<T>();
        if artifact.type_name != requested {
            return Err(Error::TypeMismatch {
                artifact: format!("`{}` ({})", artifact.name, artifact.content_hash),
                stored: artifact.type_name.clone(),
                requested: requested.to_string(),
            });
        }
        self.read_blob(artifact.content_hash, cacher.id(), |input| {
            cacher.load(input)
        })
    }

    /// Saves `value` with `cacher` as a blob outside any pipeline; returns its content hash.
    /// The blob is not referenced by any execution (so garbage collection may remove it).
    ///
    /// # Errors
    ///
    /// [`Error::Cacher`] when `cacher` cannot save the value (its error is the source; the
    /// partial bytes are discarded), [`Error::ReadOnly`] on a read-only handle, and
    /// [`Error::Io`] when the blob cannot be written.
    pub fn save_blob<T, C: Cacher<T>>(&self, value: &T, cacher: &C) -> Result<Hash128> {
        let mut writer = self.blob_writer()?;
        if let Err(e) = cacher.save(value, &mut writer) {
            writer.abandon();
            return Err(Error::Cacher {
                cacher: cacher.id().to_string(),
                action: "save",
                what: std::any::type_name::<T>().to_string(),
                source: e,
            });
        }
        let (hash, _) = self.finish_blob(writer)?;
        Ok(hash)
    }

    /// Reads blob `hash` with `cacher`, verifying its content hash: for blobs written by
    /// [`save_blob`](Self::save_blob), which no execution records (a recorded artifact is
    /// loaded through [`artifact_by_hash`](Self::artifact_by_hash), which checks its type).
    ///
    /// # Errors
    ///
    /// - [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged;
    /// - [`Error::Cacher`] when the cacher cannot read them (its error is the source);
    /// - [`Error::Io`] or [`Error::Database`] when the store cannot be read.
    pub fn load_blob<T, C: Cacher<T>>(&self, hash: Hash128, cacher: &C) -> Result<T> {
        self.read_blob(hash, cacher.id(), |input| cacher.load(input))
    }
}

/// A blob being written through the store's artifact backend: bytes go in through
/// [`Write`], hashed on the way; [`Store::finish_blob`] puts it in place.
pub(crate) struct BlobWriter {
    put: Box<dyn BlobPut>,
}

impl BlobWriter {
    /// Discards the bytes after a failed save: nothing appears under any hash.
    pub(crate) fn abandon(self) {
        drop(self); // the backend's put aborts on drop
    }
}

impl Write for BlobWriter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.put.write(buf)
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.put.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.put.flush()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
