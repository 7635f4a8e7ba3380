//! Garbage collection by reachability: keep the last runs of each pipeline and pinned
//! runs, drop the rest (oldest first to fit a size budget), then remove the blobs that no
//! remaining execution references.
//!
//! Safe beside running pipelines: rows are removed in one write transaction; runs still
//! marked running are kept with everything they reference; and blob files written or
//! reused within `min_blob_age` (a cache hit sets the blob's access time) are never
//! removed. That last rule covers the two moments when a running pipeline relies on a blob
//! no committed row references yet: a step's output renamed into place just before its
//! execution commits, and a cache hit found just before its cached row commits. Hence
//! the policy is refused when `min_blob_age` is below [`GcPolicy::SAFE_MIN_BLOB_AGE`].

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, SystemTime};

use rusqlite::{params, TransactionBehavior};
use serde::Serialize;

use super::artifacts::{BlobStat, ListedBlob};
use super::Store;
use crate::error::{Error, Result};

/// What `Store::gc` keeps.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// Newest runs kept per pipeline (pinned and running runs are kept besides).
    pub keep_last: usize,
    /// Drop the oldest unpinned runs until the blobs the kept runs reference fit.
    pub max_bytes: Option<u64>,
    /// Report what would go without removing anything.
    pub dry_run: bool,
    /// Unreferenced blob files written or reused more recently than this stay (they may
    /// belong to a step finishing right now, or to a cache hit whose run has not recorded
    /// it yet). Default 10 minutes; at least [`GcPolicy::SAFE_MIN_BLOB_AGE`], or
    /// [`Store::gc`] refuses the policy.
    pub min_blob_age: Duration,
}

impl GcPolicy {
    /// The smallest [`min_blob_age`](GcPolicy::min_blob_age) that gc accepts: 2 minutes.
    ///
    /// A cache hit refreshes a blob's access time only when it is older than one minute
    /// (so that runs served from the cache do not write on every hit), and a running
    /// pipeline records its hits and fresh outputs moments after it finds or writes them.
    /// Below one minute, gc could remove a blob that a running pipeline has just reused
    /// and is about to record; the second minute covers the time until the record commits
    /// (the write lock may be busy, a step may be writing several outputs). Gc stays safe
    /// above this only as long as that time stays short: a step whose outputs take longer to
    /// write than `min_blob_age` is not protected.
    pub const SAFE_MIN_BLOB_AGE: Duration = Duration::from_secs(120);

    /// Checks that the policy cannot remove what a running pipeline needs.
    ///
    /// # Errors
    ///
    /// [`Error::UnsafeGcPolicy`] when `min_blob_age` is below
    /// [`GcPolicy::SAFE_MIN_BLOB_AGE`].
    pub fn validate(&self) -> Result<()> {
        if self.min_blob_age < Self::SAFE_MIN_BLOB_AGE {
            return Err(Error::UnsafeGcPolicy {
                min_blob_age: self.min_blob_age,
                safe_minimum: Self::SAFE_MIN_BLOB_AGE,
            });
        }
        Ok(())
    }
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            keep_last: 10,
            max_bytes: None,
            dry_run: false,
            min_blob_age: Duration::from_secs(600),
        }
    }
}

/// What `Store::gc` removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Whether nothing was actually removed.
    pub dry_run: bool,
    /// Names of the removed runs.
    pub runs_removed: Vec<String>,
    /// Runs kept.
    pub runs_kept: usize,
    /// Blob files removed.
    pub blobs_removed: usize,
    /// Bytes of the removed blob files.
    pub bytes_freed: u64,
    /// Bytes of the blobs the kept runs reference.
    pub bytes_kept: u64,
    /// Leftover temporary files of dead processes removed.
    pub temp_files_removed: usize,
}

struct RunRow {
    id: String,
    name: String,
    pipeline: String,
    started: i64,
    pinned: bool,
    running: bool,
}

impl Store {
    /// Pins a run (id, name or unique prefix): garbage collection always keeps it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] or [`Error::AmbiguousRun`] when `run` names no run or several,
    /// [`Error::ReadOnly`] on a read-only handle, [`Error::StoreLocked`] or
    /// [`Error::Database`] when the change cannot be written.
    pub fn pin(&self, run: &str) -> Result<()> {
        self.set_pinned(run, true)
    }

    /// Unpins a run.
    ///
    /// # Errors
    ///
    /// As for [`pin`](Self::pin).
    pub fn unpin(&self, run: &str) -> Result<()> {
        self.set_pinned(run, false)
    }

    fn set_pinned(&self, run: &str, pinned: bool) -> Result<()> {
        self.check_writable("pin runs")?;
        let id = self.run(run)?.id;
        self.db()
            .execute(
                "UPDATE runs SET pinned = ?2 WHERE id = ?1",
                params![id, pinned],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Removes runs the policy does not keep and the blobs nothing references any more.
    ///
    /// # Errors
    ///
    /// [`Error::UnsafeGcPolicy`] for a `min_blob_age` below
    /// [`GcPolicy::SAFE_MIN_BLOB_AGE`] (dry runs included, so that they report what a real
    /// run would do); [`Error::ReadOnly`] on a read-only handle; [`Error::StoreLocked`],
    /// [`Error::Database`] or [`Error::Io`] when the store cannot be changed.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport> {
        policy.validate()?;
        if !policy.dry_run {
            self.check_writable("collect garbage")?;
        }
        let mut report = GcReport {
            dry_run: policy.dry_run,
            ..GcReport::default()
        };
        let referenced: HashSet<String>;
        {
            let mut conn = self.db();
            // A dry run only reads (one consistent snapshot), so it works on read-only
            // handles and media too.
            let behavior = if policy.dry_run {
                TransactionBehavior::Deferred
            } else {
                TransactionBehavior::Immediate
            };
            let tx = conn
                .transaction_with_behavior(behavior)
                .map_err(|e| self.db_error(e))?;
            let runs: Vec<RunRow> = tx
                .prepare(
                    "SELECT id, name, pipeline, started_at_us, pinned, status = 'running' \
                     FROM runs ORDER BY started_at_us DESC, rowid DESC",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok(RunRow {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            pipeline: r.get(2)?,
                            started: r.get(3)?,
                            pinned: r.get(4)?,
                            running: r.get(5)?,
                        })
                    })
                    .and_then(|rows| rows.collect())
                })
                .map_err(|e| self.db_error(e))?;
            let mut per_pipeline: HashMap<&str, usize> = HashMap::new();
            let mut keep: HashSet<&str> = HashSet::new();
            for r in &runs {
                let n = per_pipeline.entry(&r.pipeline).or_default();
                if *n < policy.keep_last || r.pinned || r.running {
                    keep.insert(&r.id);
                }
                *n += 1;
            }
            // Blob sizes per run, to fit the budget by dropping the oldest runs first.
            let run_blobs: Vec<(String, String, i64)> = tx
                .prepare(
                    "SELECT DISTINCT e.run_id, a.content_hash, a.size FROM artifacts a \
                     JOIN executions e ON e.id = a.execution_id",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .and_then(|rows| rows.collect())
                })
                .map_err(|e| self.db_error(e))?;
            let kept_bytes = |keep: &HashSet<&str>| -> u64 {
                let mut seen = HashSet::new();
                run_blobs
                    .iter()
                    .filter(|(run, hash, _)| keep.contains(run.as_str()) && seen.insert(hash))
                    .map(|(_, _, size)| *size as u64)
                    .sum()
            };
            if let Some(budget) = policy.max_bytes {
                let mut droppable: Vec<&RunRow> = runs
                    .iter()
                    .filter(|r| keep.contains(r.id.as_str()) && !r.pinned && !r.running)
                    .collect();
                droppable.sort_by_key(|r| r.started);
                for r in droppable {
                    if kept_bytes(&keep) <= budget {
                        break;
                    }
                    keep.remove(r.id.as_str());
                }
            }
            report.bytes_kept = kept_bytes(&keep);
            report.runs_kept = keep.len();
            let removed: HashSet<&str> = runs
                .iter()
                .map(|r| r.id.as_str())
                .filter(|id| !keep.contains(id))
                .collect();
            for r in runs.iter().filter(|r| removed.contains(r.id.as_str())) {
                report.runs_removed.push(r.name.clone());
                if policy.dry_run {
                    continue;
                }
                for sql in [
                    "DELETE FROM artifacts WHERE execution_id IN \
                     (SELECT id FROM executions WHERE run_id = ?1)",
                    "DELETE FROM inputs WHERE execution_id IN \
                     (SELECT id FROM executions WHERE run_id = ?1)",
                    "DELETE FROM executions WHERE run_id = ?1",
                    "DELETE FROM runs WHERE id = ?1",
                ] {
                    tx.execute(sql, params![r.id])
                        .map_err(|e| self.db_error(e))?;
                }
            }
            // Undecodable marks of executions no row refers to any more (so that a reused
            // execution id never inherits one).
            if !policy.dry_run {
                tx.execute(
                    "DELETE FROM undecodable WHERE execution_id NOT IN (SELECT id FROM executions) \
                     AND execution_id NOT IN \
                     (SELECT reused_execution FROM executions WHERE reused_execution IS NOT NULL)",
                    [],
                )
                .map_err(|e| self.db_error(e))?;
            }
            // What the deletions leave referenced (a dry run filters instead of deleting).
            let rows: Vec<(String, Option<String>)> = tx
                .prepare(
                    "SELECT DISTINCT a.content_hash, e.run_id FROM artifacts a \
                     LEFT JOIN executions e ON e.id = a.execution_id",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                })
                .map_err(|e| self.db_error(e))?;
            referenced = rows
                .into_iter()
                .filter(|(_, run)| run.as_deref().is_none_or(|r| !removed.contains(r)))
                .map(|(hash, _)| hash)
                .collect();
            if policy.dry_run {
                tx.rollback().map_err(|e| self.db_error(e))?;
            } else {
                tx.commit().map_err(|e| self.db_error(e))?;
            }
        }
        self.remove_unreferenced_blobs(&referenced, policy, &mut report)?;
        Ok(report)
    }

    fn remove_unreferenced_blobs(
        &self,
        referenced: &HashSet<String>,
        policy: &GcPolicy,
        report: &mut GcReport,
    ) -> Result<()> {
        let now = SystemTime::now();
        // Age since the last write or cache hit (hits mark the blob used).
        let old_enough = |stat: &BlobStat| {
            stat.last_used.is_some_and(|last| {
                now.duration_since(last)
                    .is_ok_and(|age| age >= policy.min_blob_age)
            })
        };
        for path in self.dead_temp_files() {
            report.temp_files_removed += 1;
            if !policy.dry_run {
                let _ = fs::remove_file(path);
            }
        }
        let blobs = self.artifact_store();
        report.temp_files_removed += blobs
            .remove_stale_temporaries(policy.min_blob_age, policy.dry_run)
            .map_err(|e| Error::io(self.blobs_location(), e))?;
        let listed = blobs
            .list()
            .map_err(|e| Error::io(self.blobs_location(), e))?;
        for ListedBlob { hash, stat } in listed {
            if referenced.contains(&hash.to_hex()) || !old_enough(&stat) {
                continue;
            }
            report.blobs_removed += 1;
            report.bytes_freed += stat.size;
            if !policy.dry_run {
                // Its sidecar goes with it.
                blobs
                    .delete(hash)
                    .map_err(|e| Error::io(self.blob_path(hash), e))?;
                self.db()
                    .execute("DELETE FROM blobs WHERE hash = ?1", [hash.to_hex()])
                    .map_err(|e| self.db_error(e))?;
            }
        }
        Ok(())
    }
}
