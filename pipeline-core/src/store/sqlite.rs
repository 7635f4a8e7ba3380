//! `SqliteMetadata`: the metadata of a local store in `<store>/metadata.sqlite`, the
//! [`MetadataStore`](super::MetadataStore) of stores opened by [`Store::open`]. Opening,
//! migrating, the cache lookup and recording rows are here; its leases, passes, queries,
//! explanations, gc and verify are in `lease.rs`, `guard.rs`, `pass.rs`, `query.rs`,
//! `earlier.rs`, `gc.rs` and `verify.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::artifacts::{self, ArtifactStore, LocalArtifacts};
use super::{
    guard, lease, liveness, open, schema, BlobCounters, ContentHash, Damage, ExecutionRow, Lookup,
    OutputRow, OutputsHolder, RunStatus, StoreOptions,
};
use crate::error::{Error, ReadOnlyCause, Result, UnknownValue};
use crate::key::{Hash128, KeyComponents};
use crate::status::StepStatus;

/// SQLite page cache per connection in KiB (a negative `cache_size`): an upper bound, only
/// reached as the database grows.
const CACHE_SIZE_KIB: i64 = -32 * 1024;

/// WAL pages between automatic checkpoints (SQLite's default is 1000).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// The SQLite metadata of a store directory (`metadata.sqlite`), the [`MetadataStore`] of
/// local stores; cheap to clone and shareable between threads. [`Store`] holds it behind the
/// seam, with the store's [`ArtifactStore`].
#[derive(Clone)]
pub(crate) struct SqliteMetadata {
    pub(super) inner: Arc<SqliteInner>,
}

pub(super) struct SqliteInner {
    pub(super) root: PathBuf,
    /// `<root>/artifacts`: the local blob folder, and `tmp/` in it for temporary files and
    /// the owners' lock files (whatever backend holds the blobs).
    pub(super) artifacts: PathBuf,
    /// Where the blobs are (lookups check their stat, gc and verify walk them).
    pub(super) blobs: Arc<dyn ArtifactStore>,
    pub(super) options: StoreOptions,
    /// Why this handle cannot write; `None` when it can.
    pub(super) read_only: Option<ReadOnlyCause>,
    pub(super) content_hash: ContentHash,
    pub(super) db: Mutex<Connection>,
    /// The file lock that proves this handle alive to other processes (writable handles
    /// only; see `liveness.rs`).
    pub(super) owner: Option<liveness::OwnerLock>,
    /// Blob reads, shared with the [`Store`] holding this handle (lookups re-hash blobs
    /// whose stat changed).
    pub(super) counters: Arc<BlobCounters>,
    /// Live lease guards of this handle and its heartbeat thread (`guard.rs`).
    pub(super) beats: guard::Beats,
    /// Marks the database file as open in this process while the handle lives (see
    /// [`open::OpenDb`]). Dropped after `db`, so after the connection closes.
    pub(super) _open_db: open::OpenDb,
}

impl std::fmt::Debug for SqliteMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMetadata")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl SqliteMetadata {
    /// Opens (or creates) the SQLite metadata in directory `path`; see [`Store::open_with`].
    pub(crate) fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
        counters: Arc<BlobCounters>,
    ) -> Result<SqliteMetadata> {
        // Several processes creating or migrating one store at the same moment can get
        // SQLITE_BUSY without SQLite's busy handler being consulted (a lock upgrade that
        // could deadlock, or the switch to WAL mode). Such contention is transient, so the
        // whole open is retried until `busy_timeout` runs out; every step of it is
        // idempotent (directories, `IF NOT EXISTS` tables, migrations in transactions).
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::open_once(path.as_ref(), options.clone(), &counters) {
                Err(Error::StoreLocked { .. }) if started.elapsed() < options.busy_timeout => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_once(
        path: &Path,
        options: StoreOptions,
        counters: &Arc<BlobCounters>,
    ) -> Result<SqliteMetadata> {
        let root = path.to_path_buf();
        let not_a_store = |reason: &str| Error::NotAStore {
            path: root.clone(),
            reason: reason.to_string(),
        };
        let db_path = root.join("metadata.sqlite");
        let artifacts = root.join("artifacts");
        // Checks first, changes after: a refused path must stay exactly as it was.
        let exists = match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => return Err(not_a_store("it is a file, not a directory")),
            Ok(_) => {
                if !db_path.exists() {
                    if options.read_only {
                        return Err(not_a_store("no metadata.sqlite in it"));
                    }
                    let foreign = fs::read_dir(&root)
                        .map_err(|e| Error::io(&root, e))?
                        .filter_map(|e| e.ok())
                        // Our own names count as ours: another process may be creating
                        // this store right now.
                        .any(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            name != "artifacts" && !name.starts_with("metadata.sqlite")
                        });
                    if foreign {
                        return Err(not_a_store("a non-empty directory without metadata.sqlite"));
                    }
                } else if db_path.is_dir() {
                    return Err(not_a_store("metadata.sqlite is a directory"));
                } else {
                    open::check_file_header(&root, &db_path)?;
                }
                true
            }
            Err(_) if options.read_only => return Err(not_a_store("it does not exist")),
            Err(_) => false,
        };
        let read_only = if exists && !open::writable_store(&root, &db_path, &artifacts) {
            Some(ReadOnlyCause::Media)
        } else if options.read_only {
            Some(ReadOnlyCause::Requested)
        } else {
            None
        };
        let read_only_error = |action: &str| Error::ReadOnly {
            path: root.clone(),
            action: action.to_string(),
            cause: ReadOnlyCause::Media,
        };
        if !exists {
            fs::create_dir_all(&root).map_err(|e| match e.kind() {
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                    read_only_error("create a store")
                }
                _ => Error::io(&root, e),
            })?;
        } else if read_only.is_some() && !db_path.exists() {
            return Err(read_only_error("create a store in it"));
        }

        let db_err = |e: rusqlite::Error| map_db_error(&root, e);
        let (conn, (version, app_id, tables)) = match read_only {
            Some(cause) => open::read_only(&root, &db_path, &options, cause)?,
            None => {
                let conn = Connection::open(&db_path).map_err(db_err)?;
                conn.busy_timeout(options.busy_timeout).map_err(db_err)?;
                let header = open::read_header(&root, &conn)?;
                (conn, header)
            }
        };
        let open_db = open::OpenDb::register(&db_path);
        open::check_header(&root, version, app_id, tables)?;
        if let Some(cause) = read_only {
            if version < schema::current_version() {
                return Err(Error::ReadOnly {
                    path: root,
                    action: format!(
                        "upgrade its schema from version {version} to {}",
                        schema::current_version()
                    ),
                    cause,
                });
            }
            if cause == ReadOnlyCause::Media && !options.read_only {
                tracing::debug!(
                    target: "pipeline",
                    "Store at {} is not writable here; opened it for reading only.",
                    root.display()
                );
            }
        }
        if let Some(recorded) = setting_of(&conn, "content_hash").map_err(db_err)? {
            if recorded.parse::<ContentHash>().is_err() {
                return Err(not_a_store(&format!(
                    "it names blobs with `{recorded}`, which this version does not know"
                )));
            }
        }
        if read_only.is_none() {
            fs::create_dir_all(&artifacts).map_err(|e| Error::io(&artifacts, e))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .map_err(db_err)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db_err)?;
            // A cached run records one row per step, and each row lands on a random page of
            // the indexes keyed by hashes (cache key, content hash): with SQLite's defaults
            // (2 MB page cache, checkpoint every 1000 WAL pages) a 1000-step run spills and
            // re-reads those pages, then writes them back and fsyncs once per run.
            conn.pragma_update(None, "cache_size", CACHE_SIZE_KIB)
                .map_err(db_err)?;
            conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
                .map_err(db_err)?;
        }
        // Held from before recovery, so this handle's own runs and leases, once written, are
        // never taken for a dead process's.
        let owner = if read_only.is_some() {
            None
        } else {
            let tmp = artifacts.join("tmp");
            Some(liveness::OwnerLock::acquire(&tmp).map_err(|e| Error::io(tmp, e))?)
        };
        let blobs = match &options.artifacts {
            Some(blobs) => Arc::clone(blobs),
            None => Arc::new(LocalArtifacts::new(
                &artifacts,
                owner.as_ref().map_or("", |o| o.token()),
            )),
        };
        let mut store = SqliteMetadata {
            inner: Arc::new(SqliteInner {
                root,
                artifacts,
                blobs,
                content_hash: options.content_hash,
                options,
                read_only,
                db: Mutex::new(conn),
                owner,
                counters: Arc::clone(counters),
                beats: guard::Beats::default(),
                _open_db: open_db,
            }),
        };
        if read_only.is_none() {
            store.migrate()?;
        }
        let recorded = store.setting("content_hash")?;
        let kind = match recorded.as_deref().map(str::parse::<ContentHash>) {
            Some(Ok(kind)) => kind,
            Some(Err(_)) => {
                return Err(Error::NotAStore {
                    path: store.inner.root.clone(),
                    reason: format!(
                        "it names blobs with `{}`, which this version does not know",
                        recorded.unwrap_or_default()
                    ),
                })
            }
            None => ContentHash::Xxh3,
        };
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.content_hash = kind;
        }
        if read_only.is_none() {
            store.recover()?;
        }
        Ok(store)
    }

    /// Why this handle cannot write, or `None` when it can.
    pub fn read_only(&self) -> Option<ReadOnlyCause> {
        self.inner.read_only
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The schema version of this store.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (or [`Error::StoreLocked`]) when the metadata cannot be read.
    pub fn schema_version(&self) -> Result<i64> {
        self.db()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.db_error(e))
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.db();
        // IMMEDIATE takes the write lock first, so two processes never migrate at once.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.db_error(e))?;
        // Checked when opening; checked again inside the write lock, where it counts.
        open::check_header(&self.inner.root, version, schema::APPLICATION_ID, 0)?;
        let done = usize::try_from(version).unwrap_or(usize::MAX);
        for (v, sql) in schema::MIGRATIONS.iter().enumerate().skip(done) {
            tx.execute_batch(sql).map_err(|e| self.db_error(e))?;
            tx.pragma_update(None, "user_version", v as i64 + 1)
                .map_err(|e| self.db_error(e))?;
        }
        tx.execute_batch(schema::AUXILIARY)
            .map_err(|e| self.db_error(e))?;
        // A new store records its blob naming; stores from version 1 used xxh3.
        let algorithm = if version == 0 {
            self.inner.options.content_hash
        } else {
            ContentHash::Xxh3
        };
        tx.execute(
            "INSERT OR IGNORE INTO settings(key, value) VALUES ('content_hash', ?1)",
            [algorithm.as_str()],
        )
        .map_err(|e| self.db_error(e))?;
        tx.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))
    }

    /// A value from the settings table.
    fn setting(&self, key: &str) -> Result<Option<String>> {
        setting_of(&self.db(), key).map_err(|e| self.db_error(e))
    }

    /// This store's id (`settings.store_id`), created now with `create` when it has none
    /// and the handle can write; see `store/claim.rs`.
    pub(crate) fn store_id(&self, create: bool) -> Result<Option<String>> {
        if let Some(id) = self.setting("store_id")? {
            return Ok(Some(id));
        }
        if !create || self.inner.read_only.is_some() {
            return Ok(None);
        }
        self.db()
            .execute(
                "INSERT OR IGNORE INTO settings(key, value) VALUES ('store_id', ?1)",
                [super::claim::new_store_id()],
            )
            .map_err(|e| self.db_error(e))?;
        self.setting("store_id")
    }

    /// The algorithm that names this store's blobs.
    pub fn content_hash_algorithm(&self) -> ContentHash {
        self.inner.content_hash
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The owner token of this handle (empty on a read-only handle, which writes nothing).
    pub(crate) fn owner_token(&self) -> &str {
        self.inner.owner.as_ref().map_or("", |o| o.token())
    }

    /// `artifacts/tmp/`: blobs being written and the owners' lock files.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.artifacts.join("tmp")
    }

    /// Fails with [`Error::ReadOnly`] on a read-only handle.
    pub(crate) fn check_writable(&self, action: &str) -> Result<()> {
        if let Some(cause) = self.inner.read_only {
            return Err(Error::ReadOnly {
                path: self.inner.root.clone(),
                action: action.to_string(),
                cause,
            });
        }
        Ok(())
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned lock is safe to reuse.
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn db_error(&self, e: rusqlite::Error) -> Error {
        map_db_error(&self.inner.root, e)
    }

    /// Where the blob with content hash `hash` is: its path in the store's `artifacts/`
    /// folder, or, with another [`artifacts`](StoreOptions::artifacts) backend, its
    /// location there (a URL for remote ones).
    pub fn blob_path(&self, hash: Hash128) -> PathBuf {
        self.inner.blobs.location(hash)
    }

    /// The backend holding this store's blobs.
    pub fn artifact_store(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.blobs
    }

    /// The location of the blob backend, for I/O errors that concern no single blob.
    pub(crate) fn blobs_location(&self) -> PathBuf {
        super::artifacts::backend_location(self.inner.blobs.as_ref(), &self.inner.artifacts)
    }

    /// SQLite's side of [`MetadataStore::blob_damaged`]: forgets the blob's recorded
    /// stat, so the next lookup stats and re-hashes it, whatever the backend (a missing
    /// blob is found missing by its stat).
    pub(crate) fn forget_blob_stat(&self, hash: Hash128) -> Result<()> {
        self.db()
            .execute("DELETE FROM blobs WHERE hash = ?1", [hash.to_hex()])
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// SQLite's side of [`MetadataStore::undecodable`].
    pub(crate) fn record_undecodable(
        &self,
        execution: i64,
        output: &str,
        type_name: &str,
        message: &str,
    ) -> Result<()> {
        self.check_writable("record an undecodable output")?;
        self.db()
            .execute(
                "INSERT OR REPLACE INTO undecodable(execution_id, output, type_name, message, at_us) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![execution, output, type_name, message, crate::time::now_micros()],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Finds the newest completed execution with `key` whose blobs are intact, in a read
    /// transaction of its own (takes no write lock).
    pub(crate) fn lookup(&self, key: Hash128) -> Result<Lookup> {
        let conn = self.db();
        self.lookup_in(&conn, key)
    }

    /// Finds the newest completed execution with `key` whose blobs are intact, on a
    /// connection the caller holds (inside its transaction).
    pub(crate) fn lookup_in(&self, conn: &Connection, key: Hash128) -> Result<Lookup> {
        // The newest completed execution with this key that holds its outputs' rows (an
        // executed one, or a cached row holding copies: from before schema 5, or handed
        // over by garbage collection), joined to those rows and their recorded blob stats,
        // in one statement: this is the per-step cost of a cached run (perf figure 1), and
        // each statement costs its cursors' set-up whatever it reads. A cached row pointing
        // at another (`outputs_of`) needs no lookup, as the one it points at has the same
        // key; so the index on keys leaves those rows out, and a cached run dirties no page
        // of it. An output that failed to decode (`undecodable`, keyed by the execution
        // that wrote it, or by the one it reused) makes the execution unusable, like a
        // damaged blob; two equality probes, as an `IN` list builds a temporary table per
        // row. No outputs recorded (an incomplete row) is a miss, but for the split of an
        // empty list, which records none.
        type Row = (
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            i64,
            String,
        );
        let rows: Vec<Row> = conn
            .prepare_cached(
                "SELECT e.id, e.reused_execution, e.fingerprint, \
                        a.name, a.content_hash, a.size, b.size, b.mtime_ns, \
                        COALESCE((SELECT u.type_name FROM undecodable u \
                                  WHERE u.execution_id = e.id AND u.output = a.name), \
                                 (SELECT u.type_name FROM undecodable u \
                                  WHERE u.execution_id = e.reused_execution \
                                  AND u.output = a.name)), \
                        e.started_at_us + CAST(e.duration_s * 1000000 AS INTEGER), e.step \
                 FROM executions e \
                 LEFT JOIN artifacts a ON a.execution_id = e.id \
                 LEFT JOIN blobs b ON b.hash = a.content_hash \
                 WHERE e.id = (SELECT id FROM executions WHERE cache_key = ?1 \
                               AND outputs_of IS NULL AND status IN ('executed', 'cached') \
                               ORDER BY id DESC LIMIT 1) \
                 ORDER BY a.position",
            )
            .and_then(|mut s| {
                s.query_map([key.to_hex()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let Some(&(holder, pointed, fingerprint, .., produced_at_us, ref step)) = rows.first()
        else {
            return Ok(Lookup::Miss);
        };
        // No output row: the split of an empty list (it has nothing to record) is a hit
        // with no outputs; any other step's is an incomplete row, a miss.
        if rows[0].3.is_none() && step != crate::map::SPLIT_STEP {
            return Ok(Lookup::Miss);
        }
        // The hit reuses the execution that row reused (or the row itself), unless that one
        // is gone: then the row holding the outputs stands for it.
        let execution = match pointed {
            None => holder,
            Some(pointed) => {
                let exists: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM executions WHERE id = ?1)")
                    .and_then(|mut s| s.query_row([pointed], |r| r.get(0)))
                    .map_err(|e| self.db_error(e))?;
                if exists {
                    pointed
                } else {
                    holder
                }
            }
        };
        let mut outputs = Vec::new();
        let mut stale = Vec::new();
        // On a remote backend a blob with a recorded stat is trusted (a stat would be a
        // request per output); the load verifies it, and forgets the stat when it finds it
        // damaged (`blob_damaged`), so the next lookup asks the backend.
        let trust_recorded = !self.inner.blobs.stat_on_hit();
        for (_, _, _, name, hex, size, blob_size, blob_mtime, undecodable, ..) in rows {
            // No output row (an empty split's one row of NULLs): nothing to check.
            let (Some(name), Some(hex), Some(size)) = (name, hex, size) else {
                continue;
            };
            if let Some(type_name) = undecodable {
                return Ok(Lookup::Damaged(Damage::Undecodable {
                    output: name,
                    type_name,
                }));
            }
            let Some(hash) = Hash128::from_hex(&hex) else {
                return Ok(Lookup::Damaged(Damage::Corrupt { output: name }));
            };
            if trust_recorded && blob_size.is_some() {
                outputs.push((hash, size as u64));
                continue;
            }
            match self.check_blob(conn, hash, blob_size, blob_mtime)? {
                BlobState::Ok { stale_use } => {
                    outputs.push((hash, size as u64));
                    if stale_use {
                        stale.push(hash);
                    }
                }
                BlobState::Missing => return Ok(Lookup::Damaged(Damage::Missing { output: name })),
                BlobState::Corrupt => return Ok(Lookup::Damaged(Damage::Corrupt { output: name })),
            }
        }
        // Mark the blobs as just used (access time only: mtime is what the stat check
        // compares), for gc's `min_blob_age`. What protects a hit until its cached row
        // commits is gc's rule for running runs (`gc.rs`), not this.
        if self.inner.read_only.is_none() {
            for hash in stale {
                let _ = self.inner.blobs.touch(hash);
            }
        }
        Ok(Lookup::Hit {
            execution,
            outputs,
            holder: OutputsHolder {
                id: holder,
                fingerprint,
            },
            produced_at_us,
        })
    }

    /// Size and times of blob `hash`, which must exist ([`Error::BlobMissing`] otherwise).
    pub(crate) fn blob_stat(&self, hash: Hash128) -> Result<artifacts::BlobStat> {
        match self.inner.blobs.stat(hash) {
            Ok(Some(stat)) => Ok(stat),
            Ok(None) => Err(Error::BlobMissing {
                hash: hash.to_hex(),
                path: self.blob_path(hash),
            }),
            Err(e) => Err(Error::io(self.blob_path(hash), e)),
        }
    }

    /// Checks a blob by `stat`; re-hashes it only when its size or mtime changed.
    fn check_blob(
        &self,
        conn: &Connection,
        hash: Hash128,
        size: Option<i64>,
        mtime: Option<i64>,
    ) -> Result<BlobState> {
        let stat = match self.inner.blobs.stat(hash) {
            Ok(Some(stat)) => stat,
            Ok(None) => return Ok(BlobState::Missing),
            Err(e) => return Err(Error::io(self.blob_path(hash), e)),
        };
        let mtime_now = stat.modified_ns;
        let stale_use = stat
            .last_used
            .and_then(|a| std::time::SystemTime::now().duration_since(a).ok())
            .is_none_or(|age| age > USE_REFRESH);
        if size == Some(stat.size as i64) && mtime == Some(mtime_now) {
            return Ok(BlobState::Ok { stale_use });
        }
        self.inner
            .counters
            .blob_reads
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .bytes_read
            .fetch_add(stat.size, Ordering::Relaxed);
        let hashed = artifacts::hash_blob(self.inner.blobs.as_ref(), hash, self.inner.content_hash);
        let (actual, len) = match hashed {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(BlobState::Missing),
            Err(e) => return Err(Error::io(self.blob_path(hash), e)),
        };
        if actual != hash {
            return Ok(BlobState::Corrupt);
        }
        // Intact but touched (copied store, restored backup): remember the new stat.
        if self.inner.read_only.is_none() {
            conn.prepare_cached(
                "INSERT INTO blobs(hash, size, mtime_ns) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(hash) DO UPDATE SET size = ?2, mtime_ns = ?3",
            )
            .and_then(|mut s| s.execute(params![hash.to_hex(), len as i64, mtime_now]))
            .map_err(|e| self.db_error(e))?;
        }
        Ok(BlobState::Ok { stale_use: true })
    }

    pub(crate) fn begin_run(
        &self,
        id: &str,
        pipeline: &str,
        name: &str,
        started: i64,
    ) -> Result<()> {
        self.check_writable("record a run")?;
        self.db()
            .execute(
                "INSERT INTO runs(id, pipeline, name, status, started_at_us, pid, owner, host) \
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7)",
                params![
                    id,
                    pipeline,
                    name,
                    started,
                    std::process::id(),
                    self.owner_token(),
                    liveness::host_name()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    pub(crate) fn finish_run(&self, id: &str, status: RunStatus, duration: Duration) -> Result<()> {
        self.db()
            .execute(
                "UPDATE runs SET status = ?2, duration_s = ?3 WHERE id = ?1",
                params![id, status.as_str(), duration.as_secs_f64()],
            )
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Commits execution rows with their artifacts and inputs in one transaction; returns
    /// their ids. Blobs must already be in place.
    pub(crate) fn record(&self, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        self.check_writable("record executions")?;
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let ids = self.record_in(&tx, rows)?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(ids)
    }

    /// Inserts execution rows on a connection inside the caller's transaction, and drops
    /// the leases the rows' executions held.
    pub(crate) fn record_in(&self, tx: &Connection, rows: &[ExecutionRow<'_>]) -> Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(rows.len());
        {
            let mut exec = tx
                .prepare_cached(
                    "INSERT INTO executions(run_id, name, step, position, status, cache_key, \
                     code_signature, components, reason, error, reused_execution, \
                     started_at_us, duration_s, compared, outputs_of, fingerprint, attempts, \
                     metadata, metrics) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17, ?18, ?19)",
                )
                .map_err(|e| self.db_error(e))?;
            let mut art = tx
                .prepare_cached(
                    "INSERT INTO artifacts(execution_id, name, position, content_hash, size, \
                     type_name, cacher, cacher_version, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(|e| self.db_error(e))?;
            let mut input = tx
                .prepare_cached(
                    "INSERT INTO inputs(execution_id, name, position, content_hash, \
                     producer_execution, value_blob) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.db_error(e))?;
            let mut blob = tx
                .prepare_cached(
                    "INSERT INTO blobs(hash, size, mtime_ns) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(hash) DO UPDATE SET size = ?2, mtime_ns = ?3",
                )
                .map_err(|e| self.db_error(e))?;
            for row in rows {
                let fingerprint = row.components.fingerprint();
                // A cached row points at the rows of the execution it reuses instead of
                // copying them, when that execution still holds exactly these outputs.
                // Its key components are stored once, on the row it points at, when they
                // are the same (they are what most of a row's bytes are).
                let holder = match (row.status, row.reused, &row.outputs_of) {
                    (StepStatus::Cached, Some(_), Some(found)) => Some(*found),
                    (StepStatus::Cached, Some(reused), None) => {
                        self.outputs_holder(tx, reused, &row.outputs)?
                    }
                    _ => None,
                };
                let outputs_of = holder.map(|h| h.id);
                let components = match holder {
                    Some(h) if h.fingerprint == Some(fingerprint) => String::new(),
                    // Different fingerprints: different components.
                    Some(OutputsHolder {
                        fingerprint: Some(_),
                        ..
                    })
                    | None => self.components_json(row.components),
                    // A row from before fingerprints: compare the text.
                    Some(h) => {
                        let ours = self.components_json(row.components);
                        let stored: Option<String> = tx
                            .prepare_cached("SELECT components FROM executions WHERE id = ?1")
                            .and_then(|mut s| s.query_row([h.id], |r| r.get(0)).optional())
                            .map_err(|e| self.db_error(e))?;
                        if stored.as_deref() == Some(ours.as_str()) {
                            String::new()
                        } else {
                            ours
                        }
                    }
                };
                let (attempts, metadata, metrics) = row.details.columns();
                exec.execute(params![
                    row.run_id,
                    row.name,
                    row.step,
                    row.position as i64,
                    row.status.as_str(),
                    row.cache_key.map(Hash128::to_hex),
                    row.components.code_signature,
                    components,
                    row.reason,
                    row.error,
                    row.reused,
                    row.started_at_us,
                    row.duration.as_secs_f64(),
                    row.compared,
                    outputs_of,
                    fingerprint,
                    attempts,
                    metadata,
                    metrics,
                ])
                .map_err(|e| self.db_error(e))?;
                let id = tx.last_insert_rowid();
                ids.push(id);
                if let (Some(holder), Some(key)) = (row.lease_holder, row.cache_key) {
                    lease::release_in(tx, key, holder).map_err(|e| self.db_error(e))?;
                }
                if outputs_of.is_some() {
                    continue;
                }
                for (pos, o) in row.outputs.iter().enumerate() {
                    art.execute(params![
                        id,
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
                    if row.status == StepStatus::Executed {
                        // Remember the stat of the blob just written, for stat-only hits.
                        let stat = self.blob_stat(o.hash)?;
                        blob.execute(params![o.hash.to_hex(), stat.size as i64, stat.modified_ns])
                            .map_err(|e| self.db_error(e))?;
                    }
                }
                for (pos, i) in row.inputs.iter().enumerate() {
                    input
                        .execute(params![
                            id,
                            i.name,
                            pos as i64,
                            i.hash.map(Hash128::to_hex),
                            i.producer,
                            i.value.map(Hash128::to_hex)
                        ])
                        .map_err(|e| self.db_error(e))?;
                }
            }
        }
        Ok(ids)
    }

    /// Key components as the `components` column stores them.
    fn components_json(&self, components: &KeyComponents) -> String {
        serde_json::to_string(components).unwrap_or_else(|_| "{}".into())
    }

    /// The execution whose artifact and input rows a cached row reusing execution
    /// `reused` can point at (`outputs_of`), on the caller's write transaction, and its key
    /// components as stored: the one that holds `reused`'s rows, provided it still exists
    /// and holds exactly `outputs` (the outputs the run found and goes on with). `None`
    /// when it does not (garbage collection removed it after the lookup, and its row id
    /// may even have been taken by another execution since): the cached row then gets
    /// copies of its rows, as before schema 5.
    fn outputs_holder(
        &self,
        tx: &Connection,
        reused: i64,
        outputs: &[OutputRow],
    ) -> Result<Option<OutputsHolder>> {
        let held: Vec<(i64, Option<i64>, Option<String>)> = tx
            .prepare_cached(
                "SELECT h.id, h.fingerprint, a.content_hash FROM executions e \
                 JOIN executions h ON h.id = COALESCE(e.outputs_of, e.id) \
                 LEFT JOIN artifacts a ON a.execution_id = h.id \
                 WHERE e.id = ?1 ORDER BY a.position",
            )
            .and_then(|mut s| {
                s.query_map([reused], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.db_error(e))?;
        let hashes: Vec<&str> = held.iter().filter_map(|(_, _, h)| h.as_deref()).collect();
        let same = hashes.len() == outputs.len()
            && hashes
                .iter()
                .zip(outputs)
                .all(|(h, o)| Hash128::from_hex(h) == Some(o.hash));
        Ok(held
            .into_iter()
            .next()
            .filter(|_| same)
            .map(|(id, fingerprint, _)| OutputsHolder { id, fingerprint }))
    }
}

enum BlobState {
    /// Intact; `stale_use` when its last recorded use is old enough to refresh.
    Ok {
        stale_use: bool,
    },
    Missing,
    Corrupt,
}

/// A blob's access time is refreshed on a hit only when older than this, so a store that
/// is run again and again is not written to on every hit (gc's `min_blob_age` counts it as
/// a use).
const USE_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// A value from the settings table, `None` where the table does not exist yet.
pub(super) fn setting_of(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    let has_table: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'settings'",
        [],
        |r| r.get(0),
    )?;
    if has_table == 0 {
        return Ok(None);
    }
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
}

pub(super) fn map_db_error(root: &Path, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &e {
        if let Some(unknown) = inner.downcast_ref::<UnknownValue>() {
            return Error::UnknownStoredValue {
                path: root.to_path_buf(),
                what: unknown.what,
                value: unknown.value.clone(),
            };
        }
    }
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Error::StoreLocked {
                path: root.to_path_buf(),
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
            Error::ReadOnly {
                path: root.to_path_buf(),
                action: "write to it".into(),
                cause: ReadOnlyCause::Media,
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            Error::NotAStore {
                path: root.to_path_buf(),
                reason: "metadata.sqlite is not a SQLite database".into(),
            }
        }
        _ => Error::Database {
            path: root.to_path_buf(),
            source: e,
        },
    }
}
