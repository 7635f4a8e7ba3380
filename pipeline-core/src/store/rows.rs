//! Turning result rows into records, whatever the database holds them: the SQLite store
//! (`query.rs`) and the PostgreSQL backend (`postgres/`) select the same columns in the same
//! order, so they share the queries where the two dialects agree and the code that makes a
//! [`RunRecord`], [`StepRecord`], [`ArtifactRecord`], [`InputRecord`] or [`Lineage`] of
//! them.
//!
//! Shared SQL is written with SQLite's numbered parameters (`?1`); the PostgreSQL backend
//! numbers them its way (`$1`) before preparing.

use std::str::FromStr;
use std::time::Duration;

use super::query::{ArtifactRecord, ExecutionRef, InputRecord, Lineage, RunRecord, StepRecord};
use crate::error::{Error, Result, UnknownValue};
use crate::key::{Hash128, InputComponent, KeyComponents};
use crate::status::{RunStatus, StepStatus};

/// A value that both databases can read from a column (`String`, `i64`, `f64`, `bool`,
/// [`Hash128`], and `Option`s of them).
pub(crate) trait Cell: rusqlite::types::FromSql + PgCell {}

impl<T: rusqlite::types::FromSql + PgCell> Cell for T {}

/// What PostgreSQL needs of a [`Cell`] (nothing without the `postgres` feature).
#[cfg(feature = "postgres")]
pub(crate) trait PgCell: for<'a> postgres::types::FromSql<'a> {}
#[cfg(feature = "postgres")]
impl<T: for<'a> postgres::types::FromSql<'a>> PgCell for T {}
/// What PostgreSQL needs of a [`Cell`] (nothing without the `postgres` feature).
#[cfg(not(feature = "postgres"))]
pub(crate) trait PgCell {}
#[cfg(not(feature = "postgres"))]
impl<T> PgCell for T {}

/// A hash column in PostgreSQL: TEXT of 32 hex digits; anything else is a value this
/// version does not know, never read as some other hash.
#[cfg(feature = "postgres")]
impl<'a> postgres::types::FromSql<'a> for Hash128 {
    fn from_sql(ty: &postgres::types::Type, raw: &'a [u8]) -> Result<Self, crate::error::BoxError> {
        let text = <&str as postgres::types::FromSql>::from_sql(ty, raw)?;
        Hash128::from_hex(text).ok_or_else(|| UnknownValue::new("hash", text).into())
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        <&str as postgres::types::FromSql>::accepts(ty)
    }
}

/// One result row of either database.
pub(crate) trait Columns {
    /// The database's error for a column that cannot be read.
    type Error;

    /// Column `column` (from 0) as a `T`.
    fn get<T: Cell>(&self, column: usize) -> Result<T, Self::Error>;

    /// The error for column `column`, which holds a value this version does not know.
    fn unknown(&self, column: usize, value: UnknownValue) -> Self::Error;
}

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn get<T: Cell>(&self, column: usize) -> rusqlite::Result<T> {
        rusqlite::Row::get(self, column)
    }

    fn unknown(&self, column: usize, value: UnknownValue) -> rusqlite::Error {
        value.in_column(column)
    }
}

/// A run and its step counts. Read with [`run_record`].
pub(crate) fn runs_sql(insertion_order: &str) -> String {
    format!(
        "SELECT r.id, r.pipeline, r.name, r.status, r.started_at_us, r.duration_s, \
         (SELECT count(*) FROM executions e WHERE e.run_id = r.id AND e.status = 'executed'), \
         (SELECT count(*) FROM executions e WHERE e.run_id = r.id AND e.status = 'cached'), \
         (SELECT count(*) FROM executions e WHERE e.run_id = r.id AND e.status = 'failed'), \
         (SELECT count(*) FROM executions e WHERE e.run_id = r.id AND e.status = 'skipped') \
         FROM runs r WHERE CAST(?1 AS TEXT) IS NULL OR r.pipeline = ?1 \
         ORDER BY r.started_at_us DESC, {insertion_order} DESC"
    )
}

/// The columns of an execution `e` that [`step_record`] reads, as a literal for `concat!`.
macro_rules! step_columns {
    () => {
        concat!(
            "e.id, e.name, e.step, e.status, e.cache_key, e.code_signature, \
             e.started_at_us, e.duration_s, e.reason, e.error, e.reused_execution, ",
            $crate::store::components_of_e!(),
            ", ",
            $crate::store::details_of_e!()
        )
    };
}
pub(crate) use step_columns;

/// The columns of an artifact row that [`artifact_record`] reads, as a literal for `concat!`.
macro_rules! artifact_columns {
    () => {
        "name, content_hash, size, type_name, cacher, cacher_version, metadata"
    };
}
pub(crate) use artifact_columns;

/// Column `column` as a `T` read from its text (a status): a text this version does not
/// know is an error, never a default.
fn parsed<T: FromStr<Err = UnknownValue>, R: Columns>(r: &R, column: usize) -> Result<T, R::Error> {
    let text: String = r.get(column)?;
    text.parse().map_err(|e| r.unknown(column, e))
}

/// A [`RunRecord`] from the columns of [`runs_sql`].
pub(crate) fn run_record<R: Columns>(r: &R) -> Result<RunRecord, R::Error> {
    let duration: Option<f64> = r.get(5)?;
    let count = |i: usize| -> Result<usize, R::Error> { Ok(r.get::<i64>(i)? as usize) };
    Ok(RunRecord {
        status: parsed::<RunStatus, R>(r, 3)?,
        duration: duration.and_then(|d| Duration::try_from_secs_f64(d).ok()),
        id: r.get(0)?,
        pipeline: r.get(1)?,
        name: r.get(2)?,
        started_at_us: r.get(4)?,
        executed: count(6)?,
        cached: count(7)?,
        failed: count(8)?,
        skipped: count(9)?,
    })
}

/// A [`StepRecord`] without its inputs and outputs, from the columns of [`step_columns`].
pub(crate) fn step_record<R: Columns>(r: &R) -> Result<StepRecord, R::Error> {
    let components: String = r.get(11)?;
    // Components this version cannot read (a newer key format) are an error, not an empty
    // record that would hide the parameters and inputs.
    let components: KeyComponents = serde_json::from_str(&components)
        .map_err(|_| r.unknown(11, UnknownValue::new("key components", &components)))?;
    let parameters = components
        .inputs
        .iter()
        .filter_map(|i| match i {
            InputComponent::Parameter { name, value, .. } => Some((name.clone(), value.clone())),
            InputComponent::Artifact { .. } => None,
        })
        .collect();
    let duration: f64 = r.get(7)?;
    let (attempts, metadata, metrics): (Option<String>, Option<String>, Option<String>) =
        (r.get(12)?, r.get(13)?, r.get(14)?);
    let details = crate::store::ExecutionDetails::from_columns(
        attempts.as_deref(),
        metadata.as_deref(),
        metrics.as_deref(),
    );
    Ok(StepRecord {
        execution_id: r.get(0)?,
        name: r.get(1)?,
        step: r.get(2)?,
        status: parsed::<StepStatus, R>(r, 3)?,
        cache_key: r.get(4)?,
        code_signature: r.get(5)?,
        started_at_us: r.get(6)?,
        duration: Duration::try_from_secs_f64(duration).unwrap_or_default(),
        reason: r.get(8)?,
        error: r.get(9)?,
        reused_execution: r.get(10)?,
        components,
        parameters,
        inputs: Vec::new(),
        outputs: Vec::new(),
        attempts: details.attempts,
        metadata: details.metadata,
        metrics: details.metrics,
    })
}

/// An [`ArtifactRecord`] from the columns of [`artifact_columns`], starting at `first`.
pub(crate) fn artifact_record<R: Columns>(r: &R, first: usize) -> Result<ArtifactRecord, R::Error> {
    let metadata: Option<String> = r.get(first + 6)?;
    Ok(ArtifactRecord {
        name: r.get(first)?,
        content_hash: r.get(first + 1)?,
        size: r.get::<i64>(first + 2)? as u64,
        type_name: r.get(first + 3)?,
        cacher: r.get(first + 4)?,
        cacher_version: r.get::<i64>(first + 5)? as u32,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
    })
}

/// An [`InputRecord`] from the columns `name, content_hash, producer_execution,
/// value_blob`, starting at `first`.
pub(crate) fn input_record<R: Columns>(r: &R, first: usize) -> Result<InputRecord, R::Error> {
    Ok(InputRecord {
        name: r.get(first)?,
        content_hash: r.get(first + 1)?,
        producer_execution: r.get(first + 2)?,
        value_blob: r.get(first + 3)?,
    })
}

/// The three lineage queries of a content hash (`?1`, hex): its producers, the executions
/// that reused it, and its consumers. Each selects what [`execution_ref`] reads.
///
/// The executions whose outputs (inputs) hold the hash are those with rows of their own
/// (executed rows, and cached rows from before SQLite schema 5) and cached rows pointing at
/// one of those (`outputs_of`).
pub(crate) fn lineage_sql() -> [String; 3] {
    let holding = |table: &str, status: &str| {
        format!(
            "WITH h(id) AS (SELECT execution_id FROM {table} WHERE content_hash = ?1) \
             SELECT e.id, e.run_id, r.name, e.name, e.status FROM executions e \
             JOIN runs r ON r.id = e.run_id \
             WHERE {status} (e.id IN (SELECT id FROM h) OR e.outputs_of IN (SELECT id FROM h)) \
             ORDER BY e.id"
        )
    };
    [
        holding("artifacts", "e.status = 'executed' AND"),
        holding("artifacts", "e.status = 'cached' AND"),
        holding("inputs", ""),
    ]
}

/// An [`ExecutionRef`] from a row of [`lineage_sql`].
pub(crate) fn execution_ref<R: Columns>(r: &R) -> Result<ExecutionRef, R::Error> {
    Ok(ExecutionRef {
        execution_id: r.get(0)?,
        run_id: r.get(1)?,
        run_name: r.get(2)?,
        step: r.get(3)?,
        status: parsed::<StepStatus, R>(r, 4)?,
    })
}

/// The lineage of `content_hash` from the results of the three [`lineage_sql`] queries.
///
/// # Errors
///
/// [`Error::UnknownArtifact`] when no execution produced, reused or consumed it.
pub(crate) fn lineage(
    content_hash: Hash128,
    [producers, reused_by, consumers]: [Vec<ExecutionRef>; 3],
) -> Result<Lineage> {
    if producers.is_empty() && reused_by.is_empty() && consumers.is_empty() {
        return Err(Error::UnknownArtifact(content_hash.to_hex()));
    }
    Ok(Lineage {
        content_hash,
        producers,
        reused_by,
        consumers,
    })
}

/// The run `id_or_name` names among `all` (newest first): the one with this id or name, or
/// the only one whose id or name starts with it.
///
/// # Errors
///
/// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when it names no run or several.
pub(crate) fn pick_run(all: Vec<RunRecord>, id_or_name: &str) -> Result<RunRecord> {
    if let Some(r) = all
        .iter()
        .find(|r| r.id == id_or_name || r.name == id_or_name)
    {
        return Ok(r.clone());
    }
    let mut matches: Vec<RunRecord> = all
        .into_iter()
        .filter(|r| r.id.starts_with(id_or_name) || r.name.starts_with(id_or_name))
        .collect();
    match matches.len() {
        1 if !id_or_name.is_empty() => Ok(matches.remove(0)),
        n if n > 1 && !id_or_name.is_empty() => Err(Error::AmbiguousRun {
            prefix: id_or_name.to_string(),
            candidates: matches.into_iter().map(|r| r.name).collect(),
        }),
        _ => Err(Error::UnknownRun(id_or_name.to_string())),
    }
}
