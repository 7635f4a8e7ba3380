//! The lease guard: a claim on a cache key that keeps itself alive, commits the step's
//! execution and its outputs together with its own release, and releases itself on drop.
//! Modelled on salsa's `ClaimGuard` (`src/function/sync.rs`).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::lease::{abandon_in, Holder};
use super::liveness;
use super::metadata::MetadataStore;
use super::SqliteMetadata;
use crate::error::{Error, Result};
use crate::key::Hash128;
use crate::status::StepStatus;
use crate::time;

/// A claim on one cache key, as recorded in the metadata store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The claimed cache key, as 32 hex digits.
    pub cache_key: String,
    /// Who holds it.
    pub holder: Holder,
    /// The id of the step's `running` execution row, which the commit completes.
    pub execution: i64,
    /// When the key was claimed, in microseconds since the Unix epoch.
    pub claimed_at_us: i64,
}

impl Lease {
    /// The claimed cache key.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] when `cache_key` is not 32 hex digits (a damaged token).
    pub fn key(&self) -> Result<Hash128> {
        Hash128::from_hex(&self.cache_key).ok_or_else(|| self.lost())
    }

    /// The error saying this lease is no longer held as it says.
    pub(crate) fn lost(&self) -> Error {
        Error::LeaseLost {
            key: self.cache_key.clone(),
            holder: self.holder.to_string(),
        }
    }
}

/// A lease handed from one process to another as data (JSON through serde): the driver of
/// a cluster job exports the claim it made, the job's worker adopts it with
/// [`Store::adopt_lease`].
pub type LeaseToken = Lease;

/// One output of a step, as its commit records it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The output's declared name.
    pub name: String,
    /// Content hash of its blob, which must be in place before the commit.
    pub hash: Hash128,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The Rust type the step returned (`std::any::type_name`).
    pub type_name: String,
    /// The cacher's id (`bincode`, `json`, ...).
    pub cacher: String,
    /// The cacher's format version.
    pub cacher_version: u32,
    /// What the cacher reported about the value, if anything.
    pub metadata: Option<serde_json::Value>,
}

/// How a claimed step ended, for [`LeaseGuard::commit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// [`StepStatus::Executed`] or [`StepStatus::Failed`].
    pub status: StepStatus,
    /// Why the step executed (a miss explanation), as text.
    pub reason: Option<String>,
    /// The failure's message, for a failed step.
    pub error: Option<String>,
    /// The earlier execution the miss was compared with, as JSON.
    pub compared: Option<String>,
    /// How long the body and the writes of its outputs took.
    pub duration: Duration,
    /// The outputs in declaration order (none for a failed step).
    pub outputs: Vec<StepOutput>,
    /// Its attempts (when retried), and the metadata and metrics the step logged.
    pub details: super::ExecutionDetails,
}

impl Completion {
    /// The completion an execution row describes (its status, texts and outputs).
    pub(crate) fn of(row: &super::ExecutionRow<'_>) -> Completion {
        Completion {
            status: row.status,
            reason: row.reason.clone(),
            error: row.error.clone(),
            compared: row.compared.clone(),
            duration: row.duration,
            outputs: row.outputs.clone(),
            details: row.details.clone(),
        }
    }
}

/// A live claim on a cache key.
///
/// A guard is made by [`Store::begin_step`] (or [`Store::adopt_lease`]). While it lives:
/// - its store handle beats its lease, with every other lease the handle holds, every third
///   of `lease_ttl` from a thread of the handle (one statement per beat), so a claim stays
///   alive whether its step runs or still waits for a worker;
/// - the step's `running` execution row, recorded with the claim, shows other processes
///   what is executing and since when;
/// - a blob the step writes is *held* by the lease before it takes its content address
///   ([`LeaseGuard::hold_blob`]), so that gc spares it until the commit references it.
///
/// It ends in exactly one of three ways: [`commit`](LeaseGuard::commit) (the execution,
/// its outputs and the end of the lease in one transaction), `Drop` (the `running` row
/// becomes failed, the lease and its holds go), or [`into_token`](LeaseGuard::into_token)
/// (handed to another process, which adopts it with [`Store::adopt_lease`] and beats and
/// commits it from then on: on a cluster, a job's worker keeps the claim its driver made).
pub struct LeaseGuard {
    backend: Arc<dyn MetadataStore>,
    lease: Lease,
    armed: bool,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("lease", &self.lease)
            .field("armed", &self.armed)
            .finish()
    }
}

impl LeaseGuard {
    /// A guard for `lease`, which `backend` has just recorded (claimed or adopted) and
    /// keeps beating until [`MetadataStore::lease_closed`].
    pub fn from_parts(backend: Arc<dyn MetadataStore>, lease: Lease) -> LeaseGuard {
        LeaseGuard {
            backend,
            lease,
            armed: true,
        }
    }

    pub(crate) fn new(
        store: &SqliteMetadata,
        key: Hash128,
        holder: Holder,
        execution: i64,
        now: i64,
    ) -> Self {
        store.lease_opened();
        LeaseGuard::from_parts(
            Arc::new(store.clone()),
            Lease {
                cache_key: key.to_hex(),
                holder,
                execution,
                claimed_at_us: now,
            },
        )
    }

    /// The lease this guard holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The id of the step's `running` execution row, which the commit completes.
    pub fn execution(&self) -> i64 {
        self.lease.execution
    }

    /// Holds blob `hash` for this lease: gc spares it until the lease commits or ends. Call
    /// it before the blob takes its content address.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`] or [`Error::Database`] when the hold cannot be written.
    pub fn hold_blob(&self, hash: Hash128) -> Result<()> {
        self.backend.hold_blob(&self.lease, hash)
    }

    /// Records the step's execution and outputs and ends the lease, in one transaction;
    /// returns the execution's id. The outputs' blobs must be in place.
    ///
    /// A lease that was taken over meanwhile (its holder looked dead) still commits: its
    /// outputs are what the key computes, whoever else computes them too.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`], [`Error::Database`] or [`Error::Io`] when the transaction
    /// fails; the guard is then released as on drop.
    pub fn commit(mut self, done: Completion) -> Result<i64> {
        let result = self.backend.commit_lease(&self.lease, &done);
        if result.is_ok() {
            self.armed = false;
            self.backend.lease_closed(&self.lease);
        }
        result
    }

    /// Hands the lease to another process: the guard stops beating it and will neither
    /// commit nor release it. The other process adopts the token with
    /// [`Store::adopt_lease`] before `lease_ttl` runs out, and beats and commits it.
    pub fn into_token(mut self) -> LeaseToken {
        self.armed = false;
        self.backend.lease_closed(&self.lease);
        self.lease.clone()
    }
}

impl Drop for LeaseGuard {
    /// Releases an uncommitted lease: the key is free for other runs at once, and the
    /// step's `running` row becomes failed.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        if let Err(e) = self.backend.release_lease(&self.lease) {
            debug!(target: "pipeline", "Could not release the claim on {}: {e}", self.lease.cache_key);
        }
        self.backend.lease_closed(&self.lease);
    }
}

/// Per metadata handle: how many guards are live, and whether the heartbeat thread runs.
/// Every backend beats its leases this way ([`Beats::opened`], [`Beats::closed`]).
#[derive(Debug, Default)]
pub(crate) struct Beats {
    state: Mutex<(usize, bool)>,
}

impl Beats {
    fn state(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new live guard of the handle whose shared state is `inner` (its beats are
    /// `beats(inner)`), and starts the handle's heartbeat thread if it is not running. The
    /// thread calls `beat` every `period` (a third of the lease TTL), and ends at the first
    /// beat after the last guard ended, or with the handle (it holds `inner` weakly).
    pub(crate) fn opened<T: Send + Sync + 'static>(
        inner: &Arc<T>,
        beats: fn(&T) -> &Beats,
        period: Duration,
        beat: fn(Arc<T>) -> Result<usize>,
    ) {
        let mut state = beats(inner).state();
        state.0 += 1;
        if state.1 {
            return;
        }
        state.1 = true;
        let weak: Weak<T> = Arc::downgrade(inner);
        let period = period.max(Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("pipeline-heartbeat".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                let Some(inner) = weak.upgrade() else { break };
                {
                    let mut state = beats(&inner).state();
                    if state.0 == 0 {
                        state.1 = false;
                        break;
                    }
                }
                if let Err(e) = beat(inner) {
                    debug!(target: "pipeline", "Could not refresh this process's claims: {e}");
                }
            });
        if spawned.is_err() {
            state.1 = false;
        }
    }

    /// One live guard fewer (the heartbeat thread ends at its next beat after the last).
    pub(crate) fn closed(&self) {
        let mut state = self.state();
        state.0 = state.0.saturating_sub(1);
    }
}

impl SqliteMetadata {
    /// Counts a new live guard, and starts the handle's heartbeat thread if it is not
    /// running. The thread beats every lease of this handle every third of `lease_ttl`,
    /// and ends at the first beat after the last guard ended (or with the handle).
    pub(crate) fn lease_opened(&self) {
        Beats::opened(
            &self.inner,
            |inner| &inner.beats,
            self.options().lease_ttl / 3,
            |inner| SqliteMetadata { inner }.heartbeat(),
        );
    }

    /// Refreshes every lease this handle holds, in one statement; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`] or [`Error::Database`] when the update fails.
    pub fn heartbeat(&self) -> Result<usize> {
        self.db()
            .prepare_cached("UPDATE leases SET heartbeat_us = ?2 WHERE owner = ?1")
            .and_then(|mut s| s.execute(params![self.owner_token(), time::now_micros()]))
            .map_err(|e| self.db_error(e))
    }

    /// Takes over a lease another process exported with [`LeaseGuard::into_token`]: from
    /// now on this handle beats it, its liveness is this process's, and the returned guard
    /// commits or releases it.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] when the store no longer holds the lease as the token says
    /// (committed, released, already adopted elsewhere, or taken over after `lease_ttl`
    /// without a beat); [`Error::ReadOnly`] on a read-only handle; [`Error::StoreLocked`]
    /// or [`Error::Database`] when the transaction fails.
    pub fn adopt_lease(&self, token: LeaseToken) -> Result<LeaseGuard> {
        self.check_writable("adopt a lease")?;
        let key = token.key()?;
        let mut holder = token.holder.clone();
        holder.owner = self.owner_token().to_string();
        holder.host = liveness::host_name().to_string();
        holder.pid = std::process::id();
        let now = time::now_micros();
        {
            let mut conn = self.db();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.db_error(e))?;
            let found: Option<(String, String, String, Option<i64>)> = tx
                .query_row(
                    "SELECT run_id, step, owner, execution_id FROM leases WHERE cache_key = ?1",
                    [&token.cache_key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(|e| self.db_error(e))?;
            let held = found.is_some_and(|(run, step, owner, execution)| {
                run == token.holder.run_id
                    && step == token.holder.step
                    && (owner == token.holder.owner || owner == holder.owner)
                    && execution == Some(token.execution)
            });
            if !held {
                return Err(token.lost());
            }
            tx.execute(
                "UPDATE leases SET owner = ?2, host = ?3, pid = ?4, heartbeat_us = ?5 \
                 WHERE cache_key = ?1",
                params![token.cache_key, holder.owner, holder.host, holder.pid, now],
            )
            .map_err(|e| self.db_error(e))?;
            tx.execute(
                "UPDATE holds SET owner = ?3 WHERE cache_key = ?1 AND owner = ?2",
                params![token.cache_key, token.holder.owner, holder.owner],
            )
            .map_err(|e| self.db_error(e))?;
            tx.commit().map_err(|e| self.db_error(e))?;
        }
        Ok(LeaseGuard::new(
            self,
            key,
            holder,
            token.execution,
            token.claimed_at_us,
        ))
    }

    /// SQLite's side of [`MetadataStore::commit_lease`].
    pub(crate) fn commit_lease_sqlite(&self, lease: &Lease, done: &Completion) -> Result<i64> {
        let key = lease.key()?;
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let (attempts, metadata, metrics) = done.details.columns();
        tx.prepare_cached(
            "UPDATE executions SET status = ?2, reason = ?3, error = ?4, compared = ?5, \
             duration_s = ?6, attempts = ?7, metadata = ?8, metrics = ?9 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                lease.execution,
                done.status.as_str(),
                done.reason,
                done.error,
                done.compared,
                done.duration.as_secs_f64(),
                attempts,
                metadata,
                metrics
            ])
        })
        .map_err(|e| self.db_error(e))?;
        {
            let mut art = tx
                .prepare_cached(
                    "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                     type_name, cacher, cacher_version, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(|e| self.db_error(e))?;
            let mut stat = tx
                .prepare_cached(
                    "INSERT INTO blobs(hash, size, mtime_ns) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(hash) DO UPDATE SET size = ?2, mtime_ns = ?3",
                )
                .map_err(|e| self.db_error(e))?;
            for (pos, o) in done.outputs.iter().enumerate() {
                art.execute(params![
                    lease.execution,
                    o.name,
                    pos as i64,
                    o.hash.to_hex(),
                    o.size as i64,
                    o.type_name,
                    o.cacher,
                    o.cacher_version,
                    o.metadata.as_ref().map(|m| m.to_string()),
                ])
                .map_err(|e| self.db_error(e))?;
                // The blob is in place (invariant 1): remember its stat for stat-only hits.
                let blob = self.blob_stat(o.hash)?;
                stat.execute(params![o.hash.to_hex(), blob.size as i64, blob.modified_ns])
                    .map_err(|e| self.db_error(e))?;
            }
        }
        // Invariant 2: the lease ends in the commit (if it is still ours: one taken over
        // meanwhile belongs to its new holder).
        tx.execute(
            "DELETE FROM holds WHERE cache_key = ?1 AND owner = ?2",
            params![key.to_hex(), lease.holder.owner],
        )
        .map_err(|e| self.db_error(e))?;
        tx.execute(
            "DELETE FROM leases WHERE cache_key = ?1 AND owner = ?2 AND run_id = ?3 AND step = ?4",
            params![
                key.to_hex(),
                lease.holder.owner,
                lease.holder.run_id,
                lease.holder.step
            ],
        )
        .map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(lease.execution)
    }

    /// SQLite's side of [`MetadataStore::release_lease`].
    pub(crate) fn release_lease_sqlite(&self, lease: &Lease) -> Result<()> {
        let key = lease.key()?;
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let ours: bool = tx
            .query_row(
                "SELECT count(*) FROM leases WHERE cache_key = ?1 AND owner = ?2 \
                 AND run_id = ?3 AND step = ?4",
                params![
                    lease.cache_key,
                    lease.holder.owner,
                    lease.holder.run_id,
                    lease.holder.step
                ],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.db_error(e))?;
        // A lease taken over by another holder is not ours to delete; our row still fails.
        let owner = if ours {
            lease.holder.owner.as_str()
        } else {
            ""
        };
        abandon_in(&tx, key, owner, Some(lease.execution)).map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))
    }

    /// SQLite's side of [`MetadataStore::hold_blob`].
    pub(crate) fn hold_blob_sqlite(&self, lease: &Lease, hash: Hash128) -> Result<()> {
        self.db()
            .prepare_cached(
                "INSERT INTO holds(hash, cache_key, owner, at_us) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    hash.to_hex(),
                    lease.cache_key,
                    lease.holder.owner,
                    time::now_micros()
                ])
            })
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// SQLite's side of [`MetadataStore::lease_closed`]: one live guard fewer.
    pub(crate) fn lease_closed_sqlite(&self) {
        self.inner.beats.closed();
    }
}
