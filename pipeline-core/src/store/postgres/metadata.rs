//! [`PostgresMetadata`]: runs, executions, leases and lineage in PostgreSQL, behind the
//! [`MetadataStore`] seam, keeping each invariant of its documentation with PostgreSQL's
//! transactions and row locks instead of SQLite's single write lock.
//!
//! # Locks
//!
//! Every transaction that touches a cache key's rows locks its `leases` row first (an
//! `INSERT .. ON CONFLICT DO NOTHING` that inserts it, a `SELECT .. FOR UPDATE`, or the
//! `DELETE` of a commit), then the runs, executions and holds it changes. One order for all,
//! so two of them wait for each other instead of deadlocking; a deadlock or serialization
//! failure the server reports all the same is retried a few times. (A cache hit touches no
//! lease: it only keeps the execution it reuses from being deleted, `FOR KEY SHARE`, until
//! its cached row commits.)
//!
//! # Liveness
//!
//! Hosts share no file locks, so a lease expires by heartbeat (`lease_ttl`, measured in the
//! server's clock). A holder can be proven dead sooner: each handle holds a session-level
//! advisory lock keyed by its owner token on a connection of its own, which the server
//! releases when that session ends, however its process ended (`kill -9` included). A
//! holder whose key no session holds (`pipeline_live_owners`, a view of `pg_locks`) is
//! dead, and its claims are taken over at once. A host that vanishes without closing its
//! sockets (a power cut) keeps its session until the server's TCP keepalive gives up on it;
//! its leases expire by heartbeat meanwhile. This needs a direct session to the server: a
//! pooler in transaction mode (PgBouncer's) would hand the lock's session to others.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row, Transaction};
use tracing::debug;

use super::{Access, Postgres, CONNECT_TIMEOUT};
use crate::config::PostgresUrl;
use crate::error::{Error, Result, UnknownValue};
use crate::key::{Hash128, KeyComponents};
use crate::status::StepStatus;
use crate::store::artifacts::{self, ArtifactStore, BlobStat, ListedBlob};
use crate::store::claim;
use crate::store::copy::{
    self, ExportedArtifact, ExportedExecution, ExportedInput, ExportedLog, ExportedRun,
    ExportedUndecodable, ImportTx,
};
use crate::store::earlier::{calls_of, newest_call_sql, Call, Candidates, EarlierCall};
use crate::store::gc::{self, GcPolicy, GcReport, RunRow, STALE_TEMPORARY};
use crate::store::guard::{Beats, Completion, Lease, LeaseGuard, LeaseToken};
use crate::store::lease::{Begin, Holder, CLAIM_ENDED, END_UNRECORDED_SQL, PROCESS_ENDED};
use crate::store::liveness;
use crate::store::logs::{self, ExecutionLog, EXECUTION_LOGS_SQL, RECORD_LOG_SQL};
use crate::store::metadata::{
    Backend, FoundArtifact, MetadataPass, MetadataStore, RunStart, StepStart,
};
use crate::store::rows::{self, Cell, Columns};
use crate::store::verify::{
    SidecarRow, VerifyRows, SIDECAR_ROW_SQL, VERIFY_ARTIFACTS_SQL, VERIFY_EXECUTIONS_SQL,
    VERIFY_LOGS_SQL,
};
use crate::store::{ContentHash, ExecutionRow, Lookup as Lookup_, OutputsHolder};
use crate::store::{Damage, ExecutionRef, Lineage, RunRecord, RunStatus, StepRecord};

/// The server's clock in microseconds since the Unix epoch, as a literal for `concat!`:
/// heartbeats are written and compared in one clock, whatever the hosts' clocks say.
macro_rules! now_us {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
    };
}

/// Whether the handle with owner token `$owner` (an SQL expression) holds its advisory
/// lock, as a literal for `concat!`.
macro_rules! owner_alive {
    ($owner:literal) => {
        concat!(
            "(pipeline_owner_key(",
            $owner,
            ") IN (SELECT owner_key FROM pipeline_live_owners))"
        )
    };
}

/// How often one `begin_step` tries to claim a key that others keep claiming and
/// releasing under it before it gives up.
const CLAIM_ATTEMPTS: usize = 100;

/// How often a transaction is run again after the server aborted it to break a deadlock
/// or a serialization conflict.
const RETRIES: usize = 5;

/// How long the heartbeat waits for the lock's session to answer before reconnecting it.
const LIFE_CHECK: Duration = Duration::from_secs(5);

/// The metadata of a store in a PostgreSQL database: a [`MetadataStore`] that passes
/// [`contract::metadata`](crate::store::contract::metadata), for stores shared by hosts
/// (runs on several machines, a cluster).
///
/// Each handle is one participant with an owner token of its own: its runs and leases carry
/// the token, and a thread of the handle beats its leases every third of `lease_ttl` while
/// it holds any. A lease expires after `lease_ttl` without a beat, measured in the server's
/// clock. Besides, the handle holds a session-level advisory lock keyed by its token on a
/// connection of its own, which the server releases when that session ends, however its
/// process ended: a holder whose lock no session holds (`pg_locks`) is dead, and the other
/// handles take over its claims at once. (That needs a direct session to the server, not a
/// pooler in transaction mode.) Cheap to clone; clones share the handle.
///
/// A cache hit trusts the committed rows and asks the artifact store nothing; a load that
/// then finds an output's bytes missing or damaged reports it with
/// [`blob_damaged`](PostgresMetadata::blob_damaged) (or an undecodable value with
/// [`undecodable`](PostgresMetadata::undecodable)), and the next lookup of that key
/// executes the step again.
#[derive(Clone)]
pub struct PostgresMetadata {
    inner: Arc<Inner>,
}

struct Inner {
    db: Postgres,
    /// This handle's owner token (`P<host tag>.<pid>.<nonce>`).
    owner: String,
    lease_ttl: Duration,
    /// The session holding this handle's advisory lock; replaced by the heartbeat if it
    /// is lost.
    life: Mutex<Client>,
    /// Live lease guards of this handle and its heartbeat thread.
    beats: Beats,
}

impl std::fmt::Debug for PostgresMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMetadata")
            .field("url", self.inner.db.url())
            .field("owner", &self.inner.owner)
            .finish()
    }
}

/// Why a transaction body stopped: a database error (retried when the server asks for it),
/// a stored value this version does not know, or an error of ours.
enum Fail {
    Db(postgres::Error),
    Unknown(UnknownValue),
    Other(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Other(e)
    }
}

impl From<RowError> for Fail {
    fn from(e: RowError) -> Self {
        match e {
            RowError::Db(e) => Fail::Db(e),
            RowError::Unknown(v) => Fail::Unknown(v),
        }
    }
}

/// A column that could not be read.
pub(crate) enum RowError {
    Db(postgres::Error),
    Unknown(UnknownValue),
}

impl Columns for Row {
    type Error = RowError;

    fn get<T: Cell>(&self, column: usize) -> Result<T, RowError> {
        self.try_get(column).map_err(RowError::Db)
    }

    fn unknown(&self, _column: usize, value: UnknownValue) -> RowError {
        RowError::Unknown(value)
    }
}

/// Shared SQL is written with SQLite's `?1`; PostgreSQL numbers its parameters `$1`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// What a cache lookup found for a key, on the transaction deciding it.
enum Lookup {
    Hit(Hit),
    Miss,
    Damaged(Damage),
}

/// A completed execution whose outputs a step can reuse.
struct Hit {
    /// The execution whose outputs are reused (the one it reused in turn, if still there).
    reused: i64,
    /// The execution holding the artifact and input rows, which a cached row points at.
    holder: i64,
    /// The holder's key components, as stored.
    components: String,
    outputs: Vec<(Hash128, u64)>,
    /// When the holder finished (microseconds since the Unix epoch).
    produced_at_us: i64,
}

/// What `begin_step`'s transaction decided.
enum Decided {
    Hit {
        execution: i64,
        hit: Hit,
    },
    Busy(Holder),
    Claimed {
        execution: i64,
        claimed_at_us: i64,
        damaged: Option<Damage>,
    },
}

impl PostgresMetadata {
    /// Connects to the store in the database `url` names, migrating its schema forward
    /// (or creating it), takes this handle's advisory lock on a session of its own, and
    /// cleans up after handles proven dead since (their runs and `running` rows failed,
    /// their leases and holds deleted). A claim of this handle lives `lease_ttl` without a
    /// heartbeat.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the server cannot be reached within 10 s, refuses the
    /// credentials or a request, or has no such database; [`Error::StoreTooNew`] for a
    /// database written by a newer version; [`Error::NotAStore`] for a database holding
    /// other tables of those names.
    pub fn connect(url: &PostgresUrl, lease_ttl: Duration) -> Result<PostgresMetadata> {
        PostgresMetadata::open(url, lease_ttl, Access::Write)
    }

    /// Connects to the store in the database `url` names for reading only: nothing is
    /// created or changed (the server refuses every write of the handle's sessions), so a
    /// database without a store stays empty.
    ///
    /// # Errors
    ///
    /// As [`connect`](PostgresMetadata::connect), and [`Error::NotAStore`] for a database
    /// that holds no store; [`Error::ReadOnly`] for a store whose schema is older than
    /// this version's (a writable [`connect`](PostgresMetadata::connect) upgrades it).
    pub fn connect_read_only(url: &PostgresUrl) -> Result<PostgresMetadata> {
        PostgresMetadata::open(
            url,
            crate::store::StoreOptions::default().lease_ttl,
            Access::Read,
        )
    }

    fn open(url: &PostgresUrl, lease_ttl: Duration, access: Access) -> Result<PostgresMetadata> {
        let (db, mut life) = Postgres::open(url, CONNECT_TIMEOUT, access)?;
        let owner = format!("P{}", liveness::handle_id());
        if !take_owner_lock(&mut life, &owner).map_err(|e| db.error(e))? {
            return Err(lock_taken(&db));
        }
        let handle = PostgresMetadata {
            inner: Arc::new(Inner {
                db,
                owner,
                lease_ttl,
                life: Mutex::new(life),
                beats: Beats::default(),
            }),
        };
        if access == Access::Write {
            handle.recover()?;
        }
        Ok(handle)
    }

    /// The owner token this handle's runs and leases carry.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Records that blob `hash` was found missing (or, with `corrupt`, damaged) when
    /// loaded: the next lookup of a key one of whose outputs it is executes the step again
    /// (a [`Damage`] says why), and the commit that writes it again clears the mark.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the mark cannot be written.
    pub fn blob_damaged(&self, hash: Hash128, corrupt: bool) -> Result<()> {
        let damage = if corrupt { "corrupt" } else { "missing" };
        self.read(|c| {
            c.execute(
                concat!(
                    "INSERT INTO damaged_blobs(hash, damage, at_us) VALUES ($1, $2, ",
                    now_us!(),
                    ") ON CONFLICT (hash) DO UPDATE SET damage = EXCLUDED.damage, at_us = EXCLUDED.at_us"
                ),
                &[&hash.to_hex(), &damage],
            )?;
            Ok(())
        })
    }

    /// Records that output `output` written by execution `execution` does not decode as
    /// `type_name` (`message` says why), so cache lookups stop reusing it: the next run
    /// executes the step again.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the record cannot be written.
    pub fn undecodable(
        &self,
        execution: i64,
        output: &str,
        type_name: &str,
        message: &str,
    ) -> Result<()> {
        self.read(|c| {
            c.execute(
                concat!(
                    "INSERT INTO undecodable(execution_id, output, type_name, message, at_us) \
                     VALUES ($1, $2, $3, $4, ",
                    now_us!(),
                    ") ON CONFLICT (execution_id, output) DO UPDATE SET \
                     type_name = EXCLUDED.type_name, message = EXCLUDED.message, at_us = EXCLUDED.at_us"
                ),
                &[&execution, &output, &type_name, &message],
            )?;
            Ok(())
        })
    }

    fn url(&self) -> &PostgresUrl {
        self.inner.db.url()
    }

    fn ttl_us(&self) -> i64 {
        i64::try_from(self.inner.lease_ttl.as_micros()).unwrap_or(i64::MAX)
    }

    fn error(&self, fail: Fail) -> Error {
        let unknown = |v: UnknownValue| Error::UnknownStoredValue {
            path: self.url().to_string().into(),
            what: v.what,
            value: v.value,
        };
        match fail {
            Fail::Db(e) => {
                match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<UnknownValue>()) {
                    Some(v) => unknown(v.clone()),
                    None => self.inner.db.error(e),
                }
            }
            Fail::Unknown(v) => unknown(v),
            Fail::Other(e) => e,
        }
    }

    /// Runs `body` on a pooled connection, outside any transaction (one statement, or
    /// reads that need no common snapshot).
    fn read<T>(&self, body: impl FnOnce(&mut Client) -> Result<T, Fail>) -> Result<T> {
        let mut conn = self.inner.db.conn()?;
        body(&mut conn).map_err(|f| self.error(f))
    }

    /// Runs `body` in a transaction and commits it; runs it again (up to [`RETRIES`]
    /// times) when the server aborted it to break a deadlock or a serialization conflict.
    /// An error of `body` rolls the transaction back.
    fn transact<T>(
        &self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T> {
        let mut conn = self.inner.db.conn()?;
        let mut attempt = 0;
        loop {
            let outcome = conn.transaction().map_err(Fail::Db).and_then(|mut tx| {
                let value = body(&mut tx)?;
                tx.commit()?;
                Ok(value)
            });
            match outcome {
                Err(Fail::Db(e)) if attempt < RETRIES && retryable(&e) => attempt += 1,
                other => return other.map_err(|f| self.error(f)),
            }
        }
    }

    /// The holder that `step` is in this handle.
    fn holder(&self, step: &StepStart) -> Holder {
        Holder {
            run_id: step.run_id.clone(),
            run_name: step.run_name.clone(),
            step: step.name.clone(),
            host: liveness::host_name().to_string(),
            pid: std::process::id(),
            owner: self.inner.owner.clone(),
        }
    }

    /// A guard of `lease`, which this handle beats from now on.
    fn guard(&self, lease: Lease) -> LeaseGuard {
        Beats::opened(
            &self.inner,
            |inner| &inner.beats,
            self.inner.lease_ttl / 3,
            |inner| PostgresMetadata { inner }.beat(),
        );
        LeaseGuard::from_parts(Arc::new(self.clone()), lease)
    }

    /// One beat of the heartbeat thread: the lock's session is checked (and replaced if it
    /// was lost, so that other handles do not take this one for dead), then every lease of
    /// the handle is refreshed.
    fn beat(&self) -> Result<usize> {
        self.keep_alive();
        self.heartbeat()
    }

    fn keep_alive(&self) {
        let mut life = self.inner.life.lock().unwrap_or_else(|p| p.into_inner());
        if life.is_valid(LIFE_CHECK).is_ok() {
            return;
        }
        let relocked = self.inner.db.dedicated().and_then(|mut client| {
            match take_owner_lock(&mut client, &self.inner.owner) {
                Ok(true) => Ok(client),
                Ok(false) => Err(lock_taken(&self.inner.db)),
                Err(e) => Err(self.inner.db.error(e)),
            }
        });
        match relocked {
            Ok(client) => *life = client,
            // The old session may still hold the lock on the server; tried again next beat.
            Err(e) => {
                debug!(target: "pipeline", "Could not renew this handle's liveness lock: {e}")
            }
        }
    }

    /// Claims `key` for `holder` on `tx`: its lease row is ours and locked when this returns
    /// `None`; `Some` is the live holder that has it. A holder proven dead (its lock is free)
    /// or silent for `lease_ttl` is taken over: its claim ends as [`abandon`] ends it, and a
    /// holder proven dead has its run failed too.
    fn claim(
        &self,
        tx: &mut Transaction<'_>,
        key: &str,
        holder: &Holder,
    ) -> Result<Option<Holder>, Fail> {
        let pid = i64::from(holder.pid);
        for _ in 0..CLAIM_ATTEMPTS {
            let inserted = tx.query_opt(
                concat!(
                    "INSERT INTO leases(cache_key, run_id, step, host, pid, owner, heartbeat_us, \
                     claimed_at_us) VALUES ($1, $2, $3, $4, $5, $6, ",
                    now_us!(),
                    ", ",
                    now_us!(),
                    ") ON CONFLICT (cache_key) DO NOTHING RETURNING 1"
                ),
                &[
                    &key,
                    &holder.run_id,
                    &holder.step,
                    &holder.host,
                    &pid,
                    &holder.owner,
                ],
            )?;
            if inserted.is_some() {
                return Ok(None);
            }
            let current = tx.query_opt(
                concat!(
                    "SELECT l.run_id, COALESCE(r.name, l.run_id), l.step, l.host, l.pid, l.owner, \
                     l.execution_id, (",
                    now_us!(),
                    " - l.heartbeat_us) >= $2, ",
                    owner_alive!("l.owner"),
                    " FROM leases l LEFT JOIN runs r ON r.id = l.run_id \
                     WHERE l.cache_key = $1 FOR UPDATE OF l"
                ),
                &[&key, &self.ttl_us()],
            )?;
            // Committed or released since the insert found it: try again.
            let Some(row) = current else { continue };
            let other = Holder {
                run_id: row.try_get(0)?,
                run_name: row.try_get(1)?,
                step: row.try_get(2)?,
                host: row.try_get(3)?,
                pid: u32::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
                owner: row.try_get(5)?,
            };
            let execution: Option<i64> = row.try_get(6)?;
            let (expired, alive): (bool, bool) = (row.try_get(7)?, row.try_get(8)?);
            if other != *holder {
                if alive && !expired {
                    return Ok(Some(other));
                }
                debug!(
                    target: "pipeline",
                    "{other} has ended or stopped beating; taking over its cache key."
                );
                if !alive {
                    // Proven dead by its lock: its run has ended too.
                    tx.execute(
                        "UPDATE runs SET status = 'failed' \
                         WHERE id = $1 AND owner = $2 AND status = 'running'",
                        &[&other.run_id, &other.owner],
                    )?;
                }
            }
            abandon(tx, key, &other.owner, execution)?;
        }
        Err(Fail::Other(Error::Remote {
            location: self.url().to_string(),
            problem: format!(
                "the claim on cache key {key} changed hands {CLAIM_ATTEMPTS} times while this run tried to take it; run the pipeline again"
            ),
            source: None,
        }))
    }

    /// Records `step` as an execution and returns its id: a cached one reusing `hit`,
    /// pointing at the rows of the execution holding its outputs, or without a hit a
    /// `running` one with its inputs.
    fn record_step(
        tx: &mut Transaction<'_>,
        step: &StepStart,
        components: &str,
        hit: Option<&Hit>,
    ) -> Result<i64, Fail> {
        let (status, components, reason) = match hit {
            // The key components are stored once, on the row pointed at, when they are
            // the same.
            Some(hit) => (
                "cached",
                if hit.components == components {
                    ""
                } else {
                    components
                },
                Some(format!("reused execution {}", hit.reused)),
            ),
            None => ("running", components, None),
        };
        // Typed, as the lookup: one round trip.
        let row = tx.query_typed_one(
            "INSERT INTO executions(run_id, name, step, position, status, cache_key, \
             code_signature, components, reason, reused_execution, outputs_of, started_at_us, \
             duration_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0) \
             RETURNING id",
            &[
                (&step.run_id, Type::TEXT),
                (&step.name, Type::TEXT),
                (&step.step, Type::TEXT),
                (&(step.position as i64), Type::INT8),
                (&status, Type::TEXT),
                (&step.cache_key.to_hex(), Type::TEXT),
                (&step.components.code_signature, Type::TEXT),
                (&components, Type::TEXT),
                (&reason, Type::TEXT),
                (&hit.map(|h| h.reused), Type::INT8),
                (&hit.map(|h| h.holder), Type::INT8),
                (&crate::time::now_micros(), Type::INT8),
            ],
        )?;
        let id: i64 = row.try_get(0)?;
        if hit.is_none() {
            insert_inputs(
                tx,
                id,
                step.inputs
                    .iter()
                    .map(|i| (i.name.as_str(), i.hash, i.producer, i.value)),
            )?;
        }
        Ok(id)
    }

    /// Step records (with inputs and outputs) of the executions `filter` selects (an SQL
    /// condition on `e` with one parameter, `$1`), in graph order.
    fn steps(&self, filter: &str, param: &(dyn ToSql + Sync)) -> Result<Vec<StepRecord>> {
        self.read(|c| {
            let rows = c.query(
                &format!(
                    concat!(
                        "SELECT ",
                        rows::step_columns!(),
                        ", COALESCE(e.outputs_of, e.id) FROM executions e WHERE {} \
                         ORDER BY e.position, e.id"
                    ),
                    filter
                ),
                &[param],
            )?;
            // A cached row holds no artifact and input rows of its own: they are those of
            // the execution it points at.
            let holders =
                format!("SELECT COALESCE(e.outputs_of, e.id) FROM executions e WHERE {filter}");
            let outputs = by_execution(
                c,
                &format!(
                    concat!(
                        "SELECT execution_id, ",
                        rows::artifact_columns!(),
                        " FROM artifacts WHERE execution_id IN ({}) ORDER BY execution_id, position"
                    ),
                    holders
                ),
                param,
                rows::artifact_record::<Row>,
            )?;
            let inputs = by_execution(
                c,
                &format!(
                    "SELECT execution_id, name, content_hash, producer_execution, value_blob \
                     FROM inputs WHERE execution_id IN ({holders}) ORDER BY execution_id, position"
                ),
                param,
                rows::input_record::<Row>,
            )?;
            rows.iter()
                .map(|row| {
                    let mut record = rows::step_record(row)?;
                    let holder: i64 = row.try_get(15)?;
                    record.outputs = outputs.get(&holder).cloned().unwrap_or_default();
                    record.inputs = inputs.get(&holder).cloned().unwrap_or_default();
                    Ok(record)
                })
                .collect()
        })
    }
}

impl MetadataStore for PostgresMetadata {
    fn begin_run(&self, run: &RunStart) -> Result<()> {
        self.read(|c| {
            c.execute(
                "INSERT INTO runs(id, pipeline, name, status, started_at_us, pid, owner, host) \
                 VALUES ($1, $2, $3, 'running', $4, $5, $6, $7)",
                &[
                    &run.id,
                    &run.pipeline,
                    &run.name,
                    &run.started_at_us,
                    &i64::from(std::process::id()),
                    &self.inner.owner,
                    &liveness::host_name(),
                ],
            )?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, status: RunStatus, duration: Duration) -> Result<()> {
        self.read(|c| {
            c.execute(
                "UPDATE runs SET status = $2, duration_s = $3 WHERE id = $1",
                &[&id, &status.as_str(), &duration.as_secs_f64()],
            )?;
            Ok(())
        })
    }

    /// Decides a step in one transaction. A completed execution with the key is reused
    /// without touching the key's lease. Otherwise the lease row is claimed or locked
    /// (invariant 1), and the lookup runs again under that lock, so that a commit that
    /// slipped in after the first lookup is reused instead of executed again.
    fn begin_step(&self, step: &StepStart) -> Result<Begin> {
        let key = step.cache_key.to_hex();
        let holder = self.holder(step);
        let components = serde_json::to_string(&step.components).unwrap_or_else(|_| "{}".into());
        // Expired (`cache_expires`): claimed and executed again under the same key.
        let fresh = |found: Lookup| match found {
            Lookup::Hit(hit) if step.not_before_us.is_some_and(|t| hit.produced_at_us < t) => {
                Lookup::Miss
            }
            other => other,
        };
        let decided = self.transact(|tx| {
            if let Lookup::Hit(hit) = fresh(lookup(tx, &key)?) {
                let execution = Self::record_step(tx, step, &components, Some(&hit))?;
                return Ok(Decided::Hit { execution, hit });
            }
            if let Some(other) = self.claim(tx, &key, &holder)? {
                return Ok(Decided::Busy(other));
            }
            let damaged = match fresh(lookup(tx, &key)?) {
                Lookup::Hit(hit) => {
                    tx.execute("DELETE FROM leases WHERE cache_key = $1", &[&key])?;
                    let execution = Self::record_step(tx, step, &components, Some(&hit))?;
                    return Ok(Decided::Hit { execution, hit });
                }
                Lookup::Miss => None,
                Lookup::Damaged(damage) => Some(damage),
            };
            let execution = Self::record_step(tx, step, &components, None)?;
            let claimed = tx.query_one(
                "UPDATE leases SET execution_id = $2 WHERE cache_key = $1 RETURNING claimed_at_us",
                &[&key, &execution],
            )?;
            Ok(Decided::Claimed {
                execution,
                claimed_at_us: claimed.try_get(0)?,
                damaged,
            })
        })?;
        Ok(match decided {
            Decided::Hit { execution, hit } => Begin::Hit {
                execution,
                reused: hit.reused,
                outputs: hit.outputs,
            },
            Decided::Busy(other) => Begin::Busy(other),
            Decided::Claimed {
                execution,
                claimed_at_us,
                damaged,
            } => Begin::Claimed {
                lease: self.guard(Lease {
                    cache_key: key,
                    holder,
                    execution,
                    claimed_at_us,
                }),
                damaged,
            },
        })
    }

    fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>> {
        if waits.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = waits.iter().map(|(key, _)| key.to_hex()).collect();
        let live: HashMap<String, (String, String, String, bool)> = self.read(|c| {
            c.query(
                concat!(
                    "SELECT cache_key, run_id, step, owner, (",
                    now_us!(),
                    " - heartbeat_us) < $2 AND ",
                    owner_alive!("owner"),
                    " FROM leases WHERE cache_key = ANY($1)"
                ),
                &[&keys, &self.ttl_us()],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
                ))
            })
            .collect::<Result<_, Fail>>()
        })?;
        Ok(waits
            .iter()
            .zip(&keys)
            .map(|((_, holder), key)| {
                live.get(key).is_some_and(|(run_id, step, owner, live)| {
                    *live
                        && *run_id == holder.run_id
                        && *step == holder.step
                        && *owner == holder.owner
                })
            })
            .collect())
    }

    /// Invariant 2: the lease row goes first (it is what every transaction on the key locks
    /// first), then its holds, then the `running` row is completed and the outputs recorded,
    /// all in one transaction.
    fn commit_lease(&self, lease: &Lease, done: &Completion) -> Result<i64> {
        lease.key()?;
        let outputs = &done.outputs;
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        let positions: Vec<i64> = (0..outputs.len() as i64).collect();
        let hashes: Vec<String> = outputs.iter().map(|o| o.hash.to_hex()).collect();
        let sizes: Vec<i64> = outputs.iter().map(|o| o.size as i64).collect();
        let types: Vec<&str> = outputs.iter().map(|o| o.type_name.as_str()).collect();
        let cachers: Vec<&str> = outputs.iter().map(|o| o.cacher.as_str()).collect();
        let versions: Vec<i64> = outputs
            .iter()
            .map(|o| i64::from(o.cacher_version))
            .collect();
        let metadata: Vec<Option<String>> = outputs
            .iter()
            .map(|o| o.metadata.as_ref().map(|m| m.to_string()))
            .collect();
        self.transact(|tx| {
            // If it is still ours: one taken over meanwhile belongs to its new holder.
            tx.execute(
                "DELETE FROM leases WHERE cache_key = $1 AND owner = $2 AND run_id = $3 AND step = $4",
                &[&lease.cache_key, &lease.holder.owner, &lease.holder.run_id, &lease.holder.step],
            )?;
            tx.execute(
                "DELETE FROM holds WHERE cache_key = $1 AND owner = $2",
                &[&lease.cache_key, &lease.holder.owner],
            )?;
            let (attempts, step_metadata, metrics) = done.details.columns();
            tx.execute(
                "UPDATE executions SET status = $2, reason = $3, error = $4, compared = $5, \
                 duration_s = $6, attempts = $7, metadata = $8, metrics = $9 WHERE id = $1",
                &[
                    &lease.execution,
                    &done.status.as_str(),
                    &done.reason,
                    &done.error,
                    &done.compared,
                    &done.duration.as_secs_f64(),
                    &attempts,
                    &step_metadata,
                    &metrics,
                ],
            )?;
            if !outputs.is_empty() {
                tx.execute(
                    "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                     type_name, cacher, cacher_version, metadata) \
                     SELECT $1, o.name, o.position, o.hash, o.size, o.type_name, o.cacher, \
                            o.version, o.metadata \
                     FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], \
                                 $7::text[], $8::bigint[], $9::text[]) \
                          AS o(name, position, hash, size, type_name, cacher, version, metadata)",
                    &[
                        &lease.execution,
                        &names,
                        &positions,
                        &hashes,
                        &sizes,
                        &types,
                        &cachers,
                        &versions,
                        &metadata,
                    ],
                )?;
                // The blobs are in place (invariant 3): whatever a load found before is
                // no longer so.
                if done.status == StepStatus::Executed {
                    tx.execute("DELETE FROM damaged_blobs WHERE hash = ANY($1)", &[&hashes])?;
                }
            }
            Ok(lease.execution)
        })
    }

    fn release_lease(&self, lease: &Lease) -> Result<()> {
        lease.key()?;
        self.transact(|tx| {
            let ours = tx
                .query_opt(
                    "SELECT 1 FROM leases WHERE cache_key = $1 AND owner = $2 AND run_id = $3 \
                     AND step = $4 FOR UPDATE",
                    &[
                        &lease.cache_key,
                        &lease.holder.owner,
                        &lease.holder.run_id,
                        &lease.holder.step,
                    ],
                )?
                .is_some();
            // A lease taken over by another holder is not ours to delete; our row still fails.
            let owner = if ours {
                lease.holder.owner.as_str()
            } else {
                ""
            };
            abandon(tx, &lease.cache_key, owner, Some(lease.execution))
        })
    }

    /// Invariant 4's side of a hold: its `INSERT` takes `holds` in `ROW EXCLUSIVE` mode,
    /// which a gc holding the table in `SHARE ROW EXCLUSIVE` mode waits for (and the other
    /// way round), committed before the blob takes its content address.
    fn hold_blob(&self, lease: &Lease, hash: Hash128) -> Result<()> {
        self.read(|c| {
            c.execute(
                concat!(
                    "INSERT INTO holds(hash, cache_key, owner, at_us) VALUES ($1, $2, $3, ",
                    now_us!(),
                    ")"
                ),
                &[&hash.to_hex(), &lease.cache_key, &lease.holder.owner],
            )?;
            Ok(())
        })
    }

    fn lease_closed(&self, _lease: &Lease) {
        self.inner.beats.closed();
    }

    fn heartbeat(&self) -> Result<usize> {
        self.read(|c| {
            let n = c.execute(
                concat!(
                    "UPDATE leases SET heartbeat_us = ",
                    now_us!(),
                    " WHERE owner = $1"
                ),
                &[&self.inner.owner],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn adopt_lease(&self, token: LeaseToken) -> Result<LeaseGuard> {
        token.key()?;
        let mut holder = token.holder.clone();
        holder.owner = self.inner.owner.clone();
        holder.host = liveness::host_name().to_string();
        holder.pid = std::process::id();
        self.transact(|tx| {
            let found = tx.query_opt(
                "SELECT run_id, step, owner, execution_id FROM leases WHERE cache_key = $1 FOR UPDATE",
                &[&token.cache_key],
            )?;
            let held = match found {
                Some(row) => {
                    let (run, step, owner, execution): (String, String, String, Option<i64>) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                    run == token.holder.run_id
                        && step == token.holder.step
                        && (owner == token.holder.owner || owner == holder.owner)
                        && execution == Some(token.execution)
                }
                None => false,
            };
            if !held {
                return Err(Fail::Other(token.lost()));
            }
            tx.execute(
                concat!(
                    "UPDATE leases SET owner = $2, host = $3, pid = $4, heartbeat_us = ",
                    now_us!(),
                    " WHERE cache_key = $1"
                ),
                &[&token.cache_key, &holder.owner, &holder.host, &i64::from(holder.pid)],
            )?;
            tx.execute(
                "UPDATE holds SET owner = $3 WHERE cache_key = $1 AND owner = $2",
                &[&token.cache_key, &token.holder.owner, &holder.owner],
            )?;
            Ok(())
        })?;
        Ok(self.guard(Lease {
            cache_key: token.cache_key,
            holder,
            execution: token.execution,
            claimed_at_us: token.claimed_at_us,
        }))
    }

    /// Leases first (locked in key order, as every transaction on a key locks its lease
    /// first), then runs and their `running` rows, then holds of handles that died without
    /// their lease rows.
    fn recover(&self) -> Result<()> {
        self.transact(|tx| {
            let dead = tx.query(
                concat!(
                    "SELECT cache_key, owner, execution_id FROM leases WHERE NOT ",
                    owner_alive!("owner"),
                    " ORDER BY cache_key FOR UPDATE"
                ),
                &[],
            )?;
            let runs: Vec<String> = tx
                .query(
                    concat!(
                        "UPDATE runs SET status = 'failed' WHERE status = 'running' \
                         AND (owner IS NULL OR NOT ",
                        owner_alive!("owner"),
                        ") RETURNING id"
                    ),
                    &[],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            if !runs.is_empty() {
                tx.execute(
                    "UPDATE executions SET status = 'failed', error = $2 \
                     WHERE run_id = ANY($1) AND status = 'running'",
                    &[&runs, &PROCESS_ENDED],
                )?;
            }
            for row in &dead {
                let (key, owner): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                abandon(tx, &key, &owner, row.try_get(2)?)?;
            }
            tx.execute(
                concat!("DELETE FROM holds WHERE NOT ", owner_alive!("owner")),
                &[],
            )?;
            Ok(())
        })
    }

    fn runs(&self, pipeline: Option<&str>) -> Result<Vec<RunRecord>> {
        self.read(|c| {
            c.query(&numbered(&rows::runs_sql("r.seq")), &[&pipeline])?
                .iter()
                .map(|r| rows::run_record(r).map_err(Fail::from))
                .collect()
        })
    }

    fn run(&self, run: &str) -> Result<RunRecord> {
        rows::pick_run(self.runs(None)?, run)
    }

    fn run_steps(&self, run: &str) -> Result<Vec<StepRecord>> {
        let run = self.run(run)?;
        self.steps("e.run_id = $1", &run.id)
    }

    fn execution(&self, id: i64) -> Result<StepRecord> {
        self.steps("e.id = $1", &id)?
            .pop()
            .ok_or_else(|| Error::UnknownRun(format!("execution {id}")))
    }

    fn lineage(&self, content_hash: Hash128) -> Result<Lineage> {
        let hex = content_hash.to_hex();
        let found = self.read(|c| {
            let mut found: [Vec<ExecutionRef>; 3] = Default::default();
            for (sql, refs) in rows::lineage_sql().iter().zip(&mut found) {
                for row in c.query(&numbered(sql), &[&hex])? {
                    refs.push(rows::execution_ref(&row)?);
                }
            }
            Ok(found)
        })?;
        rows::lineage(content_hash, found)
    }

    fn pipelines(&self) -> Result<Vec<String>> {
        self.read(|c| {
            c.query("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline", &[])?
                .iter()
                .map(|r| r.try_get(0).map_err(Fail::Db))
                .collect()
        })
    }

    fn execution_run(&self, id: i64) -> Result<RunRecord> {
        let run_id: Option<String> = self.read(|c| {
            Ok(
                c.query_opt("SELECT run_id FROM executions WHERE id = $1", &[&id])?
                    .map(|r| r.try_get(0))
                    .transpose()?,
            )
        })?;
        let run_id = run_id.ok_or_else(|| Error::UnknownRun(format!("execution {id}")))?;
        self.run(&run_id)
    }

    fn previous_execution(&self, step: &str, before: i64) -> Result<Option<StepRecord>> {
        // No run id is empty, so `''` excludes none.
        let id: Option<i64> = self.read(|c| {
            Ok(
                c.query_one(&numbered(&newest_call_sql(false)), &[&step, &"", &before])?
                    .try_get(0)?,
            )
        })?;
        id.map(|id| self.execution(id)).transpose()
    }

    fn compared_execution(&self, execution: i64) -> Result<Option<EarlierCall>> {
        type Found = (String, String, Option<String>, String, String, i64, String);
        let row: Option<Found> = self.read(|c| {
            let row = c.query_opt(
                concat!(
                    "SELECT e.run_id, e.step, e.compared, ",
                    crate::store::components_of_e!(),
                    ", r.pipeline, (SELECT count(*) FROM executions o WHERE o.run_id = e.run_id \
                     AND o.step = e.step AND o.position < e.position), e.name \
                     FROM executions e JOIN runs r ON r.id = e.run_id WHERE e.id = $1"
                ),
                &[&execution],
            )?;
            Ok(match row {
                Some(r) => Some((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                )),
                None => None,
            })
        })?;
        let Some((run_id, step, compared, components, pipeline, ordinal, name)) = row else {
            return Err(Error::UnknownRun(format!("execution {execution}")));
        };
        if let Some(recorded) = compared.and_then(|c| serde_json::from_str(&c).ok()) {
            return Ok(Some(recorded));
        }
        let Ok(components) = serde_json::from_str::<KeyComponents>(&components) else {
            return Ok(None);
        };
        let earlier =
            self.read(|c| earlier_calls(c, &step, &pipeline, &run_id, Some(execution)))?;
        Ok(earlier.and_then(|calls| {
            calls.earlier_call(&Call {
                label: crate::store::label_of(&step, &name),
                ordinal: usize::try_from(ordinal).unwrap_or(0),
                components: &components,
            })
        }))
    }

    fn set_pinned(&self, run: &str, pinned: bool) -> Result<()> {
        let id = self.run(run)?.id;
        self.read(|c| {
            c.execute("UPDATE runs SET pinned = $2 WHERE id = $1", &[&id, &pinned])?;
            Ok(())
        })
    }

    fn gc(&self, policy: &GcPolicy, blobs: &dyn ArtifactStore) -> Result<GcReport> {
        // This store's claim on the location, then nobody else's (`store/claim.rs`):
        // checked before anything changes, and again after the listing.
        let own = self.store_id(!policy.dry_run)?;
        let describe = self.url().to_string();
        let location = artifacts::backend_location(blobs, std::path::Path::new(""));
        if let (Some(id), false) = (&own, policy.dry_run) {
            claim::write_claim(blobs, id, &describe).map_err(|e| Error::io(&location, e))?;
        }
        let sole = || claim::check_sole_user(blobs, own.as_deref(), &describe, location.clone());
        sole()?;
        let mut conn = self.inner.db.conn()?;
        gc(&mut conn, policy, blobs, &|| sole().map_err(Fail::Other)).map_err(|f| self.error(f))
    }

    fn schema_version(&self) -> Result<i64> {
        let mut conn = self.inner.db.conn()?;
        super::schema::version(&mut *conn)
            .map_err(|e| self.inner.db.schema_error(e))
            .map(|v| v.unwrap_or(0))
    }

    fn blob_damaged(&self, hash: Hash128, corrupt: bool) -> Result<()> {
        PostgresMetadata::blob_damaged(self, hash, corrupt)
    }

    fn undecodable(
        &self,
        execution: i64,
        output: &str,
        type_name: &str,
        message: &str,
    ) -> Result<()> {
        PostgresMetadata::undecodable(self, execution, output, type_name, message)
    }
}

/// The rows `sql` selects with `param`, grouped by their first column (an execution id),
/// each shaped by `shape` from its second column on, in the order selected.
fn by_execution<T>(
    c: &mut Client,
    sql: &str,
    param: &(dyn ToSql + Sync),
    shape: fn(&Row, usize) -> Result<T, RowError>,
) -> Result<HashMap<i64, Vec<T>>, Fail> {
    let mut grouped: HashMap<i64, Vec<T>> = HashMap::new();
    for row in c.query(sql, &[param])? {
        grouped
            .entry(row.try_get(0)?)
            .or_default()
            .push(shape(&row, 1)?);
    }
    Ok(grouped)
}

/// Takes `owner`'s advisory lock on `client`'s session; `false` when another session
/// holds it.
fn take_owner_lock(client: &mut Client, owner: &str) -> Result<bool, postgres::Error> {
    client
        .query_one(
            "SELECT pg_try_advisory_lock(pipeline_owner_key($1))",
            &[&owner],
        )?
        .try_get(0)
}

fn lock_taken(db: &Postgres) -> Error {
    Error::Remote {
        location: db.url().to_string(),
        problem: "another session holds the liveness lock of this handle's new owner token; connect again".into(),
        source: None,
    }
}

/// Whether the server aborted a transaction that may succeed when run again.
fn retryable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The newest completed execution with `key` that holds its outputs' rows, on the
/// transaction deciding the key. The execution holding the rows is locked against deletion
/// (`FOR KEY SHARE`) until the transaction ends, so the cached row about to point at it
/// never points at nothing. A hit trusts the rows: it asks the artifact store nothing, and
/// is damaged only by what loads reported (`damaged_blobs`, `undecodable`).
///
/// Typed (`query_typed`): one round trip, where a plain query prepares first, on the path of
/// every cache hit.
fn lookup(tx: &mut impl GenericClient, key: &str) -> Result<Lookup, Fail> {
    let rows = tx.query_typed(LOOKUP_SQL, &[(&key, Type::TEXT)])?;
    found(&rows)
}

/// The newest completed execution of cache key `$1` whose outputs a step can reuse, with
/// its outputs (one row each) and their damage marks; see [`lookup`].
const LOOKUP_SQL: &str = "WITH f AS (SELECT id, reused_execution, components, step, \
                           started_at_us + CAST(duration_s * 1000000 AS BIGINT) AS produced \
                    FROM executions \
                    WHERE cache_key = $1 AND outputs_of IS NULL \
                      AND status IN ('executed', 'cached') \
                    ORDER BY id DESC LIMIT 1 FOR KEY SHARE), \
              g AS (SELECT f.id AS holder, f.components, f.produced, f.step, \
                           COALESCE(f.reused_execution, f.id) AS pointed, \
                           CASE WHEN f.reused_execution IS NULL THEN f.id \
                                WHEN EXISTS (SELECT 1 FROM executions t \
                                             WHERE t.id = f.reused_execution) \
                                THEN f.reused_execution \
                                ELSE f.id END AS reused \
                    FROM f) \
         SELECT g.reused, g.holder, g.components, a.name, a.content_hash, a.size, \
                (SELECT u.type_name FROM undecodable u \
                 WHERE u.execution_id IN (g.reused, g.pointed) AND u.output = a.name LIMIT 1), \
                (SELECT d.damage FROM damaged_blobs d WHERE d.hash = a.content_hash), \
                g.produced, g.step \
         FROM g LEFT JOIN artifacts a ON a.execution_id = g.holder ORDER BY a.position";

/// What the rows of [`LOOKUP_SQL`] say.
fn found(rows: &[Row]) -> Result<Lookup, Fail> {
    let Some(first) = rows.first() else {
        return Ok(Lookup::Miss);
    };
    let mut hit = Hit {
        reused: first.try_get(0)?,
        holder: first.try_get(1)?,
        components: first.try_get(2)?,
        outputs: Vec::with_capacity(rows.len()),
        produced_at_us: first.try_get(8)?,
    };
    // No output row (the LEFT JOIN's NULLs): the split of an empty list, which records
    // none, is a hit with no outputs; any other step's is an incomplete row, a miss.
    if first.try_get::<_, Option<String>>(3)?.is_none() {
        let step: String = first.try_get(9)?;
        return Ok(if step == crate::map::SPLIT_STEP {
            Lookup::Hit(hit)
        } else {
            Lookup::Miss
        });
    }
    for row in rows {
        let output: String = row.try_get(3)?;
        let hash: String = row.try_get(4)?;
        let size: i64 = row.try_get(5)?;
        if let Some(type_name) = row.try_get::<_, Option<String>>(6)? {
            return Ok(Lookup::Damaged(Damage::Undecodable { output, type_name }));
        }
        let damage: Option<String> = row.try_get(7)?;
        match (Hash128::from_hex(&hash), damage.as_deref()) {
            (Some(hash), None) => hit.outputs.push((hash, size as u64)),
            (_, Some("missing")) => return Ok(Lookup::Damaged(Damage::Missing { output })),
            _ => return Ok(Lookup::Damaged(Damage::Corrupt { output })),
        }
    }
    Ok(Lookup::Hit(hit))
}

/// Inserts cached rows that point at the execution holding their outputs (no artifact,
/// input or lease rows of their own) in one statement; returns their ids in the order of
/// `rows`. A row's key components are stored as `''` when they are its holder's, as
/// [`record`] does row by row.
fn insert_pointing_rows(
    c: &mut impl GenericClient,
    rows: &[&ExecutionRow<'_>],
) -> Result<Vec<i64>, Fail> {
    let mut run_ids = Vec::with_capacity(rows.len());
    let mut names = Vec::with_capacity(rows.len());
    let mut steps = Vec::with_capacity(rows.len());
    let mut positions = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut signatures = Vec::with_capacity(rows.len());
    let mut components = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    let mut errors = Vec::with_capacity(rows.len());
    let mut reused = Vec::with_capacity(rows.len());
    let mut outputs_of = Vec::with_capacity(rows.len());
    let mut started = Vec::with_capacity(rows.len());
    let mut durations = Vec::with_capacity(rows.len());
    let mut compared = Vec::with_capacity(rows.len());
    for row in rows {
        run_ids.push(row.run_id);
        names.push(row.name);
        steps.push(row.step);
        positions.push(row.position as i64);
        statuses.push(row.status.as_str());
        keys.push(row.cache_key.map(Hash128::to_hex));
        signatures.push(row.components.code_signature.as_str());
        components.push(serde_json::to_string(row.components).unwrap_or_else(|_| "{}".into()));
        reasons.push(row.reason.as_deref());
        errors.push(row.error.as_deref());
        reused.push(row.reused);
        outputs_of.push(row.outputs_of.map(|h| h.id));
        started.push(row.started_at_us);
        durations.push(row.duration.as_secs_f64());
        compared.push(row.compared.as_deref());
    }
    // `r` is materialized (it calls `nextval`), so the ids inserted are the ids returned,
    // in the rows' order.
    let inserted = c.query_typed(
        "WITH r AS MATERIALIZED ( \
             SELECT nextval(pg_get_serial_sequence('executions', 'id')) AS id, u.* \
             FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
                                        $5::text[], $6::text[], $7::text[], $8::text[], \
                                        $9::text[], $10::text[], $11::bigint[], $12::bigint[], \
                                        $13::bigint[], $14::float8[], $15::text[]) \
                       WITH ORDINALITY AS u(run_id, name, step, position, status, cache_key, \
                                            code_signature, components, reason, error, \
                                            reused, outputs_of, started_at_us, duration_s, \
                                            compared, ord) \
                   ORDER BY ord) u), \
         ins AS ( \
             INSERT INTO executions(id, run_id, name, step, position, status, cache_key, \
                                    code_signature, components, reason, error, \
                                    reused_execution, outputs_of, started_at_us, duration_s, \
                                    compared) \
             SELECT r.id, r.run_id, r.name, r.step, r.position, r.status, r.cache_key, \
                    r.code_signature, \
                    CASE WHEN r.components = (SELECT h.components FROM executions h \
                                              WHERE h.id = r.outputs_of) \
                         THEN '' ELSE r.components END, \
                    r.reason, r.error, r.reused, r.outputs_of, r.started_at_us, \
                    r.duration_s, r.compared \
             FROM r) \
         SELECT id FROM r ORDER BY ord",
        &[
            (&run_ids, Type::TEXT_ARRAY),
            (&names, Type::TEXT_ARRAY),
            (&steps, Type::TEXT_ARRAY),
            (&positions, Type::INT8_ARRAY),
            (&statuses, Type::TEXT_ARRAY),
            (&keys, Type::TEXT_ARRAY),
            (&signatures, Type::TEXT_ARRAY),
            (&components, Type::TEXT_ARRAY),
            (&reasons, Type::TEXT_ARRAY),
            (&errors, Type::TEXT_ARRAY),
            (&reused, Type::INT8_ARRAY),
            (&outputs_of, Type::INT8_ARRAY),
            (&started, Type::INT8_ARRAY),
            (&durations, Type::FLOAT8_ARRAY),
            (&compared, Type::TEXT_ARRAY),
        ],
    )?;
    inserted.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Ends a lease on `key` held through handle `owner` that will never commit (its holder
/// died, stopped beating or dropped it): its `running` row `execution` becomes failed, and
/// its holds and the lease itself are deleted.
fn abandon(
    tx: &mut Transaction<'_>,
    key: &str,
    owner: &str,
    execution: Option<i64>,
) -> Result<(), Fail> {
    if let Some(id) = execution {
        tx.execute(
            "UPDATE executions SET status = 'failed', error = $2 WHERE id = $1 AND status = 'running'",
            &[&id, &CLAIM_ENDED],
        )?;
    }
    tx.execute(
        "DELETE FROM holds WHERE cache_key = $1 AND owner = $2",
        &[&key, &owner],
    )?;
    tx.execute(
        "DELETE FROM leases WHERE cache_key = $1 AND owner = $2",
        &[&key, &owner],
    )?;
    Ok(())
}

impl Backend for PostgresMetadata {
    fn pass(&self) -> Result<Box<dyn MetadataPass + '_>> {
        let mut conn = self.inner.db.conn()?;
        conn.batch_execute("BEGIN")
            .map_err(|e| self.error(Fail::Db(e)))?;
        Ok(Box::new(Pass {
            meta: self,
            conn: RefCell::new(conn),
            open: true,
            lookups: std::cell::Cell::new(0),
            prepared: RefCell::new(None),
        }))
    }

    fn lookup(&self, key: Hash128) -> Result<Lookup_> {
        self.read(|c| Ok(lookup(c, &key.to_hex())?.into()))
    }

    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        self.transact(|tx| record(tx, rows))
    }

    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>> {
        self.read(|c| earlier_calls(c, step, pipeline, exclude_run, before))
    }

    fn store_id(&self, create: bool) -> Result<Option<String>> {
        self.read(|c| {
            if create {
                c.execute(
                    "INSERT INTO settings(key, value) VALUES ('store_id', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&claim::new_store_id()],
                )?;
            }
            Ok(
                c.query_opt("SELECT value FROM settings WHERE key = 'store_id'", &[])?
                    .map(|r| r.try_get(0))
                    .transpose()?,
            )
        })
    }

    fn verify_rows(&self) -> Result<VerifyRows> {
        PostgresMetadata::verify_rows(self)
    }

    fn sidecar_row(&self, hex: &str) -> Result<Option<SidecarRow>> {
        PostgresMetadata::sidecar_row(self, hex)
    }

    fn export_run(&self, run_id: &str) -> Result<Option<ExportedRun>> {
        self.transact(|tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            export_run(tx, run_id)
        })
    }

    fn import_run(
        &self,
        run: &ExportedRun,
        mapped: &HashMap<i64, i64>,
    ) -> Result<HashMap<i64, i64>> {
        self.transact(|tx| {
            // One copy at a time: ids inserted as they were must not race another copy.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COPY_LOCK])?;
            let mut import = PostgresImport {
                meta: self,
                tx,
                run_id: &run.id,
            };
            copy::import_run(&mut import, run, mapped).map_err(Fail::Other)
        })
    }

    fn record_logs(&self, logs: &[ExecutionLog]) -> Result<()> {
        let sql = numbered(RECORD_LOG_SQL);
        self.transact(|tx| {
            for log in logs {
                tx.execute(
                    &sql,
                    &[
                        &log.execution_id,
                        &log.stream.as_str(),
                        &log.content_hash.to_hex(),
                        &(log.size as i64),
                        &(log.total_size as i64),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn end_unrecorded(
        &self,
        execution: i64,
        status: StepStatus,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        let sql = numbered(END_UNRECORDED_SQL);
        self.read(|c| {
            Ok(c.execute(
                &sql,
                &[&execution, &status.as_str(), &reason, &error, &CLAIM_ENDED],
            )? > 0)
        })
    }

    fn execution_logs(&self, execution: i64) -> Result<Vec<ExecutionLog>> {
        let sql = numbered(EXECUTION_LOGS_SQL);
        self.read(|c| {
            let mut found = Vec::new();
            for r in c.query(&sql, &[&execution])? {
                found.push(logs::log_record(&r)?);
            }
            Ok(found)
        })
    }

    fn artifact_found(&self, hash: Hash128) -> Result<Option<FoundArtifact>> {
        self.read(|c| {
            let Some(r) = c.query_opt(
                "SELECT a.name, a.content_hash, a.size, a.type_name, a.cacher, a.cacher_version, \
                 a.metadata, a.execution_id, e.name, e.components \
                 FROM artifacts a JOIN executions e ON e.id = a.execution_id \
                 WHERE a.content_hash = $1 ORDER BY a.id DESC LIMIT 1",
                &[&hash.to_hex()],
            )?
            else {
                return Ok(None);
            };
            let components: String = r.try_get(9)?;
            let components: KeyComponents = serde_json::from_str(&components)
                .map_err(|_| Fail::Unknown(UnknownValue::new("key components", &components)))?;
            Ok(Some((
                rows::artifact_record(&r, 0)?,
                r.try_get(7)?,
                r.try_get(8)?,
                components,
            )))
        })
    }
}

impl PostgresMetadata {
    /// What `Store::verify` checks, in one snapshot (`REPEATABLE READ`): runs marked
    /// running whose handle is gone are interrupted (temporary objects are the artifact
    /// backend's own).
    fn verify_rows(&self) -> Result<VerifyRows> {
        let mut conn = self.inner.db.conn()?;
        let run = |c: &mut Client| -> Result<VerifyRows, Fail> {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let mut executions = Vec::new();
            for r in tx.query(&numbered(VERIFY_EXECUTIONS_SQL), &[])? {
                executions.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
            let mut artifacts = Vec::new();
            for r in tx.query(VERIFY_ARTIFACTS_SQL, &[])? {
                artifacts.push((r.try_get(0)?, r.try_get(1)?));
            }
            let mut logs = Vec::new();
            for r in tx.query(VERIFY_LOGS_SQL, &[])? {
                logs.push((r.try_get(0)?, r.try_get(1)?));
            }
            let mut interrupted = Vec::new();
            for r in tx.query(
                concat!(
                    "SELECT id FROM runs WHERE status = 'running' AND (owner IS NULL OR NOT ",
                    owner_alive!("owner"),
                    ") ORDER BY seq"
                ),
                &[],
            )? {
                interrupted.push(r.try_get(0)?);
            }
            tx.commit()?;
            Ok(VerifyRows {
                executions,
                artifacts,
                logs,
                interrupted,
                temp_files: Vec::new(),
            })
        };
        run(&mut conn).map_err(|f| self.error(f))
    }

    fn sidecar_row(&self, hex: &str) -> Result<Option<SidecarRow>> {
        self.read(|c| {
            let Some(r) = c.query_opt(&numbered(SIDECAR_ROW_SQL), &[&hex])? else {
                return Ok(None);
            };
            Ok(Some(SidecarRow {
                output: r.try_get(0)?,
                size: r.try_get(1)?,
                type_name: r.try_get(2)?,
                cacher: r.try_get(3)?,
                cacher_version: u32::try_from(r.try_get::<_, i64>(4)?).unwrap_or(0),
                metadata: r.try_get(5)?,
                run_id: r.try_get(6)?,
                step: r.try_get(7)?,
                cache_key: r.try_get(8)?,
            }))
        })
    }

    /// The algorithm naming this store's blobs: the one recorded in the database, or
    /// `new`, recorded now, for a store without one.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the setting cannot be read or written;
    /// [`Error::NotAStore`] when it names an algorithm this version does not know.
    pub fn content_hash(&self, new: ContentHash) -> Result<ContentHash> {
        self.content_hash_of(Some(new))
    }

    /// The algorithm recorded for the store's blobs, [`ContentHash::Xxh3`] when none is
    /// recorded yet; reads only (for read-only handles).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the setting cannot be read; [`Error::NotAStore`] for an
    /// algorithm this version does not know.
    pub fn recorded_content_hash(&self) -> Result<ContentHash> {
        self.content_hash_of(None)
    }

    fn content_hash_of(&self, new: Option<ContentHash>) -> Result<ContentHash> {
        let recorded: Option<String> = self.read(|c| {
            if let Some(new) = new {
                c.execute(
                    "INSERT INTO settings(key, value) VALUES ('content_hash', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&new.as_str()],
                )?;
            }
            Ok(
                c.query_opt("SELECT value FROM settings WHERE key = 'content_hash'", &[])?
                    .map(|r| r.try_get(0))
                    .transpose()?,
            )
        })?;
        let Some(recorded) = recorded else {
            return Ok(ContentHash::Xxh3);
        };
        recorded.parse().map_err(|_| Error::NotAStore {
            path: self.url().to_string().into(),
            reason: format!("it names blobs with `{recorded}`, which this version does not know"),
        })
    }
}

/// A pass on PostgreSQL: one transaction (`BEGIN` .. `COMMIT`) on a pooled connection.
/// The executions its lookups found are locked `FOR KEY SHARE` until it ends, so the cached
/// rows it records point at rows that still exist.
struct Pass<'a> {
    meta: &'a PostgresMetadata,
    conn: RefCell<super::Connection>,
    open: bool,
    /// Lookups made so far, and [`LOOKUP_SQL`] prepared on this pass's connection from
    /// the second one on: a wave of many steps has the server plan it once, a wave of one
    /// step pays no extra round trip to prepare it.
    lookups: std::cell::Cell<usize>,
    prepared: RefCell<Option<postgres::Statement>>,
}

impl MetadataPass for Pass<'_> {
    fn lookup(&self, key: Hash128) -> Result<Lookup_> {
        let mut conn = self.conn.borrow_mut();
        let n = self.lookups.get() + 1;
        self.lookups.set(n);
        let key = key.to_hex();
        let found_ = if n == 1 {
            lookup(&mut **conn, &key)
        } else {
            (|| {
                let mut prepared = self.prepared.borrow_mut();
                let statement = match &*prepared {
                    Some(s) => s.clone(),
                    None => {
                        let s = conn.prepare_typed(LOOKUP_SQL, &[Type::TEXT])?;
                        *prepared = Some(s.clone());
                        s
                    }
                };
                found(&conn.query(&statement, &[&key])?)
            })()
        };
        found_.map(Lookup_::from).map_err(|f| self.meta.error(f))
    }

    fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
    ) -> Result<Option<Candidates>> {
        let mut conn = self.conn.borrow_mut();
        earlier_calls(&mut **conn, step, pipeline, exclude_run, None)
            .map_err(|f| self.meta.error(f))
    }

    fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        let mut conn = self.conn.borrow_mut();
        record(&mut **conn, rows).map_err(|f| self.meta.error(f))
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.open = false;
        let mut conn = self.conn.borrow_mut();
        if let Err(e) = conn.batch_execute("COMMIT") {
            let _ = conn.batch_execute("ROLLBACK");
            return Err(self.meta.error(Fail::Db(e)));
        }
        Ok(())
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.open {
            // A connection whose rollback failed is broken; the pool drops it.
            let _ = self.conn.get_mut().batch_execute("ROLLBACK");
        }
    }
}

impl From<Lookup> for Lookup_ {
    fn from(found: Lookup) -> Lookup_ {
        match found {
            Lookup::Hit(hit) => Lookup_::Hit {
                execution: hit.reused,
                outputs: hit.outputs,
                holder: OutputsHolder {
                    id: hit.holder,
                    fingerprint: None,
                },
                produced_at_us: hit.produced_at_us,
            },
            Lookup::Miss => Lookup_::Miss,
            Lookup::Damaged(d) => Lookup_::Damaged(d),
        }
    }
}

/// Inserts execution rows with their artifacts and inputs on `c` (inside the caller's
/// transaction), and ends the leases they held; returns their ids. A cached row that points
/// at the execution holding its outputs (`outputs_of`) gets no artifact and input rows of
/// its own, and stores its key components as `''` when they are that execution's.
fn record(c: &mut impl GenericClient, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>, Fail> {
    // Cached rows that point at their outputs' execution and end no lease are only an
    // `executions` row each: those of a wave go in one statement (one round trip).
    let pointing = |row: &ExecutionRow<'_>| {
        row.status == StepStatus::Cached && row.outputs_of.is_some() && row.lease_holder.is_none()
    };
    let batched: Vec<&ExecutionRow<'_>> = rows.iter().filter(|r| pointing(r)).collect();
    let mut batch_ids = if batched.len() > 1 {
        insert_pointing_rows(c, &batched)?.into_iter()
    } else {
        Vec::new().into_iter()
    };
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        if batched.len() > 1 && pointing(row) {
            let id = batch_ids.next().ok_or_else(|| {
                Fail::Other(Error::Remote {
                    location: "the metadata database".into(),
                    problem: "the server returned fewer ids than cached rows inserted".into(),
                    source: None,
                })
            })?;
            ids.push(id);
            continue;
        }
        let components = serde_json::to_string(row.components).unwrap_or_else(|_| "{}".into());
        let (attempts, metadata, metrics) = row.details.columns();
        let outputs_of = match row.status {
            StepStatus::Cached => row.outputs_of.map(|h| h.id),
            _ => None,
        };
        let inserted = c.query_typed_one(
            "INSERT INTO executions(run_id, name, step, position, status, cache_key, \
             code_signature, components, reason, error, reused_execution, outputs_of, \
             started_at_us, duration_s, compared, attempts, metadata, metrics) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     CASE WHEN $12::bigint IS NOT NULL AND $8 = \
                          (SELECT h.components FROM executions h WHERE h.id = $12::bigint) \
                          THEN '' ELSE $8 END, \
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
            &[
                (&row.run_id, Type::TEXT),
                (&row.name, Type::TEXT),
                (&row.step, Type::TEXT),
                (&(row.position as i64), Type::INT8),
                (&row.status.as_str(), Type::TEXT),
                (&row.cache_key.map(Hash128::to_hex), Type::TEXT),
                (&row.components.code_signature, Type::TEXT),
                (&components, Type::TEXT),
                (&row.reason, Type::TEXT),
                (&row.error, Type::TEXT),
                (&row.reused, Type::INT8),
                (&outputs_of, Type::INT8),
                (&row.started_at_us, Type::INT8),
                (&row.duration.as_secs_f64(), Type::FLOAT8),
                (&row.compared, Type::TEXT),
                (&attempts, Type::TEXT),
                (&metadata, Type::TEXT),
                (&metrics, Type::TEXT),
            ],
        )?;
        let id: i64 = inserted.try_get(0)?;
        ids.push(id);
        if let (Some(holder), Some(key)) = (row.lease_holder, row.cache_key) {
            let key = key.to_hex();
            c.execute(
                "DELETE FROM holds WHERE cache_key = $1 AND owner = $2",
                &[&key, &holder.owner],
            )?;
            c.execute(
                "DELETE FROM leases WHERE cache_key = $1 AND owner = $2",
                &[&key, &holder.owner],
            )?;
        }
        if outputs_of.is_some() {
            continue;
        }
        if !row.outputs.is_empty() {
            let names: Vec<&str> = row.outputs.iter().map(|o| o.name.as_str()).collect();
            let positions: Vec<i64> = (0..row.outputs.len() as i64).collect();
            let hashes: Vec<String> = row.outputs.iter().map(|o| o.hash.to_hex()).collect();
            let sizes: Vec<i64> = row.outputs.iter().map(|o| o.size as i64).collect();
            let types: Vec<&str> = row.outputs.iter().map(|o| o.type_name.as_str()).collect();
            let cachers: Vec<&str> = row.outputs.iter().map(|o| o.cacher.as_str()).collect();
            let versions: Vec<i64> = row
                .outputs
                .iter()
                .map(|o| i64::from(o.cacher_version))
                .collect();
            let metadata: Vec<Option<String>> = row
                .outputs
                .iter()
                .map(|o| o.metadata.as_ref().map(|m| m.to_string()))
                .collect();
            c.execute(
                "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                 type_name, cacher, cacher_version, metadata) \
                 SELECT $1, o.name, o.position, o.hash, o.size, o.type_name, o.cacher, \
                        o.version, o.metadata \
                 FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], \
                             $7::text[], $8::bigint[], $9::text[]) \
                      AS o(name, position, hash, size, type_name, cacher, version, metadata)",
                &[
                    &id, &names, &positions, &hashes, &sizes, &types, &cachers, &versions,
                    &metadata,
                ],
            )?;
            if row.status == StepStatus::Executed {
                c.execute("DELETE FROM damaged_blobs WHERE hash = ANY($1)", &[&hashes])?;
            }
        }
        insert_inputs(
            c,
            id,
            row.inputs
                .iter()
                .map(|i| (i.name.as_str(), i.hash, i.producer, i.value)),
        )?;
    }
    Ok(ids)
}

/// Inserts the input rows (name, content hash, producer, parameter blob) of execution `id`,
/// in declaration order, with one statement; nothing for none.
fn insert_inputs<'i>(
    c: &mut impl GenericClient,
    id: i64,
    inputs: impl Iterator<Item = (&'i str, Option<Hash128>, Option<i64>, Option<Hash128>)>,
) -> Result<(), postgres::Error> {
    let (mut names, mut hashes, mut producers, mut values) = (vec![], vec![], vec![], vec![]);
    for (name, hash, producer, value) in inputs {
        names.push(name);
        hashes.push(hash.map(Hash128::to_hex));
        producers.push(producer);
        values.push(value.map(Hash128::to_hex));
    }
    if names.is_empty() {
        return Ok(());
    }
    let positions: Vec<i64> = (0..names.len() as i64).collect();
    c.execute(
        "INSERT INTO inputs(execution_id, name, position, content_hash, producer_execution, \
         value_blob) \
         SELECT $1, i.name, i.position, i.hash, i.producer, i.value \
         FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[]) \
              AS i(name, position, hash, producer, value)",
        &[&id, &names, &positions, &hashes, &producers, &values],
    )?;
    Ok(())
}

/// The completed calls of `step` in the run a miss is compared with: the newest run other
/// than `exclude_run` with a completed call of the step before execution `before`,
/// preferring runs of `pipeline` (the rule of `store/earlier.rs`, in the same SQL).
fn earlier_calls(
    c: &mut impl GenericClient,
    step: &str,
    pipeline: &str,
    exclude_run: &str,
    before: Option<i64>,
) -> Result<Option<Candidates>, Fail> {
    let before = before.unwrap_or(i64::MAX);
    let mut run: Option<(String, String)> = None;
    for in_pipeline in [true, false] {
        let sql = numbered(&format!(
            "SELECT e.run_id, r.name FROM executions e JOIN runs r ON r.id = e.run_id \
             WHERE e.id = ({})",
            newest_call_sql(in_pipeline)
        ));
        let found = if in_pipeline {
            c.query_opt(&sql, &[&step, &exclude_run, &before, &pipeline])?
        } else {
            c.query_opt(&sql, &[&step, &exclude_run, &before])?
        };
        if let Some(r) = found {
            run = Some((r.try_get(0)?, r.try_get(1)?));
            break;
        }
    }
    let Some((run_id, run_name)) = run else {
        return Ok(None);
    };
    let rows = c.query(
        concat!(
            "SELECT e.id, e.name, e.status, ",
            crate::store::components_of_e!(),
            " FROM executions e WHERE e.run_id = $1 AND e.step = $2 ORDER BY e.position"
        ),
        &[&run_id, &step],
    )?;
    let mut calls = Vec::with_capacity(rows.len());
    for r in &rows {
        let status: String = r.try_get(2)?;
        let status = status
            .parse::<StepStatus>()
            .map_err(|_| Fail::Unknown(UnknownValue::new("step status", &status)))?;
        calls.push((r.try_get(0)?, r.try_get(1)?, status, r.try_get(3)?));
    }
    Ok(Some(calls_of(&run_id, &run_name, step, calls, true)))
}

/// Garbage collection on PostgreSQL: the rules of `store/gc.rs` ([`gc::plan`]), in one
/// transaction that holds `pg_advisory_xact_lock` (one gc at a time) and, unless a dry run,
/// `holds` in `SHARE ROW EXCLUSIVE` mode, so a lease's hold either committed before gc
/// looked or waits until gc has committed (invariant 4). The executions of the runs it
/// removes are locked `FOR UPDATE` before their rows are handed over and deleted: a pass
/// whose hit reuses one of them (it holds it `FOR KEY SHARE`) commits its cached row first,
/// and gc plans again with that row as a kept one; a pass that comes later waits for gc and
/// finds the key's newest execution again.
///
/// `sole` fails when another store has claimed the artifact location: it is asked again
/// after the blobs are listed, before any is deleted.
fn gc(
    c: &mut Client,
    policy: &GcPolicy,
    blobs: &dyn ArtifactStore,
    sole: &dyn Fn() -> Result<(), Fail>,
) -> Result<GcReport, Fail> {
    let mut tx = c.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(pipeline_owner_key('gc'))",
        &[],
    )?;
    if !policy.dry_run {
        tx.batch_execute("LOCK TABLE holds IN SHARE ROW EXCLUSIVE MODE")?;
        // Runs of handles proven dead are not running: they block nothing.
        tx.execute(
            concat!(
                "UPDATE runs SET status = 'failed' WHERE status = 'running' \
                 AND (owner IS NULL OR NOT ",
                owner_alive!("owner"),
                ")"
            ),
            &[],
        )?;
    }
    let mut plan = gc_plan(&mut tx, policy)?;
    if !policy.dry_run && !plan.1.removed_ids.is_empty() {
        let removed: Vec<&str> = plan.1.removed_ids.iter().map(String::as_str).collect();
        tx.query(
            "SELECT id FROM executions WHERE run_id = ANY($1) ORDER BY id FOR UPDATE",
            &[&removed],
        )?;
        plan = gc_plan(&mut tx, policy)?;
    }
    let (runs, plan) = plan;
    let mut report = GcReport {
        dry_run: policy.dry_run,
        runs_removed: plan.removed.clone(),
        runs_kept: plan.runs_kept,
        bytes_kept: plan.bytes_kept,
        ..GcReport::default()
    };
    if !policy.dry_run {
        for (holder, heir) in &plan.heirs {
            for sql in [
                "UPDATE artifacts SET execution_id = $2 WHERE execution_id = $1",
                "UPDATE inputs SET execution_id = $2 WHERE execution_id = $1",
                "UPDATE executions SET outputs_of = NULL, components = \
                 CASE components WHEN '' THEN \
                 (SELECT h.components FROM executions h WHERE h.id = $1) \
                 ELSE components END WHERE id = $2",
                // The heir (a cached row) shows the metadata and metrics it reused.
                "UPDATE executions SET \
                 metadata = COALESCE(metadata, (SELECT h.metadata FROM executions h WHERE h.id = $1)), \
                 metrics = COALESCE(metrics, (SELECT h.metrics FROM executions h WHERE h.id = $1)) \
                 WHERE id = $2",
                "UPDATE executions SET outputs_of = $2 WHERE outputs_of = $1",
            ] {
                tx.execute(sql, &[holder, heir])?;
            }
        }
        for r in runs.iter().filter(|r| plan.removed_ids.contains(&r.id)) {
            for sql in [
                "DELETE FROM execution_logs WHERE execution_id IN \
                 (SELECT id FROM executions WHERE run_id = $1)",
                "DELETE FROM artifacts WHERE execution_id IN \
                 (SELECT id FROM executions WHERE run_id = $1)",
                "DELETE FROM inputs WHERE execution_id IN \
                 (SELECT id FROM executions WHERE run_id = $1)",
                "DELETE FROM executions WHERE run_id = $1",
                "DELETE FROM runs WHERE id = $1",
            ] {
                tx.execute(sql, &[&r.id])?;
            }
        }
        // Undecodable marks of executions no row refers to any more.
        tx.execute(
            "DELETE FROM undecodable WHERE execution_id NOT IN (SELECT id FROM executions) \
             AND execution_id NOT IN \
             (SELECT reused_execution FROM executions WHERE reused_execution IS NOT NULL)",
            &[],
        )?;
    }
    // Blobs held by live leases (holds of dead handles count for nothing).
    let held: HashSet<String> = tx
        .query(
            concat!("SELECT hash FROM holds WHERE ", owner_alive!("owner")),
            &[],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let condemned: HashMap<String, i64> = tx
        .query("SELECT hash, since_us FROM condemned", &[])?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let now: i64 = tx
        .query_one(concat!("SELECT ", now_us!()), &[])?
        .try_get(0)?;
    let clock = std::time::SystemTime::now();
    let old_enough = |stat: &BlobStat| {
        policy.min_blob_age.is_zero()
            || stat.last_used.is_some_and(|last| {
                clock
                    .duration_since(last)
                    .is_ok_and(|age| age >= policy.min_blob_age)
            })
    };
    let location = |e: std::io::Error| {
        Fail::Other(Error::io(
            blobs
                .location(Hash128(0))
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
            e,
        ))
    };
    report.temp_files_removed += blobs
        .remove_stale_temporaries(policy.min_blob_age.max(STALE_TEMPORARY), policy.dry_run)
        .map_err(location)?;
    let listed = blobs.list().map_err(location)?;
    // A store that claimed the location since the first check writes its blobs after its
    // claim, so after this listing: none of them is in it.
    sole()?;
    if !policy.dry_run {
        let back: Vec<&str> = condemned
            .keys()
            .filter(|h| plan.referenced.contains(*h))
            .map(String::as_str)
            .collect();
        tx.execute("DELETE FROM condemned WHERE hash = ANY($1)", &[&back])?;
    }
    // Condemned hashes whose blob is gone (removed by hand) are forgotten below.
    let mut gone: HashSet<&str> = condemned.keys().map(String::as_str).collect();
    for ListedBlob { hash, stat } in listed {
        let name = hash.to_hex();
        gone.remove(name.as_str());
        if plan.referenced.contains(&name) || held.contains(&name) {
            continue;
        }
        let since = match condemned.get(&name) {
            Some(&since) if !plan.referenced_before.contains(&name) => since,
            _ => {
                if !policy.dry_run {
                    tx.execute(
                        "INSERT INTO condemned(hash, since_us) VALUES ($1, $2) \
                         ON CONFLICT (hash) DO UPDATE SET since_us = EXCLUDED.since_us",
                        &[&name, &now],
                    )?;
                }
                now
            }
        };
        if plan.oldest_running.is_some_and(|started| started <= since) {
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
                .map_err(|e| Fail::Other(Error::io(blobs.location(hash), e)))?;
            tx.execute("DELETE FROM condemned WHERE hash = $1", &[&name])?;
            tx.execute("DELETE FROM damaged_blobs WHERE hash = $1", &[&name])?;
        }
    }
    if !policy.dry_run {
        let gone: Vec<&str> = gone.into_iter().collect();
        tx.execute("DELETE FROM condemned WHERE hash = ANY($1)", &[&gone])?;
        tx.commit()?;
    } else {
        tx.rollback()?;
    }
    Ok(report)
}

/// Reads what gc decides from and plans it ([`gc::plan`]).
fn gc_plan(tx: &mut Transaction<'_>, policy: &GcPolicy) -> Result<(Vec<RunRow>, gc::Plan), Fail> {
    let runs: Vec<RunRow> = tx
        .query(
            concat!(
                "SELECT id, name, pipeline, started_at_us, pinned, status = 'running' \
                 AND owner IS NOT NULL AND ",
                owner_alive!("owner"),
                " FROM runs ORDER BY started_at_us DESC, seq DESC"
            ),
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(RunRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                pipeline: r.try_get(2)?,
                started: r.try_get(3)?,
                pinned: r.try_get(4)?,
                running: r.try_get(5)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()?;
    // A cached row's blobs are those of the execution it points at (`outputs_of`).
    let run_blobs: Vec<(String, String, i64)> = tx
        .query(
            "SELECT DISTINCT e.run_id, a.content_hash, a.size FROM executions e \
             JOIN artifacts a ON a.execution_id = COALESCE(e.outputs_of, e.id)",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let executions: Vec<(i64, String, Option<i64>)> = tx
        .query(
            "SELECT id, run_id, outputs_of FROM executions ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let rows: Vec<(String, i64)> = tx
        .query(
            "SELECT DISTINCT content_hash, execution_id FROM artifacts \
             UNION SELECT DISTINCT value_blob, execution_id FROM inputs \
             WHERE value_blob IS NOT NULL",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let log_rows: Vec<(String, i64)> = tx
        .query(gc::LOG_ROWS_SQL, &[])?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let plan = gc::plan(policy, &runs, &run_blobs, &executions, &rows, &log_rows);
    Ok((runs, plan))
}

/// `pg_advisory_xact_lock` key of a run's import by a copy ("COPY").
const COPY_LOCK: i64 = 0x434f_5059;

/// A run's rows for a copy, on the caller's (snapshot) transaction.
fn export_run(tx: &mut Transaction<'_>, run_id: &str) -> Result<Option<ExportedRun>, Fail> {
    let Some(r) = tx.query_opt(
        "SELECT id, pipeline, name, status, started_at_us, duration_s, pinned, host \
         FROM runs WHERE id = $1",
        &[&run_id],
    )?
    else {
        return Ok(None);
    };
    let mut run = ExportedRun {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        name: r.try_get(2)?,
        status: r.try_get(3)?,
        started_at_us: r.try_get(4)?,
        duration_s: r.try_get(5)?,
        pinned: r.try_get(6)?,
        host: r.try_get(7)?,
        executions: Vec::new(),
        undecodable: Vec::new(),
    };
    for r in tx.query(
        "SELECT id, name, step, position, status, cache_key, code_signature, components, \
         reason, error, reused_execution, outputs_of, started_at_us, duration_s, compared, \
         attempts, metadata, metrics FROM executions WHERE run_id = $1 ORDER BY id",
        &[&run_id],
    )? {
        run.executions.push(ExportedExecution {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            step: r.try_get(2)?,
            position: r.try_get(3)?,
            status: r.try_get(4)?,
            cache_key: r.try_get(5)?,
            code_signature: r.try_get(6)?,
            components: r.try_get(7)?,
            reason: r.try_get(8)?,
            error: r.try_get(9)?,
            reused: r.try_get(10)?,
            outputs_of: r.try_get(11)?,
            fingerprint: None,
            started_at_us: r.try_get(12)?,
            duration_s: r.try_get(13)?,
            compared: r.try_get(14)?,
            details: [r.try_get(15)?, r.try_get(16)?, r.try_get(17)?],
            artifacts: Vec::new(),
            inputs: Vec::new(),
            logs: Vec::new(),
        });
    }
    let at: HashMap<i64, usize> = run
        .executions
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i))
        .collect();
    for r in tx.query(
        "SELECT a.execution_id, a.name, a.position, a.content_hash, a.size, a.type_name, \
         a.cacher, a.cacher_version, a.metadata \
         FROM artifacts a JOIN executions e ON e.id = a.execution_id \
         WHERE e.run_id = $1 ORDER BY a.execution_id, a.position",
        &[&run_id],
    )? {
        if let Some(&i) = at.get(&r.try_get::<_, i64>(0)?) {
            run.executions[i].artifacts.push(ExportedArtifact {
                name: r.try_get(1)?,
                position: r.try_get(2)?,
                content_hash: r.try_get(3)?,
                size: r.try_get(4)?,
                type_name: r.try_get(5)?,
                cacher: r.try_get(6)?,
                cacher_version: r.try_get(7)?,
                metadata: r.try_get(8)?,
            });
        }
    }
    for r in tx.query(
        "SELECT i.execution_id, i.name, i.position, i.content_hash, i.producer_execution, \
         i.value_blob FROM inputs i JOIN executions e ON e.id = i.execution_id \
         WHERE e.run_id = $1 ORDER BY i.execution_id, i.position",
        &[&run_id],
    )? {
        if let Some(&i) = at.get(&r.try_get::<_, i64>(0)?) {
            run.executions[i].inputs.push(ExportedInput {
                name: r.try_get(1)?,
                position: r.try_get(2)?,
                content_hash: r.try_get(3)?,
                producer: r.try_get(4)?,
                value_blob: r.try_get(5)?,
            });
        }
    }
    for r in tx.query(&numbered(copy::EXPORT_LOGS_SQL), &[&run_id])? {
        if let Some(&i) = at.get(&r.try_get::<_, i64>(0)?) {
            run.executions[i].logs.push(ExportedLog {
                stream: r.try_get(1)?,
                content_hash: r.try_get(2)?,
                size: r.try_get(3)?,
                total_size: r.try_get(4)?,
            });
        }
    }
    for r in tx.query(
        "SELECT u.execution_id, u.output, u.type_name, u.message, u.at_us \
         FROM undecodable u JOIN executions e ON e.id = u.execution_id \
         WHERE e.run_id = $1 ORDER BY u.execution_id, u.output",
        &[&run_id],
    )? {
        run.undecodable.push(ExportedUndecodable {
            execution_id: r.try_get(0)?,
            output: r.try_get(1)?,
            type_name: r.try_get(2)?,
            message: r.try_get(3)?,
            at_us: r.try_get(4)?,
        });
    }
    Ok(Some(run))
}

/// [`ImportTx`] on a PostgreSQL transaction.
struct PostgresImport<'t, 'c> {
    meta: &'t PostgresMetadata,
    tx: &'t mut Transaction<'c>,
    run_id: &'t str,
}

impl PostgresImport<'_, '_> {
    /// The store's error for a failed statement (it names the database without its
    /// password).
    fn err(&self, e: postgres::Error) -> Error {
        self.meta.error(Fail::Db(e))
    }
}

impl ImportTx for PostgresImport<'_, '_> {
    fn run_exists(&mut self, id: &str) -> Result<bool> {
        self.tx
            .query_one("SELECT EXISTS(SELECT 1 FROM runs WHERE id = $1)", &[&id])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.err(e))
    }

    fn execution_exists(&mut self, id: i64) -> Result<bool> {
        self.tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM executions WHERE id = $1)",
                &[&id],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.err(e))
    }

    fn insert_run(&mut self, run: &ExportedRun) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO runs(id, pipeline, name, status, started_at_us, duration_s, pinned, host) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &run.id,
                    &run.pipeline,
                    &run.name,
                    &run.status,
                    &run.started_at_us,
                    &run.duration_s,
                    &run.pinned,
                    &run.host,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn insert_execution(&mut self, row: &ExportedExecution, id: Option<i64>) -> Result<i64> {
        let inserted = self
            .tx
            .query_one(
                "INSERT INTO executions(id, run_id, name, step, position, status, cache_key, \
                 code_signature, components, reason, error, reused_execution, outputs_of, \
                 started_at_us, duration_s, compared, attempts, metadata, metrics) \
                 VALUES (COALESCE($1, nextval(pg_get_serial_sequence('executions', 'id'))), \
                         $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                         $17, $18, $19) \
                 RETURNING id",
                &[
                    &id,
                    &self.run_id,
                    &row.name,
                    &row.step,
                    &row.position,
                    &row.status,
                    &row.cache_key,
                    &row.code_signature,
                    &row.components,
                    &row.reason,
                    &row.error,
                    &row.reused,
                    &row.outputs_of,
                    &row.started_at_us,
                    &row.duration_s,
                    &row.compared,
                    &row.details[0],
                    &row.details[1],
                    &row.details[2],
                ],
            )
            .map_err(|e| self.err(e))?;
        let new: i64 = inserted.try_get(0).map_err(|e| self.err(e))?;
        for a in &row.artifacts {
            self.tx
                .execute(
                    "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                     type_name, cacher, cacher_version, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &new,
                        &a.name,
                        &a.position,
                        &a.content_hash,
                        &a.size,
                        &a.type_name,
                        &a.cacher,
                        &a.cacher_version,
                        &a.metadata,
                    ],
                )
                .map_err(|e| self.err(e))?;
        }
        if !row.artifacts.is_empty() {
            // The bytes were just verified: a damage mark from before is out of date.
            let hashes: Vec<&str> = row
                .artifacts
                .iter()
                .map(|a| a.content_hash.as_str())
                .collect();
            self.tx
                .execute("DELETE FROM damaged_blobs WHERE hash = ANY($1)", &[&hashes])
                .map_err(|e| self.err(e))?;
        }
        for i in &row.inputs {
            self.tx
                .execute(
                    "INSERT INTO inputs(execution_id, name, position, content_hash, producer_execution, \
                     value_blob) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &new,
                        &i.name,
                        &i.position,
                        &i.content_hash,
                        &i.producer,
                        &i.value_blob,
                    ],
                )
                .map_err(|e| self.err(e))?;
        }
        for l in &row.logs {
            self.tx
                .execute(
                    &numbered(copy::IMPORT_LOG_SQL),
                    &[&new, &l.stream, &l.content_hash, &l.size, &l.total_size],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(new)
    }

    fn insert_undecodable(&mut self, row: &ExportedUndecodable) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO undecodable(execution_id, output, type_name, message, at_us) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (execution_id, output) DO UPDATE SET type_name = EXCLUDED.type_name, \
                 message = EXCLUDED.message, at_us = EXCLUDED.at_us",
                &[
                    &row.execution_id,
                    &row.output,
                    &row.type_name,
                    &row.message,
                    &row.at_us,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn reserve_ids(&mut self, max_id: i64) -> Result<()> {
        // Sequences are not transactional: the move holds even if this run rolls back,
        // which only leaves a gap.
        self.tx
            .execute(
                "SELECT setval(pg_get_serial_sequence('executions', 'id'), \
                 GREATEST($1::bigint, (SELECT last_value FROM executions_id_seq)))",
                &[&max_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
