//! Single-flight: at most one execution per cache key at a time, across threads and
//! processes.
//!
//! Reusing a completed execution and claiming a key both happen inside one write
//! transaction, so two runs that reach the same key at once cannot both execute it: the
//! second sees the first's lease and waits for its result.
//!
//! A lease ends in one of three ways:
//! - its holder commits the execution (the lease is deleted in the same transaction) or
//!   releases it after a failure;
//! - its holder's process is proven dead by its file lock (`liveness.rs`): the lease is
//!   taken over at once, and the holder's run is marked failed;
//! - its heartbeat stops for `lease_ttl` (a holder whose liveness cannot be told here, e.g.
//!   on another host, or a live process that stopped beating).
//!
//! A run beats all its leases at once (`heartbeat_run`), from the moment it claims a key,
//! not only while the key's step runs: a claim waiting in the run's queue longer than
//! `lease_ttl` must not look abandoned, or another process executes the key again.

use std::collections::HashMap;
use std::fmt;
use std::fs;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use tracing::debug;

use super::liveness::{self, Liveness, TempOwner};
use super::{Damage, ExecutionRow, Lookup, OutputRow, Store};
use crate::error::Result;
use crate::key::{Hash128, OutputDecl};
use crate::status::StepStatus;
use crate::time;

/// Who holds the claim on a cache key: one step of one run, in one store handle of one
/// process on one host.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
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

/// What `acquire` found for a cache key.
pub(crate) enum Acquire {
    /// A completed execution was reused; its cached row is recorded as `execution`.
    Hit {
        execution: i64,
        reused: i64,
        outputs: Vec<(Hash128, u64)>,
    },
    /// The key is ours to execute. `damaged` says why a completed execution with the key
    /// could not be reused, if there was one.
    Claimed { damaged: Option<Damage> },
    /// Another run is executing this key right now.
    Busy { holder: Holder },
}

impl Store {
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

    /// In one write transaction: reuse a completed execution with `row`'s cache key
    /// (recording `row` as a cached execution), or claim the key for `holder`, or report
    /// who holds it.
    ///
    /// A lease whose holder is proven dead is taken over at once, whatever its heartbeat
    /// says, and the holder's run is marked failed.
    pub(crate) fn acquire(
        &self,
        row: &ExecutionRow<'_>,
        decls: &[OutputDecl],
        holder: &Holder,
    ) -> Result<Acquire> {
        self.check_writable("run a pipeline")?;
        let Some(key) = row.cache_key else {
            return Ok(Acquire::Claimed { damaged: None });
        };
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let damaged = match self.lookup_in(&tx, key)? {
            Lookup::Hit { execution, outputs } => {
                let cached = ExecutionRow {
                    status: StepStatus::Cached,
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
                    inputs: row
                        .inputs
                        .iter()
                        .map(|i| super::InputRow {
                            name: i.name.clone(),
                            hash: i.hash,
                            producer: i.producer,
                        })
                        .collect(),
                    lease_holder: None,
                    error: None,
                    compared: None,
                    ..*row
                };
                let ids = self.record_in(&tx, std::slice::from_ref(&cached))?;
                tx.commit().map_err(|e| self.db_error(e))?;
                return Ok(Acquire::Hit {
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
        let current: Option<(Holder, i64)> = tx
            .query_row(
                "SELECT l.run_id, COALESCE(r.name, l.run_id), l.step, l.host, l.pid, l.owner, \
                 l.heartbeat_us FROM leases l LEFT JOIN runs r ON r.id = l.run_id \
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
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_error(e))?;
        if let Some((other, beat)) = current {
            if other != *holder && now - beat < ttl {
                match self.liveness(&other.owner, Some(&other.host), true) {
                    Liveness::Alive | Liveness::Unknown => {
                        return Ok(Acquire::Busy { holder: other })
                    }
                    Liveness::Dead => {
                        debug!(
                            target: "pipeline",
                            "The process of {other} has ended; taking over its cache key."
                        );
                        tx.execute(
                            "UPDATE runs SET status = 'failed' \
                             WHERE id = ?1 AND owner = ?2 AND status = 'running'",
                            params![other.run_id, other.owner],
                        )
                        .map_err(|e| self.db_error(e))?;
                    }
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO leases(cache_key, run_id, step, host, pid, owner, \
             heartbeat_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                key.to_hex(),
                holder.run_id,
                holder.step,
                holder.host,
                holder.pid,
                holder.owner,
                now
            ],
        )
        .map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(Acquire::Claimed { damaged })
    }

    /// Keeps every lease that run `run_id` holds through this handle alive, in one
    /// statement: claims waiting in the run's queue as well as those whose step is running.
    /// A run calls it every third of `lease_ttl` until it ends. Returns how many leases
    /// were refreshed.
    pub(crate) fn heartbeat_run(&self, run_id: &str) -> Result<usize> {
        self.db()
            .prepare_cached("UPDATE leases SET heartbeat_us = ?3 WHERE run_id = ?1 AND owner = ?2")
            .and_then(|mut s| s.execute(params![run_id, self.owner_token(), time::now_micros()]))
            .map_err(|e| self.db_error(e))
    }

    /// Drops every lease that run `run_id` still holds through this handle: claims it made
    /// but never executed (a run stopped by a store error). Called when the run ends.
    pub(crate) fn release_run(&self, run_id: &str) -> Result<()> {
        self.db()
            .prepare_cached("DELETE FROM leases WHERE run_id = ?1 AND owner = ?2")
            .and_then(|mut s| s.execute(params![run_id, self.owner_token()]))
            .map(|_| ())
            .map_err(|e| self.db_error(e))
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

    /// Drops a lease whose step failed (a completed step drops it when its row commits).
    pub(crate) fn release(&self, key: Hash128, holder: &Holder) -> Result<()> {
        release_in(&self.db(), key, holder).map_err(|e| self.db_error(e))
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
        }
        let leases: Vec<(String, String, String)> = tx
            .prepare("SELECT cache_key, owner, host FROM leases")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        for (key, owner, host) in leases {
            if self.liveness(&owner, Some(&host), true) == Liveness::Dead {
                tx.execute(
                    "DELETE FROM leases WHERE cache_key = ?1 AND owner = ?2",
                    params![key, owner],
                )
                .map_err(|e| self.db_error(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_error(e))
    }
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

impl Store {
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
