//! Single-flight: at most one execution per cache key at a time, across threads and
//! processes.
//!
//! Reusing a completed execution and claiming a key both happen inside one write
//! transaction, so two runs that reach the same key at once cannot both execute it: the
//! second sees the first's lease and waits for its result.
//!
//! A lease ends in one of three ways:
//! - its guard commits the execution (the lease is deleted in the same transaction) or is
//!   dropped uncommitted (released);
//! - its holder's process is proven dead by its file lock (`liveness.rs`): the lease is
//!   taken over at once, and the holder's run is marked failed;
//! - its heartbeat stops for `lease_ttl` (a holder whose liveness cannot be told here, e.g.
//!   on another host, or a live process that stopped beating).
//!
//! A store handle beats all its leases at once (`Store::heartbeat`, from a thread of the
//! handle while it holds a [`LeaseGuard`]), from the moment a key is claimed, not only while
//! the key's step runs: a claim waiting for a worker longer than `lease_ttl` must not look
//! abandoned, or another process executes the key again.

use std::collections::HashMap;
use std::fmt;
use std::fs;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::guard::LeaseGuard;
use super::liveness::{self, Liveness, TempOwner};
use super::{Damage, ExecutionRow, Lookup, OutputRow, SqliteMetadata};
use crate::error::Result;
use crate::key::{Hash128, OutputDecl};
use crate::status::StepStatus;
use crate::time;

/// Who holds the claim on a cache key: one step of one run, in one store handle of one
/// process on one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    /// The run's id.
    pub run_id: String,
    /// The run's name, for messages.
    pub run_name: String,
    /// The step's call name within the run.
    pub step: String,
    /// The host the holder runs on.
    pub host: String,
    /// The holder's process id (for messages: liveness is told by `owner`).
    pub pid: u32,
    /// The owner token of the holder's store handle (`liveness.rs`).
    pub owner: String,
}

/// Two holders are the same claimant when run, step and store handle agree (names and
/// hosts only describe them).
impl PartialEq for Holder {
    fn eq(&self, other: &Self) -> bool {
        self.run_id == other.run_id && self.step == other.step && self.owner == other.owner
    }
}

impl Eq for Holder {}

/// `step `train` of run `p-2026_11_23-12_05_54_573248` (pid 4242 on host1)`.
impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step `{}` of run `{}` (pid {} on {})",
            self.step, self.run_name, self.pid, self.host
        )
    }
}

/// What [`Store::begin_step`](crate::Store::begin_step) decided for a cache key, in one write transaction.
#[derive(Debug)]
#[non_exhaustive]
pub enum Begin {
    /// A completed execution was reused; the step's cached row is recorded as `execution`.
    Hit {
        /// The id of the cached row recorded for this step.
        execution: i64,
        /// The id of the execution whose outputs are reused.
        reused: i64,
        /// The reused outputs in declaration order: content hash and size in bytes.
        outputs: Vec<(Hash128, u64)>,
    },
    /// The key is ours to execute: the guard holds the lease and the step's `running`
    /// row. `damaged` says why a completed execution with the key could not be reused, if
    /// there was one.
    Claimed {
        /// The claim; commit it with the step's result, or drop it to release the key.
        lease: LeaseGuard,
        /// Why an earlier execution with this key was not reused.
        damaged: Option<Damage>,
    },
    /// Another step is executing this key right now.
    Busy(Holder),
}

impl SqliteMetadata {
    /// The holder that `step` of run `run_id` (named `run_name`) is in this handle.
    pub(crate) fn holder(&self, run_id: &str, run_name: &str, step: &str) -> Holder {
        Holder {
            run_id: run_id.to_string(),
            run_name: run_name.to_string(),
            step: step.to_string(),
            host: liveness::host_name().to_string(),
            pid: std::process::id(),
            owner: self.owner_token().to_string(),
        }
    }

    /// Decides a step in one write transaction: reuses a completed execution with
    /// `row`'s cache key (recording `row` as a cached execution), or claims the key for
    /// `holder` (recording the step as a `running` execution with its start time), or
    /// reports who holds it.
    ///
    /// A lease whose holder is proven dead is taken over at once, whatever its heartbeat
    /// says: the holder's run is marked failed, and its `running` row too. A lease whose
    /// heartbeat stopped for `lease_ttl` is taken over the same way.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`](crate::Error::ReadOnly) on a read-only handle,
    /// [`Error::StoreLocked`](crate::Error::StoreLocked) or
    /// [`Error::Database`](crate::Error::Database) when the transaction fails, and
    /// [`Error::Io`](crate::Error::Io) when a blob cannot be checked.
    pub(crate) fn begin_step_row(
        &self,
        key: Hash128,
        row: &ExecutionRow<'_>,
        decls: &[OutputDecl],
        holder: &Holder,
        not_before_us: Option<i64>,
    ) -> Result<Begin> {
        self.check_writable("run a pipeline")?;
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let damaged = match self.lookup_in(&tx, key)? {
            // Expired (`cache_expires`): claimed and executed again under the same key.
            Lookup::Hit { produced_at_us, .. }
                if not_before_us.is_some_and(|t| produced_at_us < t) =>
            {
                None
            }
            Lookup::Hit {
                execution,
                outputs,
                holder,
                ..
            } => {
                let cached = ExecutionRow {
                    details: Default::default(),
                    status: StepStatus::Cached,
                    cache_key: Some(key),
                    reused: Some(execution),
                    outputs: outputs
                        .iter()
                        .zip(decls)
                        .map(|((hash, size), d)| OutputRow {
                            name: d.name.clone(),
                            hash: *hash,
                            size: *size,
                            type_name: d.type_name.clone(),
                            cacher: d.cacher.clone(),
                            cacher_version: d.cacher_version,
                            metadata: None,
                        })
                        .collect(),
                    reason: Some(format!("reused execution {execution}")),
                    inputs: copy_inputs(row),
                    outputs_of: Some(holder),
                    lease_holder: None,
                    error: None,
                    compared: None,
                    ..*row
                };
                let ids = self.record_in(&tx, std::slice::from_ref(&cached))?;
                tx.commit().map_err(|e| self.db_error(e))?;
                return Ok(Begin::Hit {
                    execution: ids.first().copied().unwrap_or(execution),
                    reused: execution,
                    outputs,
                });
            }
            Lookup::Miss => None,
            Lookup::Damaged(damage) => Some(damage),
        };
        let now = time::now_micros();
        let ttl = self.options().lease_ttl.as_micros() as i64;
        let current: Option<(Holder, i64, Option<i64>)> = tx
            .query_row(
                "SELECT l.run_id, COALESCE(r.name, l.run_id), l.step, l.host, l.pid, l.owner, \
                 l.heartbeat_us, l.execution_id FROM leases l LEFT JOIN runs r ON r.id = l.run_id \
                 WHERE l.cache_key = ?1",
                [key.to_hex()],
                |r| {
                    Ok((
                        Holder {
                            run_id: r.get(0)?,
                            run_name: r.get(1)?,
                            step: r.get(2)?,
                            host: r.get(3)?,
                            pid: r.get(4)?,
                            owner: r.get(5)?,
                        },
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_error(e))?;
        if let Some((other, beat, execution)) = current {
            if other != *holder {
                let dead = now - beat >= ttl
                    || match self.liveness(&other.owner, Some(&other.host), true) {
                        Liveness::Alive | Liveness::Unknown => false,
                        Liveness::Dead => true,
                    };
                if !dead {
                    return Ok(Begin::Busy(other));
                }
                debug!(
                    target: "pipeline",
                    "{other} has ended or stopped beating; taking over its cache key."
                );
                if now - beat < ttl {
                    // Proven dead by its file lock: its run has ended too.
                    tx.execute(
                        "UPDATE runs SET status = 'failed' \
                         WHERE id = ?1 AND owner = ?2 AND status = 'running'",
                        params![other.run_id, other.owner],
                    )
                    .map_err(|e| self.db_error(e))?;
                }
                abandon_in(&tx, key, &other.owner, execution).map_err(|e| self.db_error(e))?;
            }
        }
        let running = ExecutionRow {
            details: Default::default(),
            status: StepStatus::Running,
            cache_key: Some(key),
            started_at_us: now,
            outputs: Vec::new(),
            inputs: copy_inputs(row),
            outputs_of: None,
            lease_holder: None,
            error: None,
            reused: None,
            reason: row.reason.clone(),
            compared: row.compared.clone(),
            ..*row
        };
        let execution = self
            .record_in(&tx, std::slice::from_ref(&running))?
            .first()
            .copied()
            .unwrap_or_default();
        tx.execute(
            "INSERT OR REPLACE INTO leases(cache_key, run_id, step, host, pid, owner, \
             heartbeat_us, execution_id, claimed_at_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)",
            params![
                key.to_hex(),
                holder.run_id,
                holder.step,
                holder.host,
                holder.pid,
                holder.owner,
                now,
                execution
            ],
        )
        .map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        drop(conn);
        let lease = LeaseGuard::new(self, key, holder.clone(), execution, now);
        Ok(Begin::Claimed { lease, damaged })
    }

    /// One batched check for a wave of keys this run waits for: per `(key, holder)`,
    /// whether `holder` still holds a live lease on `key` (present, beaten within
    /// `lease_ttl`, and its process not proven dead). A key that is no longer held that way
    /// has been committed, released or abandoned, and the caller decides it again with
    /// `acquire`. One read of the leases table (which holds only claims in flight), and one
    /// liveness check per distinct holder process.
    pub(crate) fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>> {
        if waits.is_empty() {
            return Ok(Vec::new());
        }
        let leases: HashMap<String, (String, String, String, String, i64)> = self
            .db()
            .prepare_cached("SELECT cache_key, run_id, step, owner, host, heartbeat_us FROM leases")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    ))
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let now = time::now_micros();
        let ttl = self.options().lease_ttl.as_micros() as i64;
        let mut alive: HashMap<&str, bool> = HashMap::new();
        Ok(waits
            .iter()
            .map(|(key, holder)| match leases.get(&key.to_hex()) {
                Some((run_id, step, owner, host, beat))
                    if *run_id == holder.run_id
                        && *step == holder.step
                        && *owner == holder.owner
                        && now - beat < ttl =>
                {
                    *alive.entry(holder.owner.as_str()).or_insert_with(|| {
                        self.liveness(owner, Some(host), false) != Liveness::Dead
                    })
                }
                _ => false,
            })
            .collect())
    }

    /// Cleans up after processes that have ended, as their file locks prove: their
    /// temporary blob files and lock files, their runs (marked failed) and their leases
    /// (deleted, so the next run claims those keys at once instead of waiting out
    /// `lease_ttl`). What belongs to a live process, or to one whose liveness cannot be
    /// told here (another host), is left alone. Runs on every writable open.
    pub(crate) fn recover(&self) -> Result<()> {
        for path in self.dead_temp_files() {
            let _ = fs::remove_file(path);
        }
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        for id in self.dead_runs(&tx)? {
            tx.execute("UPDATE runs SET status = 'failed' WHERE id = ?1", [&id])
                .map_err(|e| self.db_error(e))?;
            tx.execute(
                "UPDATE executions SET status = 'failed', error = ?2 \
                 WHERE run_id = ?1 AND status = 'running'",
                params![id, PROCESS_ENDED],
            )
            .map_err(|e| self.db_error(e))?;
        }
        let leases: Vec<(String, String, String, Option<i64>)> = tx
            .prepare("SELECT cache_key, owner, host, execution_id FROM leases")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        for (key, owner, host, execution) in leases {
            if self.liveness(&owner, Some(&host), true) == Liveness::Dead {
                if let Some(key) = Hash128::from_hex(&key) {
                    abandon_in(&tx, key, &owner, execution).map_err(|e| self.db_error(e))?;
                } else {
                    tx.execute("DELETE FROM leases WHERE cache_key = ?1", [&key])
                        .map_err(|e| self.db_error(e))?;
                }
            }
        }
        // Holds of handles that ended without their lease row (a crash between the two).
        let owners: Vec<String> = tx
            .prepare("SELECT DISTINCT owner FROM holds")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        for owner in owners {
            if self.liveness(&owner, None, false) == Liveness::Dead {
                tx.execute("DELETE FROM holds WHERE owner = ?1", [&owner])
                    .map_err(|e| self.db_error(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_error(e))
    }
}

/// The input rows of `row`, for another row of the same step.
fn copy_inputs(row: &ExecutionRow<'_>) -> Vec<super::InputRow> {
    row.inputs
        .iter()
        .map(|i| super::InputRow {
            name: i.name.clone(),
            hash: i.hash,
            producer: i.producer,
            value: i.value,
        })
        .collect()
}

/// The error of a `running` row whose claim ended without a commit (its holder died,
/// stopped beating or dropped it), whatever the backend.
pub(crate) const CLAIM_ENDED: &str =
    "its holder ended or released the claim before the step finished";

/// Ends the claimed row `?1` of a step whose worker ended without recording it (the row
/// is still `running`, or failed with [`CLAIM_ENDED`], `?5`): status `?2`, reason `?3`
/// when given, error `?4` (SQLite and PostgreSQL).
pub(crate) const END_UNRECORDED_SQL: &str =
    "UPDATE executions SET status = ?2, reason = COALESCE(?3, reason), error = ?4 \
     WHERE id = ?1 AND (status = 'running' OR (status = 'failed' AND error = ?5))";

impl SqliteMetadata {
    /// SQLite's side of `Backend::end_unrecorded`.
    pub(crate) fn end_unrecorded(
        &self,
        execution: i64,
        status: StepStatus,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        self.check_writable("record how a step ended")?;
        self.db()
            .execute(
                END_UNRECORDED_SQL,
                params![execution, status.as_str(), reason, error, CLAIM_ENDED],
            )
            .map(|n| n > 0)
            .map_err(|e| self.db_error(e))
    }
}

/// The error of a `running` row of a run whose process ended, whatever the backend.
pub(crate) const PROCESS_ENDED: &str = "its process ended before the step finished";

/// Ends a lease on `key` held through handle `owner` that will never commit (its holder
/// died, stopped beating or dropped it): its `running` row `execution` becomes failed, and
/// its holds and the lease itself are deleted.
pub(crate) fn abandon_in(
    conn: &rusqlite::Connection,
    key: Hash128,
    owner: &str,
    execution: Option<i64>,
) -> rusqlite::Result<()> {
    if let Some(id) = execution {
        conn.prepare_cached(
            "UPDATE executions SET status = 'failed', error = ?2 \
             WHERE id = ?1 AND status = 'running'",
        )?
        .execute(params![id, CLAIM_ENDED])?;
    }
    conn.prepare_cached("DELETE FROM holds WHERE cache_key = ?1 AND owner = ?2")?
        .execute(params![key.to_hex(), owner])?;
    conn.prepare_cached("DELETE FROM leases WHERE cache_key = ?1 AND owner = ?2")?
        .execute(params![key.to_hex(), owner])?;
    Ok(())
}

/// Deletes `holder`'s lease on `key` on `conn` (inside the caller's transaction, if any).
pub(crate) fn release_in(
    conn: &rusqlite::Connection,
    key: Hash128,
    holder: &Holder,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM leases WHERE cache_key = ?1 AND run_id = ?2 AND step = ?3 AND owner = ?4",
    )?
    .execute(params![
        key.to_hex(),
        holder.run_id,
        holder.step,
        holder.owner
    ])
    .map(|_| ())
}

impl SqliteMetadata {
    /// Whether the store handle with owner token `owner` (recorded on `host`) is alive.
    /// With `clean_up`, the lock file of a dead owner is removed.
    pub(crate) fn liveness(&self, owner: &str, host: Option<&str>, clean_up: bool) -> Liveness {
        let clean_up = clean_up && !self.inner.options.read_only;
        liveness::liveness(&self.tmp_dir(), owner, host, clean_up)
    }

    /// Temporary files whose owner has ended: blobs it was writing and its lock file.
    pub(crate) fn dead_temp_files(&self) -> Vec<std::path::PathBuf> {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                match liveness::temp_owner(&name) {
                    TempOwner::Token(token) => self.liveness(token, None, false) == Liveness::Dead,
                    TempOwner::Legacy => true,
                    TempOwner::Foreign => false,
                }
            })
            .map(|entry| entry.path())
            .collect()
    }

    /// Runs marked running whose store handle has ended. A run recorded before owner
    /// tokens (schema 2) counts as ended: its process could not write to this store once
    /// it was migrated.
    pub(crate) fn dead_runs(&self, conn: &rusqlite::Connection) -> Result<Vec<String>> {
        let running: Vec<(String, Option<String>, Option<String>)> = conn
            .prepare("SELECT id, owner, host FROM runs WHERE status = 'running'")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        Ok(running
            .into_iter()
            .filter(|(_, owner, host)| match owner {
                Some(owner) => self.liveness(owner, host.as_deref(), false) == Liveness::Dead,
                None => true,
            })
            .map(|(id, _, _)| id)
            .collect())
    }
}
