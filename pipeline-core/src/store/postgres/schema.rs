//! The PostgreSQL schema, versioned in the `pipeline_store` table and migrated forward
//! under an advisory lock, so several processes opening one database at once migrate it
//! once.

use postgres::GenericClient;

/// Marks a database as a store and holds its schema version.
const MARKER: &str = "pipeline_store";

/// Key of [`MARKER`]'s row naming what wrote the database.
const APPLICATION: (&str, &str) = ("application", "cached-pipeline");

/// `pg_advisory_xact_lock` key of schema migrations ("PPLN" as in SQLite's application id).
const MIGRATION_LOCK: i64 = 0x5050_4c4e;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only; never edit.
/// The tables mirror the SQLite schema (`store/schema.rs`); times are microseconds since
/// the Unix epoch, hashes lowercase hex.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1: runs, executions, artifacts, lineage inputs, leases, settings.
    r#"
    CREATE TABLE runs (
        id            TEXT PRIMARY KEY,
        pipeline      TEXT NOT NULL,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL,
        started_at_us BIGINT NOT NULL,
        duration_s    DOUBLE PRECISION,
        pinned        BOOLEAN NOT NULL DEFAULT FALSE,
        owner         TEXT,
        host          TEXT,
        pid           BIGINT
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, started_at_us);
    CREATE INDEX runs_by_name ON runs(name);

    CREATE TABLE executions (
        id               BIGSERIAL PRIMARY KEY,
        run_id           TEXT NOT NULL REFERENCES runs(id),
        name             TEXT NOT NULL,
        step             TEXT NOT NULL,
        position         BIGINT NOT NULL,
        status           TEXT NOT NULL,
        cache_key        TEXT,
        code_signature   TEXT NOT NULL,
        components       TEXT NOT NULL,
        reason           TEXT,
        error            TEXT,
        reused_execution BIGINT,
        started_at_us    BIGINT NOT NULL,
        duration_s       DOUBLE PRECISION NOT NULL,
        compared         TEXT
    );
    CREATE INDEX executions_by_key ON executions(cache_key, status);
    CREATE INDEX executions_by_step ON executions(step, status);
    CREATE INDEX executions_by_run ON executions(run_id, position);

    CREATE TABLE artifacts (
        id             BIGSERIAL PRIMARY KEY,
        execution_id   BIGINT NOT NULL REFERENCES executions(id),
        name           TEXT NOT NULL,
        position       BIGINT NOT NULL,
        content_hash   TEXT NOT NULL,
        size           BIGINT NOT NULL,
        type_name      TEXT NOT NULL,
        cacher         TEXT NOT NULL,
        cacher_version BIGINT NOT NULL,
        metadata       TEXT
    );
    CREATE INDEX artifacts_by_execution ON artifacts(execution_id, position);
    CREATE INDEX artifacts_by_hash ON artifacts(content_hash);

    CREATE TABLE inputs (
        execution_id       BIGINT NOT NULL REFERENCES executions(id),
        name               TEXT NOT NULL,
        position           BIGINT NOT NULL,
        content_hash       TEXT,
        producer_execution BIGINT
    );
    CREATE INDEX inputs_by_execution ON inputs(execution_id, position);
    CREATE INDEX inputs_by_hash ON inputs(content_hash);

    -- Single-flight claims across hosts: a row per claimed key, kept alive by heartbeats;
    -- an expired heartbeat frees the key (no process ids or file locks across hosts).
    CREATE TABLE leases (
        cache_key    TEXT PRIMARY KEY,
        run_id       TEXT NOT NULL,
        step         TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          BIGINT NOT NULL,
        owner        TEXT NOT NULL,
        heartbeat_us BIGINT NOT NULL
    );

    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE undecodable (
        execution_id BIGINT NOT NULL,
        output       TEXT NOT NULL,
        type_name    TEXT NOT NULL,
        message      TEXT NOT NULL,
        at_us        BIGINT NOT NULL,
        PRIMARY KEY (execution_id, output)
    );
    "#,
    // 1 -> 2: what SQLite's schemas 5 and 6 added (store transactions, `store/lease.rs`,
    // `store/gc.rs`), and the liveness of handles by advisory locks.
    //
    // - A cached execution is one row pointing at the execution whose artifact and input
    //   rows stand for its own (`outputs_of`); cache lookups only need the rows holding
    //   outputs, so the index on keys leaves pointing rows out and ends with `id` (the
    //   newest one is its last entry for the key).
    // - A lease names the `running` execution row its holder recorded with the claim, and
    //   when it was claimed. Heartbeats and claims are written in the server's clock, so
    //   hosts with skewed clocks agree on when a lease expires.
    // - `holds` pins a blob a lease is writing from before the blob is in place until the
    //   lease commits or ends; `condemned` says since when a blob has been unreferenced.
    // - `damaged_blobs`: blobs found missing or corrupt on load. A cache hit trusts the rows
    //   and makes no request to the artifact store, so a load that finds the bytes gone says
    //   so here, and the next lookup of a key whose output it is executes the step again.
    //   A commit that writes the blob again takes it off the list.
    // - `seq` orders runs that started in the same microsecond as they were recorded (what
    //   SQLite's rowid does).
    // - Liveness: each handle holds a session-level advisory lock keyed by
    //   `pipeline_owner_key(<its owner token>)` on a connection of its own, which the server
    //   releases when that session ends, however its process ended. `pipeline_live_owners`
    //   lists the keys held in this database: an owner whose key is not there is dead.
    r#"
    ALTER TABLE runs ADD COLUMN seq BIGSERIAL;

    ALTER TABLE executions ADD COLUMN outputs_of BIGINT;
    CREATE INDEX executions_by_outputs_of ON executions(outputs_of)
        WHERE outputs_of IS NOT NULL;
    DROP INDEX executions_by_key;
    CREATE INDEX executions_by_key ON executions(cache_key, id)
        WHERE outputs_of IS NULL AND status IN ('executed', 'cached');

    ALTER TABLE leases ADD COLUMN execution_id BIGINT;
    ALTER TABLE leases ADD COLUMN claimed_at_us BIGINT;
    CREATE INDEX leases_by_owner ON leases(owner);

    CREATE TABLE holds (
        hash      TEXT NOT NULL,
        cache_key TEXT NOT NULL,
        owner     TEXT NOT NULL,
        at_us     BIGINT NOT NULL
    );
    CREATE INDEX holds_by_hash ON holds(hash);
    CREATE INDEX holds_by_lease ON holds(cache_key, owner);

    CREATE TABLE condemned (
        hash     TEXT PRIMARY KEY,
        since_us BIGINT NOT NULL
    );

    CREATE TABLE damaged_blobs (
        hash   TEXT PRIMARY KEY,
        damage TEXT NOT NULL,               -- missing | corrupt
        at_us  BIGINT NOT NULL
    );

    CREATE FUNCTION pipeline_owner_key(owner TEXT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT ('x' || substr(md5(owner), 1, 16))::bit(64)::bigint $$;

    CREATE VIEW pipeline_live_owners AS
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS owner_key
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    "#,
    // 2 -> 3: a parameter's stored form (bincode), a blob named by its content hash on the
    // input row (SQLite's 7 -> 8).
    r#"
    ALTER TABLE inputs ADD COLUMN value_blob TEXT;
    "#,
    // 3 -> 4: an execution's attempts, metadata and metrics, as JSON (SQLite's 8 -> 9).
    r#"
    ALTER TABLE executions ADD COLUMN attempts TEXT;
    ALTER TABLE executions ADD COLUMN metadata TEXT;
    ALTER TABLE executions ADD COLUMN metrics TEXT;
    "#,
];

/// The schema version this build writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What a database holds, as far as the schema goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaState {
    /// At the version this build writes.
    Current,
}

pub(crate) enum SchemaError {
    Newer {
        found: i64,
        supported: i64,
    },
    Foreign(String),
    /// A read-only open found no store (nothing was created).
    Empty,
    /// A read-only open found an older schema, which it may not upgrade.
    Older {
        found: i64,
        supported: i64,
    },
    Db(postgres::Error),
}

impl From<postgres::Error> for SchemaError {
    fn from(e: postgres::Error) -> Self {
        SchemaError::Db(e)
    }
}

/// Brings the database to [`current_version`] in one transaction per call, under an
/// advisory lock: a second process waits, then finds the work done.
pub(crate) fn migrate(client: &mut postgres::Client) -> Result<SchemaState, SchemaError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let found = version(&mut tx)?;
    let supported = current_version();
    match found {
        Some(v) if v > supported => {
            return Err(SchemaError::Newer {
                found: v,
                supported,
            });
        }
        Some(v) if v == supported => return Ok(SchemaState::Current),
        _ => {}
    }
    if found.is_none() {
        // A database without our marker must not already hold tables we would create.
        let clash: Option<String> = tx
            .query_opt(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema()
                   AND table_name IN ('runs', 'executions', 'artifacts', 'inputs', 'leases')
                 LIMIT 1",
                &[],
            )?
            .map(|r| r.get(0));
        if let Some(table) = clash {
            return Err(SchemaError::Foreign(format!(
                "its schema already has a table `{table}` but no `{MARKER}` table; use another database or schema for the store"
            )));
        }
        tx.batch_execute(&format!(
            "CREATE TABLE {MARKER} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        ))?;
        tx.execute(
            &format!("INSERT INTO {MARKER} (key, value) VALUES ($1, $2)"),
            &[&APPLICATION.0, &APPLICATION.1],
        )?;
    }
    let from = found.unwrap_or(0);
    for migration in &MIGRATIONS[from as usize..] {
        tx.batch_execute(migration)?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {MARKER} (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ),
        &[&supported.to_string()],
    )?;
    tx.commit()?;
    Ok(SchemaState::Current)
}

/// Checks, for a read-only open, that the database holds a store at [`current_version`],
/// changing nothing: no store, an older or a newer schema are errors.
pub(crate) fn check(client: &mut postgres::Client) -> Result<SchemaState, SchemaError> {
    let supported = current_version();
    match version(client)? {
        None => Err(SchemaError::Empty),
        Some(found) if found > supported => Err(SchemaError::Newer { found, supported }),
        Some(found) if found < supported => Err(SchemaError::Older { found, supported }),
        Some(_) => Ok(SchemaState::Current),
    }
}

/// The stored schema version; `None` for a database without a store.
pub(crate) fn version(client: &mut impl GenericClient) -> Result<Option<i64>, SchemaError> {
    let has_marker: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = $1)",
            &[&MARKER],
        )?
        .get(0);
    if !has_marker {
        return Ok(None);
    }
    let rows = client.query(&format!("SELECT key, value FROM {MARKER}"), &[])?;
    let get = |key: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == key)
            .map(|r| r.get::<_, String>(1))
    };
    if get(APPLICATION.0).as_deref() != Some(APPLICATION.1) {
        return Err(SchemaError::Foreign(format!(
            "its `{MARKER}` table was not written by cached-pipeline"
        )));
    }
    match get("schema_version") {
        None => Ok(Some(0)),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| SchemaError::Foreign(format!("its schema version `{v}` is not a number"))),
    }
}

/// Sets the stored schema version (tests of a newer store).
#[cfg(test)]
pub(crate) fn set_version(
    client: &mut postgres::Client,
    version: i64,
) -> Result<(), postgres::Error> {
    client.execute(
        &format!("UPDATE {MARKER} SET value = $1 WHERE key = 'schema_version'"),
        &[&version.to_string()],
    )?;
    Ok(())
}
