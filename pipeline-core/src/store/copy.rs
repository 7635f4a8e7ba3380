//! [`Store::copy_to`]: copies a store (its run history, lineage and artifact bytes) into
//! another one, whatever the backends of either (SQLite or PostgreSQL metadata, a folder or
//! an S3 bucket for the bytes), through the seams: the metadata backends export and import
//! one run at a time ([`Backend::export_run`], [`Backend::import_run`]), the bytes go from
//! one [`ArtifactStore`] to the other.
//!
//! # What a copy keeps
//!
//! Run by run, oldest first (a run whose rows point at an execution of another run comes
//! after that run): the run row (its id, name, status, times, pin), its executions (key,
//! key components, miss explanation, the execution a cached step reused), their artifact
//! and input rows, and the outputs found undecodable. Run ids stay; execution ids stay
//! where the target has none of a run's ids taken (a copy into a new store keeps every id,
//! so `explain` reads the same), and are renumbered otherwise, every reference to them
//! (`outputs_of`, the reused execution, an input's producer, the compared execution of a
//! miss) rewritten to match. An execution recorded without the one it was compared with
//! gets the one the source finds written down, so a target with runs of its own explains
//! it the same; one the source compares with none may be compared with a run of the
//! target's own (the newest earlier call by id).
//!
//! # Bytes first, verified
//!
//! Every blob a run's rows reference is read from the source, hashed as it streams into
//! the target, and put in place only when it hashes to its name; a blob the target has
//! already is read there and checked instead of copied. Only then do the run's rows commit
//! in the target, all in one transaction. A blob that is missing or corrupt in the source
//! fails that run (and the runs that reuse its outputs); the others are copied.
//!
//! # Resuming
//!
//! A run is in the target completely or not at all, so a copy that stopped (killed,
//! interrupted through its progress callback, or failed) is finished by running it again:
//! runs already in the target are recognised by id and checked to be the same run, blobs
//! already there are checked and kept.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;

use rusqlite::{params, Connection, OptionalExtension};

use super::artifacts::{hash_blob, ArtifactStore};
use super::{RunRecord, RunStatus, SqliteMetadata, Store};
use crate::error::{Error, Result};
use crate::key::{Hash128, KeyComponents};

/// A run's rows as a metadata backend exports them for a copy: stored values as they are
/// (text, numbers), with the source's execution ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportedRun {
    pub id: String,
    pub pipeline: String,
    pub name: String,
    pub status: String,
    pub started_at_us: i64,
    pub duration_s: Option<f64>,
    pub pinned: bool,
    pub host: Option<String>,
    /// In id order.
    pub executions: Vec<ExportedExecution>,
    pub undecodable: Vec<ExportedUndecodable>,
}

/// One execution row with its artifact and input rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportedExecution {
    pub id: i64,
    pub name: String,
    pub step: String,
    pub position: i64,
    pub status: String,
    pub cache_key: Option<String>,
    pub code_signature: String,
    pub components: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub reused: Option<i64>,
    pub outputs_of: Option<i64>,
    /// SQLite's fingerprint of the key components (`None` from PostgreSQL).
    pub fingerprint: Option<i64>,
    pub started_at_us: i64,
    pub duration_s: f64,
    pub compared: Option<String>,
    /// The `attempts`, `metadata` and `metrics` columns (JSON, `details.rs`).
    pub details: [Option<String>; 3],
    pub artifacts: Vec<ExportedArtifact>,
    pub inputs: Vec<ExportedInput>,
}

/// An artifact row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportedArtifact {
    pub name: String,
    pub position: i64,
    pub content_hash: String,
    pub size: i64,
    pub type_name: String,
    pub cacher: String,
    pub cacher_version: i64,
    pub metadata: Option<String>,
}

/// An input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportedInput {
    pub name: String,
    pub position: i64,
    pub content_hash: Option<String>,
    pub producer: Option<i64>,
    /// A parameter's stored form (a blob), for workers and replays.
    pub value_blob: Option<String>,
}

/// An output found undecodable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportedUndecodable {
    pub execution_id: i64,
    pub output: String,
    pub type_name: String,
    pub message: String,
    pub at_us: i64,
}

/// The writes of one run's import, inside one transaction of the target's backend.
/// [`import_run`] drives it; each backend implements it on its transaction.
pub(crate) trait ImportTx {
    /// Whether a run with this id is recorded.
    fn run_exists(&mut self, id: &str) -> Result<bool>;
    /// Whether an execution with this id is recorded.
    fn execution_exists(&mut self, id: i64) -> Result<bool>;
    /// Inserts the run row.
    fn insert_run(&mut self, run: &ExportedRun) -> Result<()>;
    /// Inserts an execution (with `id`, or a new id when `None`) and its artifact and
    /// input rows, whose references are already the target's; returns its id.
    fn insert_execution(&mut self, row: &ExportedExecution, id: Option<i64>) -> Result<i64>;
    /// Inserts an undecodable mark.
    fn insert_undecodable(&mut self, row: &ExportedUndecodable) -> Result<()>;
    /// Before executions are inserted with their ids as they were, up to `max_id`: the
    /// target's own numbering must not hand these out (PostgreSQL moves its id sequence
    /// past them at once, so a pipeline running on the target meanwhile is not given one).
    fn reserve_ids(&mut self, max_id: i64) -> Result<()>;
}

/// Imports `run` through `tx`: keeps its execution ids when the target has none of them,
/// else lets the target number them; rewrites every reference to an execution through
/// `mapped` (source id to target id, for runs copied before) and the run's own new ids.
/// A reference to an execution the source no longer has (garbage collection removed its
/// run) keeps its id when the target has no execution of that id, and is cleared
/// otherwise. Returns the run's own mapping.
pub(crate) fn import_run(
    tx: &mut dyn ImportTx,
    run: &ExportedRun,
    mapped: &HashMap<i64, i64>,
) -> Result<HashMap<i64, i64>> {
    if tx.run_exists(&run.id)? {
        return Err(Error::Copy {
            problem: format!(
                "run `{}` ({}) appeared in the target while it was being copied; run the copy again",
                run.name, run.id
            ),
        });
    }
    tx.insert_run(run)?;
    let mut keep = true;
    for e in &run.executions {
        if tx.execution_exists(e.id)? {
            keep = false;
            break;
        }
    }
    if keep {
        if let Some(max) = run.executions.iter().map(|e| e.id).max() {
            tx.reserve_ids(max)?;
        }
    }
    let mut own: HashMap<i64, i64> = HashMap::with_capacity(run.executions.len());
    for e in &run.executions {
        let mut row = e.clone();
        let resolve = |id: i64, tx: &mut dyn ImportTx| -> Result<Option<i64>> {
            if let Some(&t) = own.get(&id).or_else(|| mapped.get(&id)) {
                return Ok(Some(t));
            }
            Ok(if tx.execution_exists(id)? {
                None
            } else {
                Some(id)
            })
        };
        if let Some(holder) = e.outputs_of {
            match own.get(&holder).or_else(|| mapped.get(&holder)) {
                Some(&t) => row.outputs_of = Some(t),
                None => {
                    return Err(Error::Copy {
                        problem: format!(
                            "step `{}` of run `{}` reuses the rows of execution {holder}, which is not in the target",
                            e.name, run.name
                        ),
                    })
                }
            }
        }
        row.reused = match e.reused {
            Some(id) => resolve(id, tx)?,
            None => None,
        };
        for input in &mut row.inputs {
            input.producer = match input.producer {
                Some(id) => resolve(id, tx)?,
                None => None,
            };
        }
        if let Some(compared) = &e.compared {
            row.compared = Some(remap_compared(compared, |id| resolve(id, tx))?);
        }
        let id = tx.insert_execution(&row, keep.then_some(e.id))?;
        own.insert(e.id, id);
    }
    for u in &run.undecodable {
        if let Some(&id) = own.get(&u.execution_id) {
            let mut u = u.clone();
            u.execution_id = id;
            tx.insert_undecodable(&u)?;
        }
    }
    Ok(own)
}

/// The `compared` JSON (an [`EarlierCall`](super::EarlierCall)) with its `execution_id`
/// rewritten by `resolve` (`None`: no longer known, written as 0, which no row has).
fn remap_compared(
    json: &str,
    mut resolve: impl FnMut(i64) -> Result<Option<i64>>,
) -> Result<String> {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Ok(json.to_string());
    };
    let Some(id) = value
        .get("execution_id")
        .and_then(serde_json::Value::as_i64)
    else {
        return Ok(json.to_string());
    };
    let new = resolve(id)?.unwrap_or(0);
    if new == id {
        return Ok(json.to_string());
    }
    value["execution_id"] = serde_json::Value::from(new);
    Ok(value.to_string())
}

/// The progress callback of a copy ([`CopyOptions::progress`]).
pub type CopyProgress<'a> = &'a mut dyn FnMut(&CopyEvent<'_>) -> ControlFlow<()>;

/// Settings of [`Store::copy_to`].
#[derive(Default)]
pub struct CopyOptions<'a> {
    /// Called at every step of the copy (a run begins, a blob is copied or found, a run
    /// ends); returning [`ControlFlow::Break`] stops the copy there (what is committed
    /// stays, and a later copy finishes the job), with [`CopyReport::interrupted`] set.
    pub progress: Option<CopyProgress<'a>>,
}

impl fmt::Debug for CopyOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// A step of [`Store::copy_to`], for its progress callback.
#[derive(Debug)]
#[non_exhaustive]
pub enum CopyEvent<'a> {
    /// Run `index` (from 1) of `total` is about to be copied.
    RunStarted {
        /// The source's record of the run.
        run: &'a RunRecord,
        /// Its position in the copy, from 1.
        index: usize,
        /// How many runs the source holds.
        total: usize,
    },
    /// A blob was copied into the target, its bytes verified.
    BlobCopied {
        /// Its content hash.
        hash: Hash128,
        /// Its size in bytes.
        size: u64,
    },
    /// A blob was in the target already, and its bytes there are intact.
    BlobPresent {
        /// Its content hash.
        hash: Hash128,
        /// Its size in bytes.
        size: u64,
    },
    /// A run's rows were committed in the target.
    RunCopied {
        /// The run.
        run: &'a RunRecord,
    },
    /// The target holds this run already (the same run): nothing to do.
    RunPresent {
        /// The run.
        run: &'a RunRecord,
    },
    /// A run still running in the source is left out.
    RunRunning {
        /// The run.
        run: &'a RunRecord,
    },
    /// A run could not be copied (nothing of its rows is in the target).
    RunFailed {
        /// The run.
        run: &'a RunRecord,
        /// Why.
        error: &'a Error,
    },
}

/// What [`Store::copy_to`] did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Runs whose rows were committed in the target.
    pub runs_copied: usize,
    /// Runs the target held already.
    pub runs_present: usize,
    /// Ids of runs left out because they are still running in the source.
    pub runs_running: Vec<String>,
    /// Blobs copied (each verified).
    pub blobs_copied: usize,
    /// Bytes of the blobs copied.
    pub bytes_copied: u64,
    /// Blobs the target held already (each checked).
    pub blobs_present: usize,
    /// Runs that could not be copied, by id, with the reason; the target holds none of
    /// their rows.
    pub failed: Vec<(String, Error)>,
    /// The progress callback stopped the copy before its end.
    pub interrupted: bool,
}

impl CopyReport {
    /// Whether every run that is not running in the source is now in the target.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && !self.interrupted
    }
}

impl fmt::Display for CopyReport {
    /// One line: `copied N runs, M artifacts (X MB); K runs, L artifacts already there`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copied {} run{}, {} artifact{} ({:.1} MB); {} run{}, {} artifact{} already there",
            self.runs_copied,
            plural(self.runs_copied),
            self.blobs_copied,
            plural(self.blobs_copied),
            self.bytes_copied as f64 / 1e6,
            self.runs_present,
            plural(self.runs_present),
            self.blobs_present,
            plural(self.blobs_present),
        )?;
        if !self.runs_running.is_empty() {
            write!(
                f,
                "; {} running run{} left out",
                self.runs_running.len(),
                plural(self.runs_running.len())
            )?;
        }
        if !self.failed.is_empty() {
            write!(
                f,
                "; {} run{} failed",
                self.failed.len(),
                plural(self.failed.len())
            )?;
        }
        if self.interrupted {
            write!(f, "; interrupted")?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Where a run stands in one copy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    InProgress,
    Done,
    Failed,
}

/// One copy in progress.
struct Copier<'s, 'o> {
    source: &'s Store,
    target: &'s Store,
    progress: Option<CopyProgress<'o>>,
    runs: Vec<RunRecord>,
    index_of: HashMap<String, usize>,
    state: HashMap<String, State>,
    /// Source execution id to target execution id, for every run done.
    mapped: HashMap<i64, i64>,
    /// Blobs copied or checked in this copy.
    blobs_done: HashSet<Hash128>,
    report: CopyReport,
    /// How many runs have been started, for [`CopyEvent::RunStarted`].
    started: usize,
}

/// Why a run's copy stopped.
enum Stop {
    /// This run (and the runs reusing its outputs) cannot be copied.
    Failed(Error),
    /// Nothing more is copied (the target holds a different run under a source run's id).
    Fatal(Error),
    Interrupted,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl Copier<'_, '_> {
    fn emit(&mut self, event: &CopyEvent<'_>) -> ControlFlow<()> {
        match self.progress.as_mut() {
            Some(p) => p(event),
            None => ControlFlow::Continue(()),
        }
    }

    /// Copies run `i` unless it is done, first copying the runs it points at.
    /// `Err(Stop::Interrupted)` when the callback stopped the copy.
    fn copy(&mut self, i: usize) -> std::result::Result<(), Stop> {
        let id = self.runs[i].id.clone();
        if self.state.contains_key(&id) {
            return Ok(());
        }
        if self.runs[i].status == RunStatus::Running {
            self.state.insert(id.clone(), State::Failed);
            self.report.runs_running.push(id);
            let run = self.runs[i].clone();
            return self.check(CopyEvent::RunRunning { run: &run });
        }
        self.state.insert(id.clone(), State::InProgress);
        match self.copy_run(i) {
            Ok(()) => {
                self.state.insert(id, State::Done);
                Ok(())
            }
            Err(Stop::Failed(error)) => {
                self.state.insert(id.clone(), State::Failed);
                let run = self.runs[i].clone();
                let flow = self.emit(&CopyEvent::RunFailed {
                    run: &run,
                    error: &error,
                });
                self.report.failed.push((id, error));
                if flow.is_break() {
                    return Err(Stop::Interrupted);
                }
                Ok(())
            }
            Err(stop) => Err(stop),
        }
    }

    fn check(&mut self, event: CopyEvent<'_>) -> std::result::Result<(), Stop> {
        match self.emit(&event) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Stop::Interrupted),
        }
    }

    fn copy_run(&mut self, i: usize) -> std::result::Result<(), Stop> {
        let record = self.runs[i].clone();
        let source = self.source.metadata();
        let target = self.target.metadata();
        let Some(mut run) = source.export_run(&record.id)? else {
            // Removed from the source (gc) since it was listed.
            return Ok(());
        };
        // An execution recorded without the one it was compared with is compared, when
        // explained, with the newest earlier call by id: in a target with runs of its own
        // that could be another. What the source finds is written down instead.
        for e in &mut run.executions {
            if e.compared.is_none() && e.status != "cached" && e.status != "skipped" {
                if let Some(earlier) = source.compared_execution(e.id)? {
                    e.compared = serde_json::to_string(&earlier).ok();
                }
            }
        }
        // Runs whose executions this one points at go first.
        let mut refs: Vec<(i64, bool)> = Vec::new();
        let own: HashSet<i64> = run.executions.iter().map(|e| e.id).collect();
        for e in &run.executions {
            refs.extend(e.outputs_of.map(|id| (id, true)));
            refs.extend(e.reused.map(|id| (id, false)));
            refs.extend(
                e.inputs
                    .iter()
                    .filter_map(|i| i.producer)
                    .map(|id| (id, false)),
            );
        }
        for (id, required) in refs {
            if own.contains(&id) || self.mapped.contains_key(&id) {
                continue;
            }
            let other = match source.execution_run(id) {
                Ok(other) => other,
                Err(Error::UnknownRun(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(&j) = self.index_of.get(&other.id) else {
                continue;
            };
            if !self.state.contains_key(&other.id) {
                self.copy(j)?;
            }
            if required && !self.mapped.contains_key(&id) {
                let why = match self.state.get(&other.id) {
                    Some(State::InProgress) => "which in turn reuses outputs of this run",
                    _ if other.status == RunStatus::Running => "which is still running",
                    _ => "which could not be copied",
                };
                return Err(Stop::Failed(Error::Copy {
                    problem: format!(
                        "run `{}` ({}) reuses outputs of run `{}` ({}), {why}",
                        record.name, record.id, other.name, other.id
                    ),
                }));
            }
        }
        self.started += 1;
        let total = self.runs.len();
        let started = self.started;
        self.check(CopyEvent::RunStarted {
            run: &record,
            index: started,
            total,
        })?;
        if let Some(there) = target.export_run(&record.id)? {
            same_run(&run, &there).map_err(Stop::Fatal)?;
            for (s, t) in run.executions.iter().zip(&there.executions) {
                self.mapped.insert(s.id, t.id);
            }
            self.report.runs_present += 1;
            return self.check(CopyEvent::RunPresent { run: &record });
        }
        for e in &run.executions {
            for a in &e.artifacts {
                let hash: Hash128 = a.content_hash.parse().map_err(|_| Error::Copy {
                    problem: format!(
                        "run `{}` records an artifact with content hash `{}`, which is not a hash",
                        record.name, a.content_hash
                    ),
                })?;
                if !self.blobs_done.insert(hash) {
                    continue;
                }
                let copied = match self.copy_blob(hash, &run, e, a) {
                    Ok(copied) => copied,
                    Err(err) => {
                        self.blobs_done.remove(&hash);
                        return Err(err.into());
                    }
                };
                let size = a.size as u64;
                if copied {
                    self.report.blobs_copied += 1;
                    self.report.bytes_copied += size;
                    self.check(CopyEvent::BlobCopied { hash, size })?;
                } else {
                    self.report.blobs_present += 1;
                    self.check(CopyEvent::BlobPresent { hash, size })?;
                }
            }
        }
        // Parameters' stored forms (blobs without sidecars), for workers and replays.
        for e in &run.executions {
            for i in &e.inputs {
                let Some(text) = &i.value_blob else { continue };
                let hash: Hash128 = text.parse().map_err(|_| Error::Copy {
                    problem: format!(
                        "run `{}` records a parameter blob `{text}`, which is not a hash",
                        record.name
                    ),
                })?;
                if !self.blobs_done.insert(hash) {
                    continue;
                }
                match self.copy_bytes(hash) {
                    Ok(true) => self.report.blobs_copied += 1,
                    Ok(false) => self.report.blobs_present += 1,
                    Err(err) => {
                        self.blobs_done.remove(&hash);
                        return Err(err.into());
                    }
                }
            }
        }
        let own = target.import_run(&run, &self.mapped)?;
        self.mapped.extend(own);
        self.report.runs_copied += 1;
        self.check(CopyEvent::RunCopied { run: &record })
    }

    /// Puts blob `hash` in the target (verified) with its sidecar; `false` when it was
    /// there already, intact.
    fn copy_blob(
        &self,
        hash: Hash128,
        run: &ExportedRun,
        e: &ExportedExecution,
        a: &ExportedArtifact,
    ) -> Result<bool> {
        let copied = self.copy_bytes(hash)?;
        let from = self.source.artifact_store();
        let to = self.target.artifact_store();
        let sidecar = match from.get_sidecar(hash) {
            Ok(Some(doc)) if sidecar_names(&doc, hash) => doc,
            _ => sidecar_from_rows(hash, run, e, a),
        };
        let present = to.get_sidecar(hash).ok().flatten();
        if present.as_deref() != Some(sidecar.as_slice()) {
            to.put_sidecar(hash, &sidecar)
                .map_err(|err| Error::io(to.location(hash).with_extension("json"), err))?;
        }
        Ok(copied)
    }

    /// Puts the bytes of blob `hash` in the target, verified; `false` when they were there
    /// already, intact.
    fn copy_bytes(&self, hash: Hash128) -> Result<bool> {
        let kind = self.source.content_hash_algorithm();
        let from = self.source.artifact_store();
        let to = self.target.artifact_store();
        let copied = match to
            .stat(hash)
            .map_err(|err| Error::io(to.location(hash), err))?
        {
            Some(_) => match hash_blob(to.as_ref(), hash, kind)
                .map_err(|err| Error::io(to.location(hash), err))?
            {
                Some((actual, _)) if actual == hash => false,
                Some((actual, _)) => {
                    return Err(Error::Copy {
                        problem: format!(
                        "the target's blob {hash} at {} is corrupt (its bytes hash to {actual}); \
                             delete it there and run the copy again",
                        to.location(hash).display()
                    ),
                    })
                }
                None => put_blob(from.as_ref(), to.as_ref(), hash, kind)?,
            },
            None => put_blob(from.as_ref(), to.as_ref(), hash, kind)?,
        };
        Ok(copied)
    }
}

/// Whether a sidecar document is JSON naming blob `hash`.
fn sidecar_names(doc: &[u8], hash: Hash128) -> bool {
    serde_json::from_slice::<serde_json::Value>(doc)
        .ok()
        .and_then(|v| v.get("content_hash")?.as_str().map(|h| h == hash.to_hex()))
        .unwrap_or(false)
}

/// A sidecar written from the rows, for a source blob without a readable one.
fn sidecar_from_rows(
    hash: Hash128,
    run: &ExportedRun,
    e: &ExportedExecution,
    a: &ExportedArtifact,
) -> Vec<u8> {
    let sidecar = super::Sidecar {
        size: a.size as u64,
        type_name: &a.type_name,
        cacher: &a.cacher,
        cacher_version: u32::try_from(a.cacher_version).unwrap_or(0),
        metadata: a
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
        run_id: &run.id,
        step: &e.name,
        output: &a.name,
        cache_key: e.cache_key.as_deref().and_then(|k| k.parse().ok()),
    };
    serde_json::to_vec_pretty(&sidecar.to_json(hash)).unwrap_or_default()
}

/// Streams blob `hash` from `from` into `to`, hashing it on the way; it takes its place in
/// `to` only if it hashes to `hash`. Returns `true`.
fn put_blob(
    from: &dyn ArtifactStore,
    to: &dyn ArtifactStore,
    hash: Hash128,
    kind: super::ContentHash,
) -> Result<bool> {
    let mut reader = match from.open_uncached(hash) {
        Ok(Some(reader)) => reader,
        Ok(None) => {
            return Err(Error::BlobMissing {
                hash: hash.to_hex(),
                path: from.location(hash),
            })
        }
        Err(e) => return Err(Error::io(from.location(hash), e)),
    };
    let mut put = to.put(kind).map_err(|e| Error::io(to.location(hash), e))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(from.location(hash), e)),
        };
        put.write_all(&buf[..n])
            .map_err(|e| Error::io(to.location(hash), e))?;
    }
    let mut actual = None;
    let placed = put.commit_with(&mut |h| {
        if h == hash {
            Ok(())
        } else {
            actual = Some(h);
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the bytes do not hash to the blob's name",
            ))
        }
    });
    match (placed, actual) {
        (_, Some(actual)) => Err(Error::BlobCorrupt {
            hash: hash.to_hex(),
            path: from.location(hash),
            actual: actual.to_hex(),
        }),
        (Ok(_), None) => Ok(true),
        (Err(e), None) => Err(Error::io(to.location(hash), e)),
    }
}

/// Fails unless `there` (the target's run of the same id) is the same run as `run`.
fn same_run(run: &ExportedRun, there: &ExportedRun) -> Result<()> {
    let differs = |what: &str| Error::Copy {
        problem: format!(
            "the target holds a different run under id {} ({what} differ: `{}` there, `{}` here); \
             copy into another store, or remove that run from the target",
            run.id, there.name, run.name
        ),
    };
    if run.pipeline != there.pipeline || run.name != there.name {
        return Err(differs("pipeline or name"));
    }
    if run.started_at_us != there.started_at_us {
        return Err(differs("start times"));
    }
    let names = |r: &ExportedRun| -> Vec<(String, String, Option<String>)> {
        r.executions
            .iter()
            .map(|e| (e.name.clone(), e.status.clone(), e.cache_key.clone()))
            .collect()
    };
    if names(run) != names(there) {
        return Err(differs("steps"));
    }
    Ok(())
}

impl Store {
    /// Copies this store (the source) into `target`: every run that is not running, with
    /// its executions, artifact and input rows, miss explanations, pins and undecodable
    /// marks, and the bytes of every artifact they reference, verified. Works between any
    /// two stores (SQLite or PostgreSQL metadata, a folder or S3 for the bytes), either
    /// way; the source is only read.
    ///
    /// Run by run, oldest first: a run's blobs are copied (hashed while they stream; a
    /// blob the target has is checked there instead), then its rows commit in the target
    /// in one transaction. Run ids stay; execution ids stay when free in the target, else
    /// they are renumbered with every reference to them. Running the copy again finishes
    /// an interrupted one: runs the target holds already are checked to be the same run
    /// and skipped, so nothing is duplicated. See the module documentation of
    /// `store/copy.rs` for the details.
    ///
    /// A run that cannot be copied (a blob missing or corrupt in the source, a corrupt
    /// blob in the target) is listed in [`CopyReport::failed`], with the runs that reuse
    /// its outputs; the others are copied.
    ///
    /// Do not run garbage collection on the target while a copy into it runs: a blob
    /// copied is unreferenced until its run's rows commit.
    ///
    /// # Errors
    ///
    /// - [`Error::Copy`] when `target` is this store, names the same metadata, uses
    ///   another content-hash algorithm, or holds a *different* run under the id of a run
    ///   of the source (nothing more is copied then);
    /// - [`Error::ReadOnly`] when `target` is read-only;
    /// - the backends' errors ([`Error::Database`], [`Error::Remote`], [`Error::Io`])
    ///   when either store cannot be read or the target cannot be written.
    pub fn copy_to(&self, target: &Store, options: CopyOptions<'_>) -> Result<CopyReport> {
        target.check_writable("receive a copy")?;
        if self.same_metadata(target) {
            return Err(Error::Copy {
                problem: format!(
                    "the target is the source ({}); name another store",
                    self.describe()
                ),
            });
        }
        if self.content_hash_algorithm() != target.content_hash_algorithm() {
            return Err(Error::Copy {
                problem: format!(
                    "the source names its blobs by {} hashes and the target by {}; copy into a new store",
                    self.content_hash_algorithm(),
                    target.content_hash_algorithm()
                ),
            });
        }
        // The target's blobs go straight to its artifact store: claim the location first,
        // as the target's own first blob would (`claim.rs`), so that another store's gc
        // there never takes them for its own garbage.
        target.claim_artifacts()?;
        let mut runs = self.metadata().runs(None)?;
        runs.reverse();
        let index_of = runs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let mut copier = Copier {
            source: self,
            target,
            progress: options.progress,
            runs,
            index_of,
            state: HashMap::new(),
            mapped: HashMap::new(),
            blobs_done: HashSet::new(),
            report: CopyReport::default(),
            started: 0,
        };
        for i in 0..copier.runs.len() {
            match copier.copy(i) {
                Ok(()) => {}
                Err(Stop::Interrupted) => {
                    copier.report.interrupted = true;
                    break;
                }
                Err(Stop::Failed(e) | Stop::Fatal(e)) => return Err(e),
            }
        }
        Ok(copier.report)
    }

    /// Whether `other` names the same metadata as this store.
    fn same_metadata(&self, other: &Store) -> bool {
        if self.same_handle(other) {
            return true;
        }
        match (self.sqlite(), other.sqlite()) {
            (Some(a), Some(b)) => {
                let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
                canon(a.path()).is_some() && canon(a.path()) == canon(b.path())
            }
            (None, None) => self.describe() == other.describe(),
            _ => false,
        }
    }
}

/// SQLite's side of a copy.
impl SqliteMetadata {
    /// A run's rows for a copy, read in one snapshot; `None` when there is no such run.
    pub(crate) fn export_run(&self, run_id: &str) -> Result<Option<ExportedRun>> {
        let mut conn = self.db();
        let tx = conn.transaction().map_err(|e| self.db_error(e))?;
        let out = export_sqlite(&tx, run_id).map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(out)
    }

    /// Imports a run exported from another store, in one write transaction.
    pub(crate) fn import_run(
        &self,
        run: &ExportedRun,
        mapped: &HashMap<i64, i64>,
    ) -> Result<HashMap<i64, i64>> {
        self.check_writable("receive a copy")?;
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let own = import_run(
            &mut SqliteImport {
                meta: self,
                tx: &tx,
                run_id: &run.id,
            },
            run,
            mapped,
        )?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(own)
    }
}

fn export_sqlite(c: &Connection, run_id: &str) -> rusqlite::Result<Option<ExportedRun>> {
    let run = c
        .query_row(
            "SELECT id, pipeline, name, status, started_at_us, duration_s, pinned, host \
             FROM runs WHERE id = ?1",
            [run_id],
            |r| {
                Ok(ExportedRun {
                    id: r.get(0)?,
                    pipeline: r.get(1)?,
                    name: r.get(2)?,
                    status: r.get(3)?,
                    started_at_us: r.get(4)?,
                    duration_s: r.get(5)?,
                    pinned: r.get::<_, i64>(6)? != 0,
                    host: r.get(7)?,
                    executions: Vec::new(),
                    undecodable: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut run) = run else {
        return Ok(None);
    };
    let mut stmt = c.prepare(
        "SELECT id, name, step, position, status, cache_key, code_signature, components, \
         reason, error, reused_execution, outputs_of, fingerprint, started_at_us, duration_s, \
         compared, attempts, metadata, metrics FROM executions WHERE run_id = ?1 ORDER BY id",
    )?;
    run.executions = stmt
        .query_map([run_id], |r| {
            Ok(ExportedExecution {
                id: r.get(0)?,
                name: r.get(1)?,
                step: r.get(2)?,
                position: r.get(3)?,
                status: r.get(4)?,
                cache_key: r.get(5)?,
                code_signature: r.get(6)?,
                components: r.get(7)?,
                reason: r.get(8)?,
                error: r.get(9)?,
                reused: r.get(10)?,
                outputs_of: r.get(11)?,
                fingerprint: r.get(12)?,
                started_at_us: r.get(13)?,
                duration_s: r.get(14)?,
                compared: r.get(15)?,
                details: [r.get(16)?, r.get(17)?, r.get(18)?],
                artifacts: Vec::new(),
                inputs: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let at: HashMap<i64, usize> = run
        .executions
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i))
        .collect();
    let mut stmt = c.prepare(
        "SELECT a.execution_id, a.name, a.position, a.content_hash, a.size, a.type_name, \
         a.cacher, a.cacher_version, a.metadata \
         FROM artifacts a JOIN executions e ON e.id = a.execution_id \
         WHERE e.run_id = ?1 ORDER BY a.execution_id, a.position",
    )?;
    let mut rows = stmt.query([run_id])?;
    while let Some(r) = rows.next()? {
        let execution: i64 = r.get(0)?;
        if let Some(&i) = at.get(&execution) {
            run.executions[i].artifacts.push(ExportedArtifact {
                name: r.get(1)?,
                position: r.get(2)?,
                content_hash: r.get(3)?,
                size: r.get(4)?,
                type_name: r.get(5)?,
                cacher: r.get(6)?,
                cacher_version: r.get(7)?,
                metadata: r.get(8)?,
            });
        }
    }
    let mut stmt = c.prepare(
        "SELECT i.execution_id, i.name, i.position, i.content_hash, i.producer_execution, \
         i.value_blob FROM inputs i JOIN executions e ON e.id = i.execution_id \
         WHERE e.run_id = ?1 ORDER BY i.execution_id, i.position",
    )?;
    let mut rows = stmt.query([run_id])?;
    while let Some(r) = rows.next()? {
        let execution: i64 = r.get(0)?;
        if let Some(&i) = at.get(&execution) {
            run.executions[i].inputs.push(ExportedInput {
                name: r.get(1)?,
                position: r.get(2)?,
                content_hash: r.get(3)?,
                producer: r.get(4)?,
                value_blob: r.get(5)?,
            });
        }
    }
    let has_undecodable: bool = c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'undecodable')",
        [],
        |r| r.get(0),
    )?;
    if has_undecodable {
        let mut stmt = c.prepare(
            "SELECT u.execution_id, u.output, u.type_name, u.message, u.at_us \
             FROM undecodable u JOIN executions e ON e.id = u.execution_id \
             WHERE e.run_id = ?1 ORDER BY u.execution_id, u.output",
        )?;
        run.undecodable = stmt
            .query_map([run_id], |r| {
                Ok(ExportedUndecodable {
                    execution_id: r.get(0)?,
                    output: r.get(1)?,
                    type_name: r.get(2)?,
                    message: r.get(3)?,
                    at_us: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(Some(run))
}

/// [`ImportTx`] on a SQLite write transaction.
struct SqliteImport<'a> {
    meta: &'a SqliteMetadata,
    tx: &'a Connection,
    run_id: &'a str,
}

impl SqliteImport<'_> {
    fn err(&self, e: rusqlite::Error) -> Error {
        self.meta.db_error(e)
    }
}

impl ImportTx for SqliteImport<'_> {
    fn run_exists(&mut self, id: &str) -> Result<bool> {
        self.tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn execution_exists(&mut self, id: i64) -> Result<bool> {
        self.tx
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM executions WHERE id = ?1)")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    fn insert_run(&mut self, run: &ExportedRun) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO runs(id, pipeline, name, status, started_at_us, duration_s, pinned, host) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run.id,
                    run.pipeline,
                    run.name,
                    run.status,
                    run.started_at_us,
                    run.duration_s,
                    i64::from(run.pinned),
                    run.host
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn insert_execution(&mut self, row: &ExportedExecution, id: Option<i64>) -> Result<i64> {
        // SQLite keeps a fingerprint of the key components; rows from PostgreSQL have none.
        let fingerprint = match row.fingerprint {
            Some(f) => Some(f),
            None if !row.components.is_empty() => {
                serde_json::from_str::<KeyComponents>(&row.components)
                    .ok()
                    .map(|c| c.fingerprint())
            }
            None => match row.outputs_of {
                Some(holder) => self
                    .tx
                    .query_row(
                        "SELECT fingerprint FROM executions WHERE id = ?1",
                        [holder],
                        |r| r.get::<_, Option<i64>>(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?
                    .flatten(),
                None => None,
            },
        };
        self.tx
            .prepare_cached(
                "INSERT INTO executions(id, run_id, name, step, position, status, cache_key, \
                 code_signature, components, reason, error, reused_execution, outputs_of, \
                 fingerprint, started_at_us, duration_s, compared, attempts, metadata, metrics) \
                 VALUES (?1, ?17, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?18, ?19, ?20)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    row.name,
                    row.step,
                    row.position,
                    row.status,
                    row.cache_key,
                    row.code_signature,
                    row.components,
                    row.reason,
                    row.error,
                    row.reused,
                    row.outputs_of,
                    fingerprint,
                    row.started_at_us,
                    row.duration_s,
                    row.compared,
                    self.run_id,
                    row.details[0],
                    row.details[1],
                    row.details[2],
                ])
            })
            .map_err(|e| self.err(e))?;
        let id = self.tx.last_insert_rowid();
        for a in &row.artifacts {
            self.tx
                .prepare_cached(
                    "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                     type_name, cacher, cacher_version, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        a.name,
                        a.position,
                        a.content_hash,
                        a.size,
                        a.type_name,
                        a.cacher,
                        a.cacher_version,
                        a.metadata
                    ])
                })
                .map_err(|e| self.err(e))?;
            // Record the blob's stat as a write does, so hits on it need no re-hash.
            if let Ok(hash) = a.content_hash.parse::<Hash128>() {
                if let Ok(stat) = self.meta.blob_stat(hash) {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO blobs(hash, size, mtime_ns) VALUES (?1, ?2, ?3) \
                             ON CONFLICT(hash) DO UPDATE SET size = ?2, mtime_ns = ?3",
                        )
                        .and_then(|mut s| {
                            s.execute(params![a.content_hash, stat.size as i64, stat.modified_ns])
                        })
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        for i in &row.inputs {
            self.tx
                .prepare_cached(
                    "INSERT INTO inputs(execution_id, name, position, content_hash, \
                     producer_execution, value_blob) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        i.name,
                        i.position,
                        i.content_hash,
                        i.producer,
                        i.value_blob
                    ])
                })
                .map_err(|e| self.err(e))?;
        }
        Ok(id)
    }

    fn insert_undecodable(&mut self, row: &ExportedUndecodable) -> Result<()> {
        self.tx
            .execute(
                "INSERT OR REPLACE INTO undecodable(execution_id, output, type_name, message, at_us) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.execution_id,
                    row.output,
                    row.type_name,
                    row.message,
                    row.at_us
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn reserve_ids(&mut self, _max_id: i64) -> Result<()> {
        // A new rowid is one past the largest: nothing to do.
        Ok(())
    }
}
