//! What a step printed: the stdout and stderr of a step that ran in a worker process or a
//! Slurm job, kept as content-addressed blobs in the store's artifact store and recorded
//! per execution in the table `execution_logs` (SQLite schema 9, PostgreSQL schema 4).
//!
//! The driver keeps them once the job has ended, whether the step succeeded or failed: it
//! reads the worker's pipes (process backend) or the job's log files (Slurm). Only the end
//! of each stream is kept, at most [`LOG_KEPT`] bytes; the row says how many bytes the job
//! wrote in all. A job whose driver died leaves no logs row (its Slurm log files stay in
//! the log folder). Steps on the thread backend print to the driver's own streams, so
//! nothing is kept for them.
//!
//! Log blobs are artifacts like outputs: gc keeps them while their execution row exists,
//! `verify` reads them, `copy_to` copies them. They have no sidecar (`<blob>.json`). An
//! empty stream (most steps print nothing to one of them) is a row of size 0 whose blob is
//! never written: its row names the hash of no bytes, and reading it reads nothing.
//! Writing it would cost a durable blob write per job for no information.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::rows::Columns;
use super::{SqliteMetadata, Store};
use crate::error::{Error, Result, UnknownValue};
use crate::key::Hash128;

/// How much of each stream of a job is kept: its last 16 MiB.
pub const LOG_KEPT: u64 = 16 * 1024 * 1024;

/// One of a job's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// The name stored and shown: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogStream {
    type Err = UnknownValue;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownValue> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            other => Err(UnknownValue::new("log stream", other)),
        }
    }
}

/// A stream of an execution as the store keeps it ([`Store::execution_logs`]); its bytes
/// are read with [`Store::read_log`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionLog {
    /// The execution whose job wrote it.
    pub execution_id: i64,
    /// Which stream.
    pub stream: LogStream,
    /// The blob holding the bytes kept.
    pub content_hash: Hash128,
    /// Bytes kept (the end of the stream, at most [`LOG_KEPT`]).
    pub size: u64,
    /// Bytes the job wrote to the stream in all; more than `size` when its start was cut.
    pub total_size: u64,
}

impl ExecutionLog {
    /// Whether the start of the stream was dropped (it was longer than [`LOG_KEPT`]).
    pub fn truncated(&self) -> bool {
        self.total_size > self.size
    }
}

/// The columns [`log_record`] reads, for `?1` an execution id.
pub(crate) const EXECUTION_LOGS_SQL: &str =
    "SELECT execution_id, stream, content_hash, size, total_size FROM execution_logs \
     WHERE execution_id = ?1 ORDER BY stream DESC";

/// The `INSERT` of one row, replacing the row of the same execution and stream
/// (PostgreSQL numbers the parameters its way).
pub(crate) const RECORD_LOG_SQL: &str =
    "INSERT INTO execution_logs(execution_id, stream, content_hash, size, total_size) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (execution_id, stream) DO UPDATE SET \
     content_hash = excluded.content_hash, size = excluded.size, total_size = excluded.total_size";

/// An [`ExecutionLog`] from the columns of [`EXECUTION_LOGS_SQL`].
pub(crate) fn log_record<R: Columns>(r: &R) -> std::result::Result<ExecutionLog, R::Error> {
    let stream: String = r.get(1)?;
    let stream = stream.parse().map_err(|e| r.unknown(1, e))?;
    Ok(ExecutionLog {
        execution_id: r.get(0)?,
        stream,
        content_hash: r.get(2)?,
        size: r.get::<i64>(3)? as u64,
        total_size: r.get::<i64>(4)? as u64,
    })
}

impl SqliteMetadata {
    /// SQLite's side of `Backend::record_logs`: one transaction.
    pub(crate) fn record_logs(&self, logs: &[ExecutionLog]) -> Result<()> {
        self.check_writable("keep step logs")?;
        let mut conn = self.db();
        let tx = conn.transaction().map_err(|e| self.db_error(e))?;
        for log in logs {
            tx.execute(
                RECORD_LOG_SQL,
                rusqlite::params![
                    log.execution_id,
                    log.stream.as_str(),
                    log.content_hash.to_hex(),
                    log.size as i64,
                    log.total_size as i64
                ],
            )
            .map_err(|e| self.db_error(e))?;
        }
        tx.commit().map_err(|e| self.db_error(e))
    }

    /// SQLite's side of `Backend::execution_logs`.
    pub(crate) fn execution_logs(&self, execution: i64) -> Result<Vec<ExecutionLog>> {
        self.db()
            .prepare_cached(EXECUTION_LOGS_SQL)
            .and_then(|mut s| {
                s.query_map([execution], |r| log_record(r))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))
    }
}

impl Store {
    /// The streams kept of execution `execution` (its id, as in
    /// [`StepRecord::execution_id`](super::StepRecord::execution_id)): stdout first, then
    /// stderr. Empty for a step that ran on the thread backend, was cached or skipped, or
    /// whose driver died before its job ended.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::Remote`] on PostgreSQL) when the metadata cannot
    /// be read.
    pub fn execution_logs(&self, execution: i64) -> Result<Vec<ExecutionLog>> {
        self.metadata().execution_logs(execution)
    }

    /// The bytes kept of `log`, their content hash verified (none for an empty stream,
    /// whose blob is not written).
    ///
    /// # Errors
    ///
    /// [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the blob is gone or damaged;
    /// [`Error::Io`] when it cannot be read.
    pub fn read_log(&self, log: &ExecutionLog) -> Result<Vec<u8>> {
        if log.size == 0 {
            return Ok(Vec::new());
        }
        self.read_blob(log.content_hash, "log", |input| {
            let mut bytes = Vec::with_capacity(log.size as usize);
            input.read_to_end(&mut bytes)?;
            Ok(bytes)
        })
    }

    /// Keeps the streams a job of execution `execution` wrote: each as a blob, then one
    /// row per stream. `streams` holds each stream's kept end and its total length.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`], [`Error::Io`] when a blob cannot be written, and the
    /// metadata's errors.
    pub(crate) fn keep_logs(
        &self,
        execution: i64,
        streams: &[(LogStream, &[u8], u64)],
    ) -> Result<Vec<ExecutionLog>> {
        let mut logs = Vec::with_capacity(streams.len());
        for &(stream, bytes, total) in streams {
            if bytes.is_empty() {
                logs.push(ExecutionLog {
                    execution_id: execution,
                    stream,
                    content_hash: super::blob::Hasher::new(self.content_hash_algorithm()).finish(),
                    size: 0,
                    total_size: total,
                });
                continue;
            }
            let mut writer = self.blob_writer()?;
            std::io::Write::write_all(&mut writer, bytes)
                .map_err(|e| Error::io(self.blobs_location(), e))?;
            let (content_hash, size) = self.finish_blob(writer)?;
            logs.push(ExecutionLog {
                execution_id: execution,
                stream,
                content_hash,
                size,
                total_size: total.max(size),
            });
        }
        self.metadata().record_logs(&logs)?;
        Ok(logs)
    }
}
