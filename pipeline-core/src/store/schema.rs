//! The metadata schema and its forward migrations, versioned by `PRAGMA user_version`.

/// Marks our databases (`PRAGMA application_id`), so a foreign SQLite file is refused.
pub(crate) const APPLICATION_ID: i64 = 0x5050_4c4e; // "PPLN"

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only; never edit.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1: runs, executions, artifacts, lineage inputs and blob stat cache.
    r#"
    CREATE TABLE runs (
        id            TEXT PRIMARY KEY,
        pipeline      TEXT NOT NULL,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL,          -- running | completed | failed
        started_at_us INTEGER NOT NULL,
        duration_s    REAL,
        pinned        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, started_at_us);
    CREATE INDEX runs_by_name ON runs(name);

    CREATE TABLE executions (
        id               INTEGER PRIMARY KEY,
        run_id           TEXT NOT NULL REFERENCES runs(id),
        name             TEXT NOT NULL,       -- unique within the run
        step             TEXT NOT NULL,       -- the step's name, shared by repeated calls
        position         INTEGER NOT NULL,
        status           TEXT NOT NULL,       -- executed | cached | failed | skipped
        cache_key        TEXT,
        code_signature   TEXT NOT NULL,
        components       TEXT NOT NULL,       -- KeyComponents as JSON
        reason           TEXT,
        error            TEXT,
        reused_execution INTEGER,
        started_at_us    INTEGER NOT NULL,
        duration_s       REAL NOT NULL
    );
    CREATE INDEX executions_by_key ON executions(cache_key, status);
    CREATE INDEX executions_by_step ON executions(step, status);
    CREATE INDEX executions_by_run ON executions(run_id, position);

    CREATE TABLE artifacts (
        id             INTEGER PRIMARY KEY,
        execution_id   INTEGER NOT NULL REFERENCES executions(id),
        name           TEXT NOT NULL,
        position       INTEGER NOT NULL,
        content_hash   TEXT NOT NULL,
        size           INTEGER NOT NULL,
        type_name      TEXT NOT NULL,
        cacher         TEXT NOT NULL,
        cacher_version INTEGER NOT NULL,
        metadata       TEXT
    );
    CREATE INDEX artifacts_by_execution ON artifacts(execution_id, position);
    CREATE INDEX artifacts_by_hash ON artifacts(content_hash);

    CREATE TABLE inputs (
        execution_id       INTEGER NOT NULL REFERENCES executions(id),
        name               TEXT NOT NULL,
        position           INTEGER NOT NULL,
        content_hash       TEXT,              -- NULL for parameters
        producer_execution INTEGER
    );
    CREATE INDEX inputs_by_execution ON inputs(execution_id, position);
    CREATE INDEX inputs_by_hash ON inputs(content_hash);

    -- Size and mtime of each blob when last written or verified: a cache hit stats the
    -- file and re-hashes it only when these differ, so hits read no bytes.
    CREATE TABLE blobs (
        hash     TEXT PRIMARY KEY,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL
    );
    "#,
    // 1 -> 2: the pid of each run (to spot runs whose process died), leases for
    // single-flight execution, and store settings (the content-hash algorithm).
    r#"
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    CREATE TABLE leases (
        cache_key    TEXT PRIMARY KEY,
        holder       TEXT NOT NULL,       -- "<run name> (pid N)"
        heartbeat_us INTEGER NOT NULL
    );
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2 -> 3: the earlier execution each cache miss was compared with (JSON: its id, call
    // and run names, and key components), so `reason()`, `explain` and `diff` agree, and
    // an explanation survives garbage collection of that execution.
    r#"
    ALTER TABLE executions ADD COLUMN compared TEXT;
    "#,
    // 3 -> 4: liveness by file locks instead of process ids. Runs and leases record the
    // owner token of the store handle that wrote them (see `store/liveness.rs`) and its
    // host; a lease names its holder by columns instead of a display string. Leases are
    // transient claims: the old table is replaced, not converted (a process of an older
    // version cannot keep writing to a store migrated past it).
    r#"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    DROP TABLE leases;
    CREATE TABLE leases (
        cache_key    TEXT PRIMARY KEY,
        run_id       TEXT NOT NULL,
        step         TEXT NOT NULL,       -- the call's name within its run
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        owner        TEXT NOT NULL,       -- owner token of the holding store handle
        heartbeat_us INTEGER NOT NULL
    );
    "#,
    // 4 -> 5: a cached execution is one row that points at the execution whose artifact
    // and input rows stand for its own (`outputs_of`), instead of copies of those rows;
    // every query reads a row's outputs and inputs from `COALESCE(outputs_of, id)`. Rows
    // cached before keep their copies (`outputs_of` NULL). Garbage collection hands the
    // rows of an execution that a kept row points at over to that row before removing
    // it; `executions_by_outputs_of` finds the rows pointing at one. A pointing row whose
    // key components are the same as those of the row it points at stores them as ''. Cache lookups only
    // need the executions holding rows, so the index on keys leaves pointing rows out (a
    // cached run then writes to no page of it: keys are random, each row a random page).
    r#"
    ALTER TABLE executions ADD COLUMN outputs_of INTEGER;
    CREATE INDEX executions_by_outputs_of ON executions(outputs_of)
        WHERE outputs_of IS NOT NULL;
    DROP INDEX executions_by_key;
    CREATE INDEX executions_by_key ON executions(cache_key)
        WHERE outputs_of IS NULL AND status IN ('executed', 'cached');
    "#,
    // 5 -> 6: store transactions (`store/lease.rs`, `store/gc.rs`). A lease names the
    // `running` execution row its holder recorded when it claimed the key, and when it was
    // claimed. `holds` pins a blob a lease is writing from before the blob is in place
    // until the lease commits or ends. `condemned` says since when a blob has been
    // unreferenced, so gc removes it only once no run that may have found it is running.
    r#"
    ALTER TABLE leases ADD COLUMN execution_id INTEGER;
    ALTER TABLE leases ADD COLUMN claimed_at_us INTEGER;
    CREATE TABLE holds (
        hash      TEXT NOT NULL,
        cache_key TEXT NOT NULL,          -- the lease writing it
        owner     TEXT NOT NULL,          -- owner token of the handle holding that lease
        at_us     INTEGER NOT NULL
    );
    CREATE INDEX holds_by_hash ON holds(hash);
    CREATE INDEX holds_by_lease ON holds(cache_key, owner);
    CREATE TABLE condemned (
        hash     TEXT PRIMARY KEY,
        since_us INTEGER NOT NULL         -- when gc last saw a row reference it go
    );
    "#,
    // 6 -> 7: what a cached run writes and reads per step (perf figure 1). A cached row
    // that points at another (`outputs_of`) leaves the index on steps: that index took
    // each such row in the middle of a b-tree, a third of the row's cost, and the
    // questions it answers ("the newest call of this step") reach such rows through the
    // rows they point at (`earlier.rs`). The lookup reads an execution's outputs from the
    // index alone, and a blob's recorded stat in one seek. A row's `fingerprint` of its key
    // components (`KeyComponents::fingerprint`) tells a cached row that its components are
    // those of the row it points at without comparing their JSON.
    r#"
    ALTER TABLE executions ADD COLUMN fingerprint INTEGER;
    DROP INDEX executions_by_step;
    CREATE INDEX executions_by_step ON executions(step, status) WHERE outputs_of IS NULL;
    DROP INDEX artifacts_by_execution;
    CREATE INDEX artifacts_by_execution
        ON artifacts(execution_id, position, name, content_hash, size);
    CREATE TABLE blobs_v7 (
        hash     TEXT PRIMARY KEY,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO blobs_v7(hash, size, mtime_ns) SELECT hash, size, mtime_ns FROM blobs;
    DROP TABLE blobs;
    ALTER TABLE blobs_v7 RENAME TO blobs;
    "#,
    // 7 -> 8: a parameter's stored form (bincode), a blob named by its content hash on the
    // input row, so a worker process or a replay can decode it (`pipeline::worker`).
    // Referenced like an output: gc keeps it while the execution is kept.
    r#"
    ALTER TABLE inputs ADD COLUMN value_blob TEXT;
    "#,
    // 8 -> 9: an execution's attempts (when retried) and the metadata and metrics its step
    // logged, as JSON (`details.rs`).
    r#"
    ALTER TABLE executions ADD COLUMN attempts TEXT;
    ALTER TABLE executions ADD COLUMN metadata TEXT;
    ALTER TABLE executions ADD COLUMN metrics TEXT;
    "#,
];

/// Tables that older versions of this library may ignore without harm, so they do not
/// bump the schema version (a store stays readable by the version that wrote it, and by
/// read-only handles that cannot migrate). Created by every writable open.
pub(crate) const AUXILIARY: &str = r#"
    -- Outputs that failed to decode as the type their step returns, by the execution that
    -- wrote them. A cache lookup that would reuse such an output is a miss instead; a
    -- version that does not know this table keeps reusing them (and failing to load).
    CREATE TABLE IF NOT EXISTS undecodable (
        execution_id INTEGER NOT NULL,
        output       TEXT NOT NULL,
        type_name    TEXT NOT NULL,
        message      TEXT NOT NULL,
        at_us        INTEGER NOT NULL,
        PRIMARY KEY (execution_id, output)
    );
"#;

/// The schema version this build writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
