//! Single-flight: at most one execution per cache key at a time, across threads and
//! processes.
//!
//! Reusing a completed execution and claiming a key both happen inside one write
//! transaction, so two runs that reach the same key at once cannot both execute it: the
//! second sees the first's lease and waits for its result. A lease carries a heartbeat; a
//! holder that crashed stops beating and its lease expires after `lease_ttl`.

use std::fs;
use std::path::Path;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{Damage, ExecutionRow, Lookup, OutputRow, Store};
use crate::error::Result;
use crate::key::{Hash128, OutputDecl};
use crate::run::StepStatus;
use crate::time;

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
    Busy { holder: String },
}

impl Store {
    /// In one write transaction: reuse a completed execution with `row`'s cache key
    /// (recording `row` as a cached execution), or claim the key for `holder`, or report
    /// who holds it.
    pub(crate) fn acquire(
        &self,
        row: &ExecutionRow<'_>,
        decls: &[OutputDecl],
        holder: &str,
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
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT holder, heartbeat_us FROM leases WHERE cache_key = ?1",
                [key.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db_error(e))?;
        if let Some((other, beat)) = current {
            if other != holder && now - beat < ttl {
                return Ok(Acquire::Busy { holder: other });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO leases(cache_key, holder, heartbeat_us) VALUES (?1, ?2, ?3)",
            params![key.to_hex(), holder, now],
        )
        .map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(Acquire::Claimed { damaged })
    }

    /// Keeps a lease alive while its step runs.
    pub(crate) fn heartbeat(&self, key: Hash128, holder: &str) -> Result<()> {
        self.db()
            .execute(
                "UPDATE leases SET heartbeat_us = ?3 WHERE cache_key = ?1 AND holder = ?2",
                params![key.to_hex(), holder, time::now_micros()],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Drops a lease whose step failed (a completed step drops it when its row commits).
    pub(crate) fn release(&self, key: Hash128, holder: &str) -> Result<()> {
        self.db()
            .execute(
                "DELETE FROM leases WHERE cache_key = ?1 AND holder = ?2",
                params![key.to_hex(), holder],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Cleans up after processes that died: their temporary blob files, and their runs
    /// (marked failed). Runs on every writable open.
    ///
    /// It does not touch leases: a dead process's claim on a cache key stays until its
    /// heartbeat is older than [`StoreOptions::lease_ttl`](super::StoreOptions::lease_ttl)
    /// (10 s by default), so after a crash the next run that needs that key waits that long
    /// before taking it over in [`Store::acquire`].
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
        tx.commit().map_err(|e| self.db_error(e))
    }
}

impl Store {
    /// Temporary blob files whose writing process is gone.
    pub(crate) fn dead_temp_files(&self) -> Vec<std::path::PathBuf> {
        let Ok(entries) = fs::read_dir(self.inner.artifacts.join("tmp")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
                pid.is_some_and(|p| !process_alive(p))
            })
            .map(|entry| entry.path())
            .collect()
    }

    /// Runs marked running whose process is gone.
    pub(crate) fn dead_runs(&self, conn: &rusqlite::Connection) -> Result<Vec<String>> {
        let running: Vec<(String, Option<i64>)> = conn
            .prepare("SELECT id, pid FROM runs WHERE status = 'running'")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        Ok(running
            .into_iter()
            .filter(|(_, pid)| {
                !pid.and_then(|p| u32::try_from(p).ok())
                    .is_some_and(process_alive)
            })
            .map(|(id, _)| id)
            .collect())
    }
}

/// Whether a process with this id is alive on this machine. Where that cannot be told,
/// assume it is (never clean up a live process's files).
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        // A zombie (killed, not yet reaped) still has a /proc entry: read its state.
        match fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    } else {
        true
    }
}
