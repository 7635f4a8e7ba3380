//! Garbage collection by reachability: keep the last runs of each pipeline and pinned
//! runs, drop the rest (oldest first to fit a size budget), then remove the blobs that no
//! remaining execution references.
//!
//! A cached execution is recorded as a row pointing at the execution it reused
//! (`outputs_of`), whose artifact and input rows stand for its own. So an execution that a
//! row of a kept run points at hands its artifact and input rows over to the oldest such
//! row before its run is removed, and the others point at that row from then on: what a
//! kept row reuses stays, rows and blobs.
//!
//! Safe beside running pipelines by construction, whatever the policy: everything happens
//! in one write transaction, and a blob file is removed inside it only after re-checking,
//! under the store's write lock, that
//! - no execution row references it (rows committed before gc's transaction are seen;
//!   rows committed after it see the blob gone and never reference it: a cache hit checks
//!   the blob is present, a fresh output puts it back);
//! - no live lease holds it: a step's output is held by its lease before it takes its
//!   content address, until the commit that references it (`guard.rs`);
//! - no run that may have found it through a row is still running: the blob has been
//!   unreferenced since `condemned.since_us` (the last gc that saw a row reference it go,
//!   or the first that saw it unreferenced), and only a run that started before then can
//!   hold a cache hit on it that it has not recorded yet. Such blobs stay until those runs
//!   end.
//!
//! The last rule compares wall-clock times written by the processes sharing the store
//! (their runs' starts, gc's own clock), which is sound where they share a clock, as the
//! processes of one host do.
//!
//! `min_blob_age` is a plain option on top (keep young blob files for a while), not what
//! makes gc safe.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, SystemTime};

use rusqlite::{params, TransactionBehavior};
use serde::Serialize;

use super::artifacts::{ArtifactStore, BlobStat, ListedBlob};
use super::claim;
use super::liveness::Liveness;
use super::SqliteMetadata;
use crate::error::{Error, Result};
use crate::time;

/// A backend's temporary object older than this (or than `min_blob_age`, if longer) is a
/// leftover of a writer that died between upload and rename.
pub(crate) const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// What `Store::gc` keeps.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// Newest runs kept per pipeline (pinned and running runs are kept besides).
    pub keep_last: usize,
    /// Drop the oldest unpinned runs until the blobs the kept runs reference fit.
    pub max_bytes: Option<u64>,
    /// Report what would go without removing anything.
    pub dry_run: bool,
    /// Unreferenced blob files written or reused more recently than this stay. Default 10
    /// minutes; any age is safe, `Duration::ZERO` included (see the module documentation:
    /// what running pipelines rely on is held by references and leases, not by age).
    pub min_blob_age: Duration,
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

/// A run as gc sees it.
pub(crate) struct RunRow {
    pub id: String,
    pub name: String,
    pub pipeline: String,
    pub started: i64,
    pub pinned: bool,
    /// Running, by a process not proven dead.
    pub running: bool,
}

/// What gc decides from the metadata rows, the same on every backend.
pub(crate) struct Plan {
    /// Runs to remove, newest first.
    pub removed: Vec<String>,
    /// Ids of the runs to remove.
    pub removed_ids: HashSet<String>,
    pub runs_kept: usize,
    pub bytes_kept: u64,
    /// Execution of a removed run -> the oldest kept row pointing at it, which takes over
    /// its artifact and input rows.
    pub heirs: HashMap<i64, i64>,
    /// Blobs some row referenced before gc.
    pub referenced_before: HashSet<String>,
    /// Blobs some row still references after gc.
    pub referenced: HashSet<String>,
    /// Start of the oldest run still running.
    pub oldest_running: Option<i64>,
}

/// Plans a gc: `runs` newest first, `run_blobs` the `(run, hash, size)` each run
/// references, `executions` every `(id, run, outputs_of)` by id, `artifact_rows` every
/// `(hash, execution)` of the artifacts table.
pub(crate) fn plan(
    policy: &GcPolicy,
    runs: &[RunRow],
    run_blobs: &[(String, String, i64)],
    executions: &[(i64, String, Option<i64>)],
    artifact_rows: &[(String, i64)],
) -> Plan {
    let mut per_pipeline: HashMap<&str, usize> = HashMap::new();
    let mut keep: HashSet<&str> = HashSet::new();
    for r in runs {
        let n = per_pipeline.entry(&r.pipeline).or_default();
        if *n < policy.keep_last || r.pinned || r.running {
            keep.insert(&r.id);
        }
        *n += 1;
    }
    // Blob sizes per run, to fit the budget by dropping the oldest runs first.
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
    let removed_ids: HashSet<String> = runs
        .iter()
        .filter(|r| !keep.contains(r.id.as_str()))
        .map(|r| r.id.clone())
        .collect();
    // The executions of removed runs go. One that a row of a kept run points at
    // (`outputs_of`) hands its artifact and input rows over to the oldest such row
    // first, which the others then point at: a kept row never loses its outputs.
    let mut heirs: HashMap<i64, i64> = HashMap::new();
    let mut doomed: HashSet<i64> = HashSet::new();
    for (id, run, holder) in executions {
        if removed_ids.contains(run.as_str()) {
            doomed.insert(*id);
        } else if let Some(holder) = holder {
            heirs.entry(*holder).or_insert(*id);
        }
    }
    heirs.retain(|holder, _| doomed.contains(holder));
    // What rows referenced before the deletions, and after them (rows handed over to an
    // heir count as the heir's).
    let referenced_before = artifact_rows.iter().map(|(h, _)| h.clone()).collect();
    let referenced = artifact_rows
        .iter()
        .filter(|(_, execution)| !doomed.contains(execution) || heirs.contains_key(execution))
        .map(|(hash, _)| hash.clone())
        .collect();
    Plan {
        removed: runs
            .iter()
            .filter(|r| removed_ids.contains(&r.id))
            .map(|r| r.name.clone())
            .collect(),
        runs_kept: keep.len(),
        bytes_kept: kept_bytes(&keep),
        removed_ids,
        heirs,
        referenced_before,
        referenced,
        oldest_running: runs.iter().filter(|r| r.running).map(|r| r.started).min(),
    }
}

impl SqliteMetadata {
    /// Pins or unpins a run; see [`Store::pin`](crate::Store::pin).
    pub(crate) fn set_pinned(&self, run: &str, pinned: bool) -> Result<()> {
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

    /// Removes runs the policy does not keep and the blobs nothing references any more,
    /// in one write transaction; safe beside running pipelines whatever the policy (see the
    /// module documentation). Blobs that a running run may still rely on are kept and
    /// removed by a later gc, once those runs have ended. `blobs` is the store's artifact
    /// store; nothing is deleted where another store has claimed its location
    /// (`store/claim.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::SharedArtifacts`] when another store has claimed the artifact location;
    /// [`Error::ReadOnly`] on a read-only handle (dry runs excepted);
    /// [`Error::StoreLocked`], [`Error::Database`] or [`Error::Io`] when the store cannot be
    /// changed.
    pub(crate) fn gc_of(&self, policy: &GcPolicy, blobs: &dyn ArtifactStore) -> Result<GcReport> {
        if !policy.dry_run {
            self.check_writable("collect garbage")?;
        }
        // This store's claim on the location (a store of an earlier version writes it
        // now), then nobody else's: checked before anything changes, and again below,
        // after the listing.
        let own = self.store_id(!policy.dry_run)?;
        let describe = self.path().display().to_string();
        if let (Some(id), false) = (&own, policy.dry_run) {
            claim::write_claim(blobs, id, &describe)
                .map_err(|e| Error::io(self.blobs_location(), e))?;
        }
        claim::check_sole_user(blobs, own.as_deref(), &describe, self.blobs_location())?;
        let mut report = GcReport {
            dry_run: policy.dry_run,
            ..GcReport::default()
        };
        let mut conn = self.db();
        // A dry run only reads (one consistent snapshot), so it works on read-only handles
        // and media too.
        let behavior = if policy.dry_run {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let tx = conn
            .transaction_with_behavior(behavior)
            .map_err(|e| self.db_error(e))?;
        // Runs of processes proven dead are not running: they block nothing.
        let dead: HashSet<String> = self.dead_runs(&tx)?.into_iter().collect();
        if !policy.dry_run {
            for id in &dead {
                tx.execute(
                    "UPDATE runs SET status = 'failed' WHERE id = ?1 AND status = 'running'",
                    [id],
                )
                .map_err(|e| self.db_error(e))?;
            }
        }
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
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<RunRow>>>())
            })
            .map_err(|e| self.db_error(e))?
            .into_iter()
            .map(|r: RunRow| RunRow {
                running: r.running && !dead.contains(&r.id),
                ..r
            })
            .collect();
        // Blob sizes per run, to fit the budget by dropping the oldest runs first.
        // A cached row's blobs are those of the execution it points at (`outputs_of`).
        let run_blobs: Vec<(String, String, i64)> = tx
            .prepare(
                "SELECT DISTINCT e.run_id, a.content_hash, a.size FROM executions e \
                 JOIN artifacts a ON a.execution_id = COALESCE(e.outputs_of, e.id)",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let executions: Vec<(i64, String, Option<i64>)> = tx
            .prepare("SELECT id, run_id, outputs_of FROM executions ORDER BY id")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let rows: Vec<(String, i64)> = tx
            .prepare(
                "SELECT DISTINCT content_hash, execution_id FROM artifacts \
                 UNION SELECT DISTINCT value_blob, execution_id FROM inputs \
                 WHERE value_blob IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let Plan {
            removed: removed_names,
            removed_ids: removed,
            runs_kept,
            bytes_kept,
            heirs,
            referenced_before,
            referenced,
            oldest_running,
        } = plan(policy, &runs, &run_blobs, &executions, &rows);
        report.bytes_kept = bytes_kept;
        report.runs_kept = runs_kept;
        if !policy.dry_run {
            for (holder, heir) in &heirs {
                for sql in [
                    "UPDATE artifacts SET execution_id = ?2 WHERE execution_id = ?1",
                    "UPDATE inputs SET execution_id = ?2 WHERE execution_id = ?1",
                    "UPDATE executions SET outputs_of = NULL, components = \
                     CASE components WHEN '' THEN \
                     (SELECT h.components FROM executions h WHERE h.id = ?1) \
                     ELSE components END WHERE id = ?2",
                    // The heir (a cached row) shows the metadata and metrics it reused.
                    "UPDATE executions SET \
                     metadata = COALESCE(metadata, (SELECT h.metadata FROM executions h WHERE h.id = ?1)), \
                     metrics = COALESCE(metrics, (SELECT h.metrics FROM executions h WHERE h.id = ?1)) \
                     WHERE id = ?2",
                    "UPDATE executions SET outputs_of = ?2 WHERE outputs_of = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .and_then(|mut s| s.execute(params![holder, heir]))
                        .map_err(|e| self.db_error(e))?;
                }
            }
        }
        report.runs_removed = removed_names;
        for r in runs.iter().filter(|r| removed.contains(&r.id)) {
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
        // Blobs held by live leases (holds of dead handles count for nothing).
        let holds: Vec<(String, String)> = tx
            .prepare("SELECT hash, owner FROM holds")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let mut owner_alive: HashMap<String, bool> = HashMap::new();
        let mut held: HashSet<String> = HashSet::new();
        for (hash, owner) in holds {
            let alive = *owner_alive
                .entry(owner.clone())
                .or_insert_with(|| self.liveness(&owner, None, false) != Liveness::Dead);
            if alive {
                held.insert(hash);
            }
        }
        let condemned: HashMap<String, i64> = tx
            .prepare("SELECT hash, since_us FROM condemned")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect::<rusqlite::Result<HashMap<_, _>>>())
            })
            .map_err(|e| self.db_error(e))?;
        // The oldest run still running (`oldest_running`): a blob unreferenced since before
        // it started may be a cache hit of it that it has not recorded yet.
        let now = time::now_micros();
        let clock = SystemTime::now();
        // Age since the last write or cache hit (hits mark the blob used).
        let old_enough = |stat: &BlobStat| {
            policy.min_blob_age.is_zero()
                || stat.last_used.is_some_and(|last| {
                    clock
                        .duration_since(last)
                        .is_ok_and(|age| age >= policy.min_blob_age)
                })
        };
        for path in self.dead_temp_files() {
            report.temp_files_removed += 1;
            if !policy.dry_run {
                let _ = fs::remove_file(path);
            }
        }
        // A backend's temporary object lives from the end of its upload until its rename,
        // with the lease's hold written in between: only one older than the floor is a
        // dead writer's.
        report.temp_files_removed += blobs
            .remove_stale_temporaries(policy.min_blob_age.max(STALE_TEMPORARY), policy.dry_run)
            .map_err(|e| Error::io(self.blobs_location(), e))?;
        let listed = blobs
            .list()
            .map_err(|e| Error::io(self.blobs_location(), e))?;
        // A store that claimed the location since the first check writes its blobs after
        // its claim, so after this listing: none of them is in it.
        claim::check_sole_user(blobs, own.as_deref(), &describe, self.blobs_location())?;
        let mut remove_stat = tx
            .prepare("DELETE FROM blobs WHERE hash = ?1")
            .map_err(|e| self.db_error(e))?;
        let mut forget = tx
            .prepare("DELETE FROM condemned WHERE hash = ?1")
            .map_err(|e| self.db_error(e))?;
        let mut condemn = tx
            .prepare("INSERT OR REPLACE INTO condemned(hash, since_us) VALUES (?1, ?2)")
            .map_err(|e| self.db_error(e))?;
        for hash in condemned.keys() {
            if referenced.contains(hash) && !policy.dry_run {
                forget.execute([hash]).map_err(|e| self.db_error(e))?;
            }
        }
        // Condemned hashes whose blob is gone (removed by hand) are forgotten below.
        let mut gone: HashSet<&str> = condemned.keys().map(String::as_str).collect();
        for ListedBlob { hash, stat } in listed {
            let name = hash.to_hex();
            gone.remove(name.as_str());
            if referenced.contains(&name) || held.contains(&name) {
                continue;
            }
            let since = match condemned.get(&name) {
                Some(&since) if !referenced_before.contains(&name) => since,
                _ => {
                    if !policy.dry_run {
                        condemn
                            .execute(params![name, now])
                            .map_err(|e| self.db_error(e))?;
                    }
                    now
                }
            };
            if oldest_running.is_some_and(|started| started <= since) {
                continue; // a running run may rely on it: a later gc removes it
            }
            if !old_enough(&stat) {
                continue;
            }
            report.blobs_removed += 1;
            report.bytes_freed += stat.size;
            if !policy.dry_run {
                // Its sidecar goes with it.
                blobs
                    .delete(hash)
                    .map_err(|e| Error::io(self.blob_path(hash), e))?;
                remove_stat.execute([&name]).map_err(|e| self.db_error(e))?;
                forget.execute([&name]).map_err(|e| self.db_error(e))?;
            }
        }
        if !policy.dry_run {
            for hash in gone {
                forget.execute([hash]).map_err(|e| self.db_error(e))?;
            }
        }
        drop((remove_stat, forget, condemn));
        if policy.dry_run {
            tx.rollback().map_err(|e| self.db_error(e))?;
        } else {
            tx.commit().map_err(|e| self.db_error(e))?;
        }
        Ok(report)
    }
}
