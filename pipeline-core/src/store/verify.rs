//! `Store::verify`: an integrity check that reads every referenced blob.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::artifacts::{self, ArtifactStore};
use super::{sidecar_path, Sidecar, SqliteMetadata, Store};
use crate::error::{Error, Result};
use crate::key::{Hash128, KeyComponents};

/// An inconsistency found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A completed execution references a blob that is not on disk.
    MissingBlob {
        /// Content hash.
        hash: String,
        /// An execution that references it.
        execution: i64,
    },
    /// A blob's bytes do not hash to its name.
    CorruptBlob {
        /// Content hash (the file name).
        hash: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A completed execution has fewer or more outputs recorded than it declares.
    IncompleteExecution {
        /// Execution id.
        execution: i64,
        /// Outputs declared.
        declared: usize,
        /// Outputs recorded.
        recorded: usize,
    },
    /// An execution whose run is not recorded.
    OrphanExecution {
        /// Execution id.
        execution: i64,
    },
    /// A run marked running whose process is gone.
    InterruptedRun {
        /// Run id.
        run: String,
    },
    /// A temporary blob file left by a process that is gone.
    LeftoverTempFile {
        /// The file.
        path: PathBuf,
    },
    /// An intact blob has no sidecar (`<blob>.json`, what it holds, readable without this
    /// library). [`Store::repair`] restores it from the metadata.
    MissingSidecar {
        /// Content hash of the blob.
        hash: String,
        /// Where the sidecar belongs.
        path: PathBuf,
    },
    /// A sidecar that is not valid JSON or names another blob. [`Store::repair`] rewrites
    /// it from the metadata.
    CorruptSidecar {
        /// Content hash of the blob.
        hash: String,
        /// The sidecar.
        path: PathBuf,
    },
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Everything found.
    pub problems: Vec<Problem>,
    /// Distinct blobs read and hashed.
    pub blobs_checked: usize,
    /// Bytes read.
    pub bytes_checked: u64,
    /// Problems that [`Store::repair`] fixed (always empty after [`Store::verify`]).
    pub repaired: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Store::verify`] reads from the metadata, in one go.
pub(crate) struct VerifyRows {
    /// Completed executions: id, the run's id if the run is recorded, key components (as
    /// JSON), outputs recorded (a cached row's are those of the execution it points at).
    pub executions: Vec<(i64, Option<String>, String, i64)>,
    /// `(execution, content hash)` of the outputs of completed executions.
    pub artifacts: Vec<(i64, String)>,
    /// `(execution, content hash)` of the logs kept of executions' jobs (no sidecars).
    pub logs: Vec<(i64, String)>,
    /// Runs marked running whose process is gone.
    pub interrupted: Vec<String>,
    /// Temporary files left by processes that are gone (local stores).
    pub temp_files: Vec<PathBuf>,
}

/// What a blob's sidecar is rewritten from: its artifact row and the newest completed
/// execution that wrote it (or, when gc removed that one, that reused it).
pub(crate) struct SidecarRow {
    pub output: String,
    pub size: i64,
    pub type_name: String,
    pub cacher: String,
    pub cacher_version: u32,
    pub metadata: Option<String>,
    pub run_id: String,
    pub step: String,
    pub cache_key: Option<String>,
}

/// The query behind [`SidecarRow`], for `?1` the blob's hash (SQLite and PostgreSQL).
pub(crate) const SIDECAR_ROW_SQL: &str = "SELECT a.name, a.size, a.type_name, a.cacher, \
     a.cacher_version, a.metadata, e.run_id, e.name, e.cache_key \
     FROM artifacts a JOIN executions e ON e.id = a.execution_id \
     WHERE a.content_hash = ?1 AND e.status IN ('executed', 'cached') \
     ORDER BY (e.status = 'executed') DESC, e.id DESC LIMIT 1";

/// The query for [`VerifyRows::executions`] (SQLite and PostgreSQL).
pub(crate) const VERIFY_EXECUTIONS_SQL: &str = concat!(
    "SELECT e.id, r.id, ",
    super::components_of_e!(),
    ", (SELECT count(*) FROM artifacts a \
       WHERE a.execution_id = COALESCE(e.outputs_of, e.id)) \
     FROM executions e LEFT JOIN runs r ON r.id = e.run_id \
     WHERE e.status IN ('executed', 'cached')"
);

/// The query for [`VerifyRows::logs`] (SQLite and PostgreSQL).
/// Empty streams have no blob (`store/logs.rs`).
pub(crate) const VERIFY_LOGS_SQL: &str =
    "SELECT execution_id, content_hash FROM execution_logs WHERE size > 0";

/// The query for [`VerifyRows::artifacts`] (SQLite and PostgreSQL).
pub(crate) const VERIFY_ARTIFACTS_SQL: &str =
    "SELECT a.execution_id, a.content_hash FROM artifacts a \
     JOIN executions e ON e.id = a.execution_id \
     WHERE e.status IN ('executed', 'cached')";

impl SqliteMetadata {
    /// SQLite's side of `Backend::verify_rows`: one read transaction.
    pub(crate) fn verify_rows(&self) -> Result<VerifyRows> {
        let mut conn = self.db();
        let tx = conn.transaction().map_err(|e| self.db_error(e))?;
        let executions = tx
            .prepare(VERIFY_EXECUTIONS_SQL)
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let artifacts = tx
            .prepare(VERIFY_ARTIFACTS_SQL)
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let logs = tx
            .prepare(VERIFY_LOGS_SQL)
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let interrupted = self.dead_runs(&tx)?;
        drop(tx);
        drop(conn);
        Ok(VerifyRows {
            executions,
            artifacts,
            logs,
            interrupted,
            temp_files: self.dead_temp_files(),
        })
    }

    /// SQLite's side of `Backend::sidecar_row`.
    pub(crate) fn sidecar_row(&self, hex: &str) -> Result<Option<SidecarRow>> {
        self.db()
            .query_row(SIDECAR_ROW_SQL, [hex], |r| {
                Ok(SidecarRow {
                    output: r.get(0)?,
                    size: r.get(1)?,
                    type_name: r.get(2)?,
                    cacher: r.get(3)?,
                    cacher_version: r.get(4)?,
                    metadata: r.get(5)?,
                    run_id: r.get(6)?,
                    step: r.get(7)?,
                    cache_key: r.get(8)?,
                })
            })
            .optional()
            .map_err(|e| self.db_error(e))
    }
}

impl Store {
    /// Checks the store: every completed execution's blobs exist and hash to their names
    /// and have their sidecars, the logs kept of steps' jobs exist and hash to their names, executions record all their outputs and belong to a run,
    /// no run is left running by a dead process, and no temporary file is left by one.
    ///
    /// Reads every referenced blob. Every missing or corrupt one is told to the metadata,
    /// as a load that finds it does, so the next run executes again all the steps whose
    /// outputs are damaged (one run heals them all). Nothing else changes; on a read-only
    /// handle nothing at all.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::Remote`] on PostgreSQL) or [`Error::Io`] when the
    /// store cannot be read (a damaged blob is a [`Problem`], not an error).
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let rows = self.metadata().verify_rows()?;
        for (id, run, components, recorded) in rows.executions {
            if run.is_none() {
                report
                    .problems
                    .push(Problem::OrphanExecution { execution: id });
            }
            if let Ok(c) = serde_json::from_str::<KeyComponents>(&components) {
                // A map's split records one output per item of its one declaration.
                let split = c.step == crate::map::SPLIT_STEP;
                if !split && c.outputs.len() != recorded as usize {
                    report.problems.push(Problem::IncompleteExecution {
                        execution: id,
                        declared: c.outputs.len(),
                        recorded: recorded as usize,
                    });
                }
            }
        }
        // Each blob is read once, and a missing one reported once.
        let mut checked: HashSet<String> = HashSet::new();
        // Outputs have sidecars; the logs of jobs do not.
        let blobs = rows
            .artifacts
            .into_iter()
            .map(|(e, h)| (e, h, true))
            .chain(rows.logs.into_iter().map(|(e, h)| (e, h, false)));
        for (execution, hex, sidecar) in blobs {
            if !checked.insert(hex.clone()) {
                continue;
            }
            let Some(hash) = Hash128::from_hex(&hex) else {
                report.problems.push(Problem::CorruptBlob {
                    hash: hex,
                    actual: "not a hash".into(),
                });
                continue;
            };
            let path = self.blob_path(hash);
            let blobs = self.artifact_store().as_ref();
            match artifacts::hash_blob(blobs, hash, self.content_hash_algorithm()) {
                Ok(Some((actual, bytes))) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += bytes;
                    if actual == hash && !sidecar {
                        // Intact; nothing more to check.
                    } else if actual == hash {
                        report
                            .problems
                            .extend(check_sidecar(blobs, hash, &path, &hex)?);
                    } else {
                        self.blob_damaged(hash, true);
                        report.problems.push(Problem::CorruptBlob {
                            hash: hex,
                            actual: actual.to_hex(),
                        });
                    }
                }
                Ok(None) => {
                    self.blob_damaged(hash, false);
                    report.problems.push(Problem::MissingBlob {
                        hash: hex,
                        execution,
                    });
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        for run in rows.interrupted {
            report.problems.push(Problem::InterruptedRun { run });
        }
        for path in rows.temp_files {
            report.problems.push(Problem::LeftoverTempFile { path });
        }
        Ok(report)
    }

    /// Verifies the store, then repairs what its metadata alone can repair: a missing or
    /// damaged sidecar (`<blob>.json`) is rewritten from the recorded artifact and the
    /// newest execution that produced it. Returns the report with the fixed problems moved
    /// to [`VerifyReport::repaired`]; what remains in `problems` needs a rerun of the
    /// pipeline (a missing or corrupt blob is recreated by the next run that needs it).
    ///
    /// A run that executes a step again also rewrites its outputs' sidecars; a cache hit
    /// does not look at them, so that it stays a `stat` of the blob alone.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only handle; as for [`Store::verify`] otherwise, and
    /// [`Error::Io`] when a sidecar cannot be written.
    pub fn repair(&self) -> Result<VerifyReport> {
        self.check_writable("repair it")?;
        let mut report = self.verify()?;
        for problem in std::mem::take(&mut report.problems) {
            let fixed = match &problem {
                Problem::MissingSidecar { hash, .. } | Problem::CorruptSidecar { hash, .. } => {
                    self.restore_sidecar(hash)?
                }
                _ => false,
            };
            if fixed {
                report.repaired.push(problem);
            } else {
                report.problems.push(problem);
            }
        }
        Ok(report)
    }

    /// Rewrites the sidecar of blob `hex` from the newest completed execution that wrote it
    /// (or, when garbage collection removed that one, that reused it). False when no
    /// completed execution references the blob.
    fn restore_sidecar(&self, hex: &str) -> Result<bool> {
        let Some(row) = self.metadata().sidecar_row(hex)? else {
            return Ok(false);
        };
        let Some(hash) = Hash128::from_hex(hex) else {
            return Ok(false);
        };
        let sidecar = Sidecar {
            size: row.size as u64,
            type_name: &row.type_name,
            cacher: &row.cacher,
            cacher_version: row.cacher_version,
            metadata: row.metadata.and_then(|m| serde_json::from_str(&m).ok()),
            run_id: &row.run_id,
            step: &row.step,
            output: &row.output,
            cache_key: row.cache_key.as_deref().and_then(Hash128::from_hex),
        };
        self.write_sidecar(hash, &sidecar)?;
        Ok(true)
    }
}

/// The sidecar problem of intact blob `hash` (`hex`) at `blob`, if any.
fn check_sidecar(
    blobs: &dyn ArtifactStore,
    hash: Hash128,
    blob: &Path,
    hex: &str,
) -> Result<Option<Problem>> {
    let path = sidecar_path(blob);
    let text = match blobs.get_sidecar(hash) {
        Ok(Some(text)) => text,
        Ok(None) => {
            return Ok(Some(Problem::MissingSidecar {
                hash: hex.to_string(),
                path,
            }))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let names_blob = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .is_some_and(|doc| doc["content_hash"] == hex);
    Ok((!names_blob).then(|| Problem::CorruptSidecar {
        hash: hex.to_string(),
        path,
    }))
}
