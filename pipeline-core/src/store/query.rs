//! Reading the store: runs, their step records, artifacts and lineage.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::earlier::{label_of, Candidate, Taken};
use super::metadata::FoundArtifact;
use super::{rows, Call, Candidates, SqliteMetadata, Store, StoredArtifact};
use crate::error::{Error, Result, UnknownValue};
use crate::key::Through;
use crate::key::{Hash128, InputComponent, KeyComponents};
pub use crate::status::RunStatus;
use crate::status::{Reason, StepStatus};

/// A run as recorded in the store.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Unique id (hex).
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Run name, e.g. `first_pipeline-2026_11_23-12_05_54_573248`.
    pub name: String,
    /// Status.
    pub status: RunStatus,
    /// Start, in microseconds since the Unix epoch.
    pub started_at_us: i64,
    /// Wall time, once finished.
    pub duration: Option<Duration>,
    /// Steps that executed.
    pub executed: usize,
    /// Steps reused from the cache.
    pub cached: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps skipped because an upstream step failed.
    pub skipped: usize,
}

/// An artifact recorded as the output of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    /// Output name.
    pub name: String,
    /// Hash of the bytes (the store's [`ContentHash`](crate::ContentHash) algorithm).
    pub content_hash: Hash128,
    /// Size of the bytes.
    pub size: u64,
    /// Rust type name of the value.
    pub type_name: String,
    /// Cacher id.
    pub cacher: String,
    /// Cacher version.
    pub cacher_version: u32,
    /// Extra metadata from the cacher.
    pub metadata: Option<serde_json::Value>,
}

/// An input consumed by an execution.
#[derive(Debug, Clone, Serialize)]
pub struct InputRecord {
    /// Argument name.
    pub name: String,
    /// Content hash of the consumed artifact; `None` for a parameter.
    pub content_hash: Option<Hash128>,
    /// Execution that produced the artifact (the reused one for a cached producer).
    pub producer_execution: Option<i64>,
    /// For a parameter of an executed step: the blob holding its stored form (bincode),
    /// which workers and replays decode. `None` for artifacts, and for parameters of
    /// cached, skipped or uncached rows and of rows written before schema 8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_blob: Option<Hash128>,
}

/// One step of a run as recorded in the store.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Execution id.
    pub execution_id: i64,
    /// Name within the run.
    pub name: String,
    /// Step name (shared by repeated calls of one step).
    pub step: String,
    /// Status.
    pub status: StepStatus,
    /// Cache key; `None` for skipped steps.
    pub cache_key: Option<Hash128>,
    /// Code signature (hex).
    pub code_signature: String,
    /// Start, in microseconds since the Unix epoch.
    pub started_at_us: i64,
    /// Time spent.
    pub duration: Duration,
    /// Why it executed (or was skipped).
    pub reason: Option<String>,
    /// Error message of a failed step.
    pub error: Option<String>,
    /// For a cached step: the execution whose outputs were reused.
    pub reused_execution: Option<i64>,
    /// Everything the cache key was computed from.
    pub components: KeyComponents,
    /// Parameters by name, as JSON.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Inputs in declaration order.
    pub inputs: Vec<InputRecord>,
    /// Outputs in order.
    pub outputs: Vec<ArtifactRecord>,
    /// Every attempt, when the step was retried (`#[step(retries = N)]`); empty when it
    /// ran once.
    pub attempts: Vec<crate::store::Attempt>,
    /// What the step logged with `StepContext::log_metadata`; for a cached step, that of
    /// the execution it reused.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// What the step logged with `StepContext::log_metric`; for a cached step, that of
    /// the execution it reused.
    pub metrics: std::collections::BTreeMap<String, f64>,
}

impl SqliteMetadata {
    /// Runs, newest first; only those of `pipeline` when given.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn runs(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare_cached(&rows::runs_sql("r.rowid"))
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map(params![pipeline], |r| rows::run_record(r))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db_error(e))?;
        Ok(rows)
    }

    /// Names of the pipelines with at least one run, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read.
    pub fn pipelines(&self) -> Result<Vec<String>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline")
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.db_error(e))?;
        Ok(rows)
    }

    /// The run with this id or name, or the only one whose id or name starts with it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `id_or_name` names no run or several;
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn run(&self, id_or_name: &str) -> Result<RunRecord> {
        rows::pick_run(self.runs(None)?, id_or_name)
    }

    /// The run that execution `id` belongs to.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when no execution has id `id`; [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn execution_run(&self, id: i64) -> Result<RunRecord> {
        let run_id: String = self
            .db()
            .prepare_cached("SELECT run_id FROM executions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(|e| self.db_error(e))?
            .ok_or_else(|| Error::UnknownRun(format!("execution {id}")))?;
        self.run(&run_id)
    }

    /// The newest execution of step `step` (the step's own name, shared by repeated calls)
    /// that ran or was reused before execution `before`, whichever call it was. Failed and
    /// skipped executions are left out. What a cache miss was compared with, the earlier
    /// execution of the same call, is [`Store::compared_execution`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn previous_execution(&self, step: &str, before: i64) -> Result<Option<StepRecord>> {
        // No run id is empty, so `''` excludes none.
        let id: Option<i64> = self
            .db()
            .prepare_cached(&super::earlier::newest_call_sql(false))
            .and_then(|mut s| s.query_row(params![step, "", before], |r| r.get(0)))
            .map_err(|e| self.db_error(e))?;
        id.map(|id| self.execution(id)).transpose()
    }

    /// The step records of a run (by id or name), in pipeline order.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `run` names no run or several;
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn run_steps(&self, run: &str) -> Result<Vec<StepRecord>> {
        let run = self.run(run)?;
        let ids: Vec<i64> = {
            let conn = self.db();
            let mut stmt = conn
                .prepare_cached("SELECT id FROM executions WHERE run_id = ?1 ORDER BY position")
                .map_err(|e| self.db_error(e))?;
            let ids = stmt
                .query_map([&run.id], |r| r.get(0))
                .and_then(|r| r.collect::<rusqlite::Result<Vec<i64>>>())
                .map_err(|e| self.db_error(e))?;
            ids
        };
        ids.into_iter().map(|id| self.execution(id)).collect()
    }

    /// One execution record by id.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when no execution has id `id`; [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn execution(&self, id: i64) -> Result<StepRecord> {
        let conn = self.db();
        let mut record = conn
            .prepare_cached(concat!(
                "SELECT ",
                rows::step_columns!(),
                " FROM executions e WHERE e.id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], |r| rows::step_record(r)).optional())
            .map_err(|e| self.db_error(e))?
            .ok_or_else(|| Error::UnknownRun(format!("execution {id}")))?;
        // A cached row recorded since schema 5 holds no artifact and input rows of its own:
        // they are those of the execution it points at.
        let holder: i64 = conn
            .prepare_cached("SELECT COALESCE(outputs_of, id) FROM executions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(|e| self.db_error(e))?;
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT ",
                rows::artifact_columns!(),
                " FROM artifacts WHERE execution_id = ?1 ORDER BY position"
            ))
            .map_err(|e| self.db_error(e))?;
        record.outputs = stmt
            .query_map([holder], |r| rows::artifact_record(r, 0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db_error(e))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, content_hash, producer_execution, value_blob FROM inputs \
                 WHERE execution_id = ?1 ORDER BY position",
            )
            .map_err(|e| self.db_error(e))?;
        record.inputs = stmt
            .query_map([holder], |r| rows::input_record(r, 0))
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db_error(e))?;
        Ok(record)
    }

    /// [`Backend::artifact_found`](super::metadata::Backend::artifact_found) on SQLite.
    pub(crate) fn artifact_found(&self, hash: Hash128) -> Result<Option<FoundArtifact>> {
        let conn = self.db();
        let found = conn
            .prepare_cached(
                "SELECT a.name, a.content_hash, a.size, a.type_name, a.cacher, a.cacher_version, \
                 a.metadata, a.execution_id, e.name, e.components \
                 FROM artifacts a JOIN executions e ON e.id = a.execution_id \
                 WHERE a.content_hash = ?1 ORDER BY a.id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([hash.to_hex()], |r| {
                    let components: String = r.get(9)?;
                    let components: KeyComponents =
                        serde_json::from_str(&components).map_err(|_| {
                            UnknownValue::new("key components", &components).in_column(9)
                        })?;
                    Ok((
                        rows::artifact_record(r, 0)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, String>(8)?,
                        components,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.db_error(e))?;
        Ok(found)
    }
}

impl Store {
    /// Output `output` of step `step` in run `run` (an id or a name): its record, and
    /// [`load`](StoredArtifact::load) / [`load_with`](StoredArtifact::load_with) to read it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `run` names no run or several;
    /// [`Error::UnknownStep`] when the run has no such step or output; [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn artifact(&self, run: &str, step: &str, output: &str) -> Result<StoredArtifact> {
        let (record, artifact) = self.step_output(run, step, output)?;
        let shape = record
            .components
            .outputs
            .iter()
            .find(|o| o.name == output)
            .map(|o| o.shape.clone())
            .unwrap_or_default();
        Ok(StoredArtifact {
            store: self.clone(),
            record: artifact,
            execution: record.reused_execution.unwrap_or(record.execution_id),
            step: record.name,
            shape,
        })
    }

    /// The step record and the output record of output `output` of step `step` in `run`.
    pub(crate) fn step_output(
        &self,
        run: &str,
        step: &str,
        output: &str,
    ) -> Result<(StepRecord, ArtifactRecord)> {
        let run_record = self.run(run)?;
        let steps = self.run_steps(&run_record.id)?;
        let step_record =
            steps
                .into_iter()
                .find(|s| s.name == step)
                .ok_or_else(|| Error::UnknownStep {
                    run: run_record.name.clone(),
                    what: format!("step `{step}`"),
                })?;
        let artifact = step_record
            .outputs
            .iter()
            .find(|o| o.name == output)
            .cloned()
            .ok_or_else(|| Error::UnknownStep {
                run: run_record.name.clone(),
                what: format!("output `{output}` in step `{step}`"),
            })?;
        Ok((step_record, artifact))
    }

    /// The newest recorded artifact with this content hash: its record, and
    /// [`load`](StoredArtifact::load) / [`load_with`](StoredArtifact::load_with) to read it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownArtifact`] when no artifact has this hash; [`Error::Database`] (or
    /// [`Error::StoreLocked`], [`Error::Remote`] for PostgreSQL) when the metadata cannot be
    /// read, and [`Error::UnknownStoredValue`] when its execution's key components are in a
    /// format this version does not know.
    pub fn artifact_by_hash(&self, hash: Hash128) -> Result<StoredArtifact> {
        let (record, execution, step, components) = self
            .metadata()
            .artifact_found(hash)?
            .ok_or_else(|| Error::UnknownArtifact(hash.to_hex()))?;
        let shape = components
            .outputs
            .iter()
            .find(|o| o.name == record.name)
            .map(|o| o.shape.clone())
            .unwrap_or_default();
        Ok(StoredArtifact {
            store: self.clone(),
            record,
            step,
            execution,
            shape,
        })
    }
}

/// An execution that produced or consumed an artifact.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRef {
    /// Execution id.
    pub execution_id: i64,
    /// Run id.
    pub run_id: String,
    /// Run name.
    pub run_name: String,
    /// Step name within the run.
    pub step: String,
    /// Status of the execution.
    pub status: StepStatus,
}

/// Where an artifact came from and where it went.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// The artifact's content hash.
    pub content_hash: Hash128,
    /// Executions that wrote these bytes (cached reuses are not listed here).
    pub producers: Vec<ExecutionRef>,
    /// Executions that reused these bytes from the cache.
    pub reused_by: Vec<ExecutionRef>,
    /// Executions that took the artifact as an input.
    pub consumers: Vec<ExecutionRef>,
}

/// How one step compares between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct StepComparison {
    /// Step name within the second run; within the first for a step only in the first.
    pub name: String,
    /// Name of the call in the first run it is compared with (`None` if none is): the
    /// earlier execution of the same call, found as a cache miss finds it (by key
    /// components and position, never by generated name alone), so `scale_2` may pair
    /// with `scale`.
    pub name_a: Option<String>,
    /// Status in the first run (`None` if the step is not in it).
    pub status_a: Option<StepStatus>,
    /// Status in the second run.
    pub status_b: Option<StepStatus>,
    /// Whether the cache keys are equal.
    pub same_key: bool,
    /// Whether it is a built-in call of a map or a fan-in (`pipeline.split`,
    /// `pipeline.gather`): bookkeeping, not a step of the user's. Not among
    /// [`RunComparison::changed`]; the calls that read a gathered list or a map's item say
    /// what changed in it ([`Reason::ListInputChanged`], [`Reason::ItemChanged`]).
    pub builtin: bool,
    /// What differs, from the first run to the second (empty when the keys are equal).
    pub changes: Vec<Reason>,
}

/// Per-step comparison of two runs.
#[derive(Debug, Clone, Serialize)]
pub struct RunComparison {
    /// First run.
    pub run_a: RunRecord,
    /// Second run.
    pub run_b: RunRecord,
    /// Every step of either run, in the second run's order, then steps only in the first.
    pub steps: Vec<StepComparison>,
}

impl RunComparison {
    /// The steps whose cache keys differ, built-in calls left out (see
    /// [`StepComparison::builtin`]).
    pub fn changed(&self) -> impl Iterator<Item = &StepComparison> {
        self.steps.iter().filter(|s| !s.same_key && !s.builtin)
    }
}

impl SqliteMetadata {
    /// Which executions produced, reused and consumed the artifact with `content_hash`.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn lineage(&self, content_hash: Hash128) -> Result<Lineage> {
        let hex = content_hash.to_hex();
        let conn = self.db();
        let refs = |sql: String| -> Result<Vec<ExecutionRef>> {
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map([&hex], |r| rows::execution_ref(r))
                        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                })
                .map_err(|e| self.db_error(e))
        };
        let found = rows::lineage_sql().map(refs);
        drop(conn);
        let [producers, reused_by, consumers] = found;
        rows::lineage(content_hash, [producers?, reused_by?, consumers?])
    }
}

impl Store {
    /// Compares two runs (ids, names or unique prefixes) step by step: which steps differ
    /// and why (code, parameter with both values, input, declarations).
    ///
    /// Calls are paired one to one, each call of the first run with at most one of the
    /// second, in three passes over the second run's calls:
    ///
    /// 1. a labelled call (`.named(..)`) with the call of the same step and label;
    /// 2. a call with an unpaired call of equal cache key (a relabelled call, or a call
    ///    in a loop that moved: `fit_ridge_2` with `fit_ridge_3`);
    /// 3. a call with an unpaired call of the same step by the rule that explains cache
    ///    misses (see [`Store::compared_execution`]): one whose key components differ in
    ///    at most one place (the fewest, then the nearest position); then each call left
    ///    with the unpaired call at the nearest position.
    ///
    /// So a value inserted at the front of a loop shows as one call only in the second
    /// run, every other call the same. Calls of the first run paired with none are listed
    /// after, as only in the first. Each pass is a few hash lookups per call.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `a` or `b` names no run or several;
    /// [`Error::Database`] (or [`Error::StoreLocked`]; [`Error::Remote`] on
    /// PostgreSQL) when the metadata cannot be read, and
    /// [`Error::UnknownStoredValue`] when a row holds a status this version does not know.
    pub fn compare_runs(&self, a: &str, b: &str) -> Result<RunComparison> {
        let run_a = self.run(a)?;
        let run_b = self.run(b)?;
        let steps_a = self.run_steps(&run_a.id)?;
        let steps_b = self.run_steps(&run_b.id)?;
        Ok(compare_records(run_a, run_b, &steps_a, &steps_b))
    }
}

/// [`Store::compare_runs`] on the runs' records, read once by the caller.
pub(crate) fn compare_records(
    run_a: RunRecord,
    run_b: RunRecord,
    steps_a: &[StepRecord],
    steps_b: &[StepRecord],
) -> RunComparison {
    // Each call's position among its run's calls of its step.
    let ordinals = |steps: &[StepRecord]| {
        let mut next: HashMap<&str, usize> = HashMap::new();
        steps
            .iter()
            .map(|s| {
                let k = next.entry(s.step.as_str()).or_default();
                *k += 1;
                *k - 1
            })
            .collect::<Vec<usize>>()
    };
    let (ordinal_a, ordinal_b) = (ordinals(steps_a), ordinals(steps_b));
    // Per step of the first run: its calls in position order (index = ordinal), and
    // which of them are paired.
    let mut grouped: HashMap<&str, Vec<Candidate>> = HashMap::new();
    for (sa, &ordinal) in steps_a.iter().zip(&ordinal_a) {
        grouped.entry(&sa.step).or_default().push(Candidate {
            execution: sa.execution_id,
            name: sa.name.clone(),
            ordinal,
            label: label_of(&sa.step, &sa.name).map(str::to_string),
            components: sa.components.clone(),
        });
    }
    let mut calls_a: HashMap<&str, (Candidates, Taken)> = grouped
        .into_iter()
        .map(|(step, calls)| {
            let calls = Candidates::new(run_a.id.clone(), run_a.name.clone(), calls);
            let taken = Taken::new(calls.len());
            (step, (calls, taken))
        })
        .collect();
    let index_a: HashMap<i64, usize> = steps_a
        .iter()
        .enumerate()
        .map(|(i, s)| (s.execution_id, i))
        .collect();
    let mut pair: Vec<Option<usize>> = vec![None; steps_b.len()];
    let mut paired_a = vec![false; steps_a.len()];
    let mut join = |j: usize, i: usize, pair: &mut [Option<usize>], paired_a: &mut [bool]| {
        pair[j] = Some(i);
        paired_a[i] = true;
        if let Some((_, taken)) = calls_a.get_mut(steps_a[i].step.as_str()) {
            taken.take(ordinal_a[i]);
        }
    };
    // 0. A map's per-item calls (`<call>[i]`) with equal keys: the same item, wherever
    // it moved in the list (a reordered list re-runs nothing, and says so). Only calls of
    // the same call in the body (`plus[3]` and `plus[0]`, not `plus_2[0]`, which another
    // closure calls with an equal item) pair so.
    let mut items_by_key: HashMap<(&str, Hash128), std::collections::VecDeque<usize>> =
        HashMap::new();
    for (i, sa) in steps_a.iter().enumerate() {
        if let (Some(key), Some(root)) = (sa.cache_key, crate::map::item_call_root(&sa.name)) {
            items_by_key.entry((root, key)).or_default().push_back(i);
        }
    }
    for (j, sb) in steps_b.iter().enumerate() {
        let (Some(key), Some(root)) = (sb.cache_key, crate::map::item_call_root(&sb.name)) else {
            continue;
        };
        let Some(queue) = items_by_key.get_mut(&(root, key)) else {
            continue;
        };
        if let Some(i) = queue.pop_front() {
            join(j, i, &mut pair, &mut paired_a);
        }
    }
    // 1. Labels.
    let labelled_a: HashMap<(&str, &str), usize> = steps_a
        .iter()
        .enumerate()
        .filter(|(_, s)| label_of(&s.step, &s.name).is_some())
        .map(|(i, s)| ((s.step.as_str(), s.name.as_str()), i))
        .collect();
    for (j, sb) in steps_b.iter().enumerate() {
        if pair[j].is_some() || label_of(&sb.step, &sb.name).is_none() {
            continue;
        }
        if let Some(&i) = labelled_a.get(&(sb.step.as_str(), sb.name.as_str())) {
            if !paired_a[i] {
                join(j, i, &mut pair, &mut paired_a);
            }
        }
    }
    // 2. Equal keys, the first unpaired call with the key in position order.
    let mut by_key: HashMap<Hash128, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, sa) in steps_a.iter().enumerate() {
        if let (Some(key), false) = (sa.cache_key, paired_a[i]) {
            by_key.entry(key).or_default().push_back(i);
        }
    }
    for (j, sb) in steps_b.iter().enumerate() {
        let (None, Some(key)) = (pair[j], sb.cache_key) else {
            continue;
        };
        let Some(queue) = by_key.get_mut(&key) else {
            continue;
        };
        while let Some(i) = queue.pop_front() {
            if !paired_a[i] {
                join(j, i, &mut pair, &mut paired_a);
                break;
            }
        }
    }
    // 3. The explanation rule, among the calls still unpaired: key components one
    // place apart for every call first, then the nearest position for those left.
    for by_position in [false, true] {
        for (j, sb) in steps_b.iter().enumerate() {
            if pair[j].is_some() {
                continue;
            }
            let Some((calls, taken)) = calls_a.get_mut(sb.step.as_str()) else {
                continue;
            };
            let call = Call {
                label: label_of(&sb.step, &sb.name),
                ordinal: ordinal_b[j],
                components: &sb.components,
            };
            if let Some(&i) = calls
                .claim(&call, taken, by_position)
                .and_then(|c| index_a.get(&c.execution))
            {
                pair[j] = Some(i);
                paired_a[i] = true;
            }
        }
    }
    let (named_a, named_b) = (by_name(steps_a), by_name(steps_b));
    let mut steps = Vec::with_capacity(steps_b.len());
    for (j, sb) in steps_b.iter().enumerate() {
        let sa = pair[j].map(|i| &steps_a[i]);
        let same_key = sa.is_some_and(|sa| sa.cache_key.is_some() && sa.cache_key == sb.cache_key);
        let changes = match sa {
            Some(sa) if !same_key => Reason::differences(&sa.components, &sb.components)
                .into_iter()
                .map(|r| {
                    r.read_through(&mut |input, producer| {
                        through_builtin(sa, sb, input, producer, &named_a, &named_b)
                    })
                })
                .collect(),
            Some(_) => Vec::new(),
            None => vec![Reason::FirstExecution],
        };
        steps.push(StepComparison {
            name: sb.name.clone(),
            name_a: sa.map(|s| s.name.clone()),
            status_a: sa.map(|s| s.status),
            status_b: Some(sb.status),
            same_key,
            builtin: crate::map::builtin_step(&sb.step),
            changes,
        });
    }
    for (i, sa) in steps_a.iter().enumerate() {
        if paired_a[i] {
            continue;
        }
        steps.push(StepComparison {
            name: sa.name.clone(),
            name_a: Some(sa.name.clone()),
            status_a: Some(sa.status),
            status_b: None,
            same_key: false,
            builtin: crate::map::builtin_step(&sa.step),
            changes: Vec::new(),
        });
    }
    RunComparison {
        run_a,
        run_b,
        steps,
    }
}

/// What input `input` of call `sb` (paired with `sa`), produced by call `producer` of the
/// second run, is when that producer is built in: for a gather, how the list changed
/// (the two gathers the two calls read, compared); for a map's split, the call's item.
fn through_builtin(
    sa: &StepRecord,
    sb: &StepRecord,
    input: &str,
    producer: &str,
    named_a: &HashMap<&str, &StepRecord>,
    named_b: &HashMap<&str, &StepRecord>,
) -> Option<Through> {
    let made = named_b.get(producer)?;
    if made.step == crate::gather::GATHER_STEP {
        let read_a = sa.components.inputs.iter().find_map(|i| match i {
            InputComponent::Artifact { name, producer, .. } if name == input => {
                Some(producer.as_str())
            }
            _ => None,
        })?;
        let gather_a = named_a
            .get(read_a)
            .filter(|g| g.step == crate::gather::GATHER_STEP)?;
        return Some(Through::List(Reason::differences(
            &gather_a.components,
            &made.components,
        )));
    }
    if made.step == crate::map::SPLIT_STEP {
        let list_of = |split: &StepRecord| {
            let producer = list_producer(&split.components)?;
            named_b.get(producer.as_str()).map(|r| (*r).clone())
        };
        return split_item(sb, input, made, &list_of);
    }
    None
}

/// Input `input` of call `call`, read from the map's split `split`: which item of which
/// list it is. The item is the split's output with the input's content; of equal items,
/// the one whose number the call's name holds (`train_at[2][0]` reads item 2 of the outer
/// list and item 0 of the inner one). When the list is itself an item of an enclosing
/// map's list, `list_of` (the call that produced a split's list, if recorded) walks out
/// to the list a call returned.
pub(crate) fn split_item(
    call: &StepRecord,
    input: &str,
    split: &StepRecord,
    list_of: &dyn Fn(&StepRecord) -> Option<StepRecord>,
) -> Option<Through> {
    let hash = call.inputs.iter().find(|i| i.name == input)?.content_hash?;
    // The call's item numbers, innermost first: `[0, 2]` for `train_at[2][0]`.
    let mut numbers = crate::map::item_path(&call.name).1;
    numbers.reverse();
    let index = item_of(split, hash, numbers.first().copied())?;
    let mut outer = Vec::new();
    // The outermost split walked through: its list is the one a call returned.
    let mut outermost: Option<StepRecord> = None;
    let mut list_hash = split.inputs.first()?.content_hash;
    let mut producer = list_of(split);
    while let Some(up) = producer.filter(|p| p.step == crate::map::SPLIT_STEP && outer.len() < 64) {
        outer.push(item_of(
            &up,
            list_hash?,
            numbers.get(outer.len() + 1).copied(),
        )?);
        list_hash = up.inputs.first()?.content_hash;
        producer = list_of(&up);
        outermost = Some(up);
    }
    let list = list_producer(&outermost.as_ref().unwrap_or(split).components)?;
    Some(Through::Item {
        index: usize::try_from(index).ok()?,
        outer: outer
            .into_iter()
            .map(usize::try_from)
            .collect::<Result<_, _>>()
            .ok()?,
        list,
    })
}

/// The number of the output of split `split` holding `hash` (its outputs are `item[k]`);
/// of equal items, `preferred` when it is one of them.
fn item_of(split: &StepRecord, hash: Hash128, preferred: Option<u64>) -> Option<u64> {
    let items: Vec<u64> = split
        .outputs
        .iter()
        .filter(|o| o.content_hash == hash)
        .filter_map(|o| crate::map::item_call(&o.name).map(|(_, k)| k))
        .collect();
    items
        .iter()
        .copied()
        .find(|&k| Some(k) == preferred)
        .or(items.first().copied())
}

/// A run's calls by name.
fn by_name(steps: &[StepRecord]) -> HashMap<&str, &StepRecord> {
    steps.iter().map(|s| (s.name.as_str(), s)).collect()
}

/// The call that produced the list a map's split (`split`: its key components) splits.
pub(crate) fn list_producer(split: &KeyComponents) -> Option<String> {
    split.inputs.iter().find_map(|i| match i {
        InputComponent::Artifact { producer, .. } => Some(producer.clone()),
        InputComponent::Parameter { .. } => None,
    })
}

/// A hash column: TEXT of 32 hex digits. Anything else in it is damage, reported as the
/// column's conversion error, never read as some other hash.
impl rusqlite::types::FromSql for Hash128 {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse()
            .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}
