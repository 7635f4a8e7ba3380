//! `Store::verify`: an integrity check that reads every referenced blob.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{blob, Store};
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
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks the store: every completed execution's blobs exist and hash to their names,
    /// executions record all their outputs and belong to a run, no run is left running by
    /// a dead process, and no temporary file is left by one.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        type ExecRow = (i64, Option<String>, String, i64);
        let (executions, artifacts, runs) = {
            let conn = self.db();
            let executions: Vec<ExecRow> = conn
                .prepare(
                    "SELECT e.id, r.id, e.components, \
                     (SELECT count(*) FROM artifacts a WHERE a.execution_id = e.id) \
                     FROM executions e LEFT JOIN runs r ON r.id = e.run_id \
                     WHERE e.status IN ('executed', 'cached')",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .and_then(|rows| rows.collect())
                })
                .map_err(|e| self.db_error(e))?;
            let artifacts: Vec<(i64, String)> = conn
                .prepare(
                    "SELECT a.execution_id, a.content_hash FROM artifacts a \
                     JOIN executions e ON e.id = a.execution_id \
                     WHERE e.status IN ('executed', 'cached')",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                })
                .map_err(|e| self.db_error(e))?;
            let runs = self.dead_runs(&conn)?;
            (executions, artifacts, runs)
        };
        for (id, run, components, recorded) in executions {
            if run.is_none() {
                report
                    .problems
                    .push(Problem::OrphanExecution { execution: id });
            }
            if let Ok(c) = serde_json::from_str::<KeyComponents>(&components) {
                if c.outputs.len() != recorded as usize {
                    report.problems.push(Problem::IncompleteExecution {
                        execution: id,
                        declared: c.outputs.len(),
                        recorded: recorded as usize,
                    });
                }
            }
        }
        let mut checked: HashMap<String, bool> = HashMap::new();
        for (execution, hex) in artifacts {
            if let Some(&ok) = checked.get(&hex) {
                if !ok {
                    // Reported once per blob below; a missing blob is reported per hash.
                }
                continue;
            }
            let Some(hash) = Hash128::from_hex(&hex) else {
                checked.insert(hex.clone(), false);
                report.problems.push(Problem::CorruptBlob {
                    hash: hex,
                    actual: "not a hash".into(),
                });
                continue;
            };
            let path = self.blob_path(hash);
            match blob::hash_file(&path, self.inner.content_hash) {
                Ok((actual, bytes)) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += bytes;
                    let ok = actual == hash;
                    if !ok {
                        report.problems.push(Problem::CorruptBlob {
                            hash: hex.clone(),
                            actual: actual.to_hex(),
                        });
                    }
                    checked.insert(hex, ok);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    report.problems.push(Problem::MissingBlob {
                        hash: hex.clone(),
                        execution,
                    });
                    checked.insert(hex, false);
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        for run in runs {
            report.problems.push(Problem::InterruptedRun { run });
        }
        for path in self.dead_temp_files() {
            report.problems.push(Problem::LeftoverTempFile { path });
        }
        Ok(report)
    }
}
