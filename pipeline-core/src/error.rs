//! The one error type of the runtime.

use std::path::{Path, PathBuf};

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed error returned by user code and cachers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong at run time. Messages are lowercase and name the next move.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A step returned `Err` or panicked. Completed outputs stay cached, so a rerun resumes.
    ///
    /// [`source`](std::error::Error::source) is the error the step body returned (downcast
    /// it to the step's error type), or the runtime error that failed the step (an
    /// [`Error::Cacher`] that could not save an output, a store error); `None` for a panic.
    #[error("step `{step}` failed in run `{run}`: {message}")]
    StepFailed {
        /// Name of the failed step.
        step: String,
        /// The error or panic message, as [`StepReport::error`](crate::StepReport::error)
        /// shows it.
        message: String,
        /// Name of the run.
        run: String,
        /// Other steps that failed in the same run, if any.
        others: Vec<String>,
        /// The error behind `message`; `None` for a panic.
        #[source]
        source: Option<BoxError>,
    },

    /// The run was cancelled through its [`CancelToken`](crate::CancelToken): the steps
    /// running then finished, the others did not start. Completed outputs stay cached, so a
    /// rerun resumes.
    #[error(
        "run `{run}` was cancelled; {not_run} steps did not run; run the pipeline again to resume"
    )]
    Cancelled {
        /// Name of the run.
        run: String,
        /// How many steps were recorded skipped because of the cancellation.
        not_run: usize,
    },

    /// An artifact was loaded as a type other than the one it was stored as.
    #[error("artifact {artifact} was stored as `{stored}` but loaded as `{requested}`; load it with the type the step returned")]
    TypeMismatch {
        /// Short description of the artifact (step, output, hash).
        artifact: String,
        /// The type recorded when the artifact was written.
        stored: String,
        /// The type asked for.
        requested: String,
    },

    /// A blob recorded in the store is not on disk.
    #[error("blob {hash} is missing at {path}; rerun the pipeline to recreate it")]
    BlobMissing {
        /// Content hash of the blob.
        hash: String,
        /// Where it should be.
        path: PathBuf,
    },

    /// A blob's bytes do not hash to its name.
    #[error("blob {hash} at {path} is corrupt (its bytes hash to {actual}); delete it and rerun the pipeline to recreate it")]
    BlobCorrupt {
        /// Expected content hash.
        hash: String,
        /// The blob's path.
        path: PathBuf,
        /// What the bytes hash to.
        actual: String,
    },

    /// No artifact with this content hash is recorded in the store.
    #[error(
        "no artifact with content hash `{0}` in the store; list artifacts with Store::run_steps"
    )]
    UnknownArtifact(String),

    /// No run matched the given id or name.
    #[error("no run `{0}` in the store; list runs with Store::runs")]
    UnknownRun(String),

    /// More than one run's id or name starts with the given prefix.
    #[error(
        "run prefix `{prefix}` is ambiguous: it matches {}; give more characters or the full name",
        .candidates.join(", ")
    )]
    AmbiguousRun {
        /// The prefix that was given.
        prefix: String,
        /// Names of the runs it matches (newest first).
        candidates: Vec<String>,
    },

    /// The run has no step of that name, or the step has no such output.
    #[error("run `{run}` has no {what}")]
    UnknownStep {
        /// Run name.
        run: String,
        /// What was missing, e.g. "step `trainer`".
        what: String,
    },

    /// The handle is not bound to a run, e.g. loaded inside a pipeline body.
    #[error("artifact `{0}` is not bound to a run yet; load it from `Run::output()` after `run()`, or inside a step")]
    Unbound(String),

    /// The store was written by a newer version of this library.
    #[error("store at {path} has schema {found}, newer than {supported} (the newest this version knows); upgrade pipeline, or point PIPELINE_METADATA, PIPELINE_HOME or `store_path` at another store")]
    StoreTooNew {
        /// Store directory.
        path: PathBuf,
        /// Schema version found.
        found: i64,
        /// Newest schema version this build supports.
        supported: i64,
    },

    /// The path does not hold a pipeline store.
    #[error("{path} is not a pipeline store ({reason}); {}", not_a_store_fix(.path))]
    NotAStore {
        /// Path that was opened (for a store whose metadata is in PostgreSQL, its URL
        /// with the password shown as `***`).
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// The database stayed locked by another process beyond the busy timeout.
    #[error("store at {path} is locked by another process beyond the busy timeout; retry when the other run ends")]
    StoreLocked {
        /// Store directory.
        path: PathBuf,
    },

    /// The store was opened read-only, or lives where this process cannot write (a
    /// read-only file system, or no write permission).
    #[error("store at {path} is read-only ({}), so it cannot {action}; {}", .cause.describe(), .cause.fix(.path))]
    ReadOnly {
        /// Store directory (for a store whose metadata is in PostgreSQL, its URL with the
        /// password shown as `***`).
        path: PathBuf,
        /// What was attempted.
        action: String,
        /// Why the store is read-only.
        cause: ReadOnlyCause,
    },

    /// A lease token names a claim the store no longer holds as the token says: it was
    /// committed, released, adopted by another process, or taken over after its holder
    /// stopped beating (see [`Store::adopt_lease`](crate::Store::adopt_lease)).
    #[error("the lease on cache key {key} held by {holder} is no longer held; claim the key again with a new run")]
    LeaseLost {
        /// The cache key (32 hex digits).
        key: String,
        /// Who the token says holds it.
        holder: String,
    },

    /// A SQLite error other than a lock.
    #[error("metadata store error at {path}: {source}")]
    Database {
        /// Store directory.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },

    /// A file-system error.
    #[error("i/o error at {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A cacher could not save or load a value, or the store names a cacher this code
    /// does not know.
    #[error("cacher `{cacher}` could not {action} {what}: {source}")]
    Cacher {
        /// Cacher id.
        cacher: String,
        /// "save" or "load".
        action: &'static str,
        /// What was being saved or loaded.
        what: String,
        /// The cacher's error (e.g. a [`std::io::Error`] or a serde error).
        #[source]
        source: BoxError,
    },

    /// Stored bytes could not be decoded as the type asked for: the type changed in a way
    /// its cache key could not see (see [`crate::shape`]), or its `Serialize` and
    /// `Deserialize` impls disagree. Recorded in the store, so the next run of the pipeline
    /// executes the producing step again instead of reusing the bytes.
    #[error("stored output `{output}` of step `{step}` could not be decoded as `{type_name}` by cacher `{cacher}`: {source}; the next run executes `{step}` again")]
    Undecodable {
        /// Step that produced the output.
        step: String,
        /// Output name.
        output: String,
        /// The type the bytes were decoded as.
        type_name: String,
        /// Cacher id.
        cacher: String,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },

    /// A parameter could not be encoded for the cache key (its `Serialize` impl failed, or
    /// it holds a value canonical encoding rejects).
    #[error("parameter `{name}` of step `{step}` cannot be encoded: {source}")]
    Parameter {
        /// Step name (the step's node name in the pipeline, e.g. `train_2`).
        step: String,
        /// Parameter name.
        name: String,
        /// The encoder's error.
        #[source]
        source: BoxError,
    },

    /// The pipeline body wired its steps in a way that cannot run, e.g. it passed an
    /// artifact of another pipeline to a step.
    #[error("pipeline `{pipeline}` cannot run: {problem}")]
    Graph {
        /// Pipeline name.
        pipeline: String,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The store holds a value this version does not know (a status, a hash algorithm, a
    /// key format): written by a newer version, or edited by hand. Never read as a default.
    #[error("store at {path} holds unknown {what} `{value}`; it was written by a newer version of pipeline or edited by hand: upgrade pipeline, or run `pipeline verify` to find the damaged rows")]
    UnknownStoredValue {
        /// Store directory.
        path: PathBuf,
        /// What the value is, e.g. "step status".
        what: &'static str,
        /// The value found.
        value: String,
    },

    /// A remote metadata or artifact store (PostgreSQL, S3) could not be reached, refused
    /// the credentials, or failed a request. `location` names it without credentials.
    #[error("{location}: {problem}")]
    Remote {
        /// The store's URL, with any password shown as `***`.
        location: String,
        /// What went wrong and what to check.
        problem: String,
        /// The client's error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// Garbage collection deleted nothing: other metadata stores keep blobs in this store's
    /// artifact location too (their claims are in `claims`), and their references are out
    /// of this store's sight, so any blob it found unreferenced may be theirs.
    #[error(
        "gc deleted nothing: the artifacts at {location} are shared with {}, and this store ({this}) cannot see which blobs they reference; give each store an artifact location of its own (another S3 prefix or folder), or, if a store named here no longer exists, delete its claim <id>.json in {claims} and run gc again",
        .others.join(", ")
    )]
    SharedArtifacts {
        /// The artifact location (a folder or `s3://bucket/prefix`).
        location: PathBuf,
        /// Where the claims are (`<location>/.pipeline-stores`).
        claims: PathBuf,
        /// This store: `store <id> at <metadata>`.
        this: String,
        /// The other stores, as their claims name them: `store <id> at <metadata>`.
        others: Vec<String>,
    },

    /// [`Store::copy_to`](crate::Store::copy_to) refused a copy, or a run of it: the
    /// target is the source, holds a different run under the same id, names its blobs
    /// with another algorithm, or a run reuses outputs of a run that cannot be copied.
    #[error("cannot copy the store: {problem}")]
    Copy {
        /// What is wrong and what to do.
        problem: String,
    },

    /// A setting of the store or executor (environment variable, `pipeline.toml`, code) is
    /// wrong or incomplete. The message never contains a credential.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// This process was started as a pipeline worker (`PIPELINE_WORKER_JOB` is set) but
    /// ran a pipeline instead of its job: `main` does not call `pipeline::worker::enter()`
    /// first. Refused, so that workers never start workers of their own.
    #[error("this process was started as a pipeline worker but ran pipeline `{pipeline}` instead of its job: call `pipeline::worker::enter();` first in `main`")]
    NotAWorkerMain {
        /// The pipeline it tried to run.
        pipeline: String,
    },

    /// `pipeline::context()` outside a running step, or a step context used wrongly (an
    /// unknown output, a metric that is not a finite number).
    #[error("{0}")]
    Context(String),

    /// The executor backend cannot run this pipeline's steps: the cluster refused or
    /// cannot be reached, or the store is one its nodes cannot see. Nothing was submitted
    /// that is left running.
    #[error("the {backend} executor: {message}")]
    Executor {
        /// `processes` or `slurm`.
        backend: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
}

/// A text this version does not know as a value of some kind, e.g. a step status `paused`:
/// the error of the [`FromStr`](std::str::FromStr) impls of [`StepStatus`](crate::StepStatus),
/// [`RunStatus`](crate::RunStatus), [`ContentHash`](crate::ContentHash), ... Row readers wrap
/// it in a `rusqlite` conversion error; the store turns that into
/// [`Error::UnknownStoredValue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    pub(crate) what: &'static str,
    pub(crate) value: String,
}

impl UnknownValue {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        UnknownValue {
            what,
            value: value.to_string(),
        }
    }

    /// What kind of value was expected, e.g. `step status`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The text that was found.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The `rusqlite` error for column `column` of a row holding this value.
    pub(crate) fn in_column(self, column: usize) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            Box::new(self),
        )
    }
}

/// Whether `path` names a store by URL (metadata in PostgreSQL) rather than a folder.
fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.contains("://"))
}

/// What to do about a path that is not a store: a store by URL is chosen with
/// `PIPELINE_METADATA`, which wins over `PIPELINE_HOME`.
fn not_a_store_fix(path: &Path) -> &'static str {
    if is_url(path) {
        "point PIPELINE_METADATA at a database holding a store, or at an empty one and run a pipeline to create the store there"
    } else {
        "point PIPELINE_HOME or `store_path` at a store directory or an empty one"
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a store handle cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOnlyCause {
    /// The handle was opened with [`StoreOptions::read_only`](crate::StoreOptions::read_only).
    Requested,
    /// The store's directory, database or blob folder is not writable by this process: a
    /// read-only file system (a read-only mount, a shared dataset), an immutable file, or no
    /// write permission.
    Media,
}

impl ReadOnlyCause {
    fn describe(self) -> &'static str {
        match self {
            ReadOnlyCause::Requested => "opened with `StoreOptions::read_only`",
            ReadOnlyCause::Media => {
                "its file system is read-only or this process may not write to it"
            }
        }
    }

    fn fix(self, path: &Path) -> &'static str {
        match self {
            ReadOnlyCause::Requested if is_url(path) => {
                "open it without `read_only`, or point PIPELINE_METADATA at a writable store"
            }
            ReadOnlyCause::Requested => {
                "open it without `read_only`, or point PIPELINE_HOME at a writable store"
            }
            ReadOnlyCause::Media => {
                "make it writable, or copy the store directory to writable storage and point PIPELINE_HOME there"
            }
        }
    }
}
