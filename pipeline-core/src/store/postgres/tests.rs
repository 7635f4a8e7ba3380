//! Against a real PostgreSQL server: `PIPELINE_TEST_POSTGRES` names one whose user may
//! create databases (`scripts/test.sh` starts one). Each test works in a database of its
//! own. Without the variable these tests say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing server a failure.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{MetadataLocation, StoreConfig};
use crate::key::Hash128;
use crate::store::artifacts::{ArtifactStore, LocalArtifacts};
use crate::store::contract::{self, claim, executed, start, step, MetadataFixture};
use crate::store::{Begin, ContentHash, Damage, MetadataStore, RunStatus};
use crate::StepStatus;

/// A database of the test server that one test works in, dropped when the test ends.
/// Derefs to its URL (with the server's credentials).
struct TestDatabase {
    url: PostgresUrl,
    name: String,
    server: String,
}

impl std::ops::Deref for TestDatabase {
    type Target = PostgresUrl;

    fn deref(&self) -> &PostgresUrl {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A fresh, empty database on the test server.
fn fresh_database(test: &str) -> Option<TestDatabase> {
    let Some(server) = std::env::var("PIPELINE_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{test}: PIPELINE_TEST_POSTGRES is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start PostgreSQL with scripts/services.sh");
        }
        eprintln!("{test}: skipped, PIPELINE_TEST_POSTGRES is not set (scripts/test.sh starts PostgreSQL and sets it)");
        return None;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "pipeline_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        test.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
    );
    let mut admin = postgres::Client::connect(&server, NoTls).expect("test server");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .expect("drop old test database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create test database");
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    let config = StoreConfig::new(url.as_str(), Some("s3://unused-bucket")).unwrap();
    match config.metadata() {
        MetadataLocation::Postgres(url) => Some(TestDatabase {
            url: url.clone(),
            name,
            server,
        }),
        other => panic!("not a postgres URL: {other}"),
    }
}

fn with_password(url: &PostgresUrl, password: &str) -> PostgresUrl {
    let mut raw = url::Url::parse(&url.expose()).unwrap();
    raw.set_password(Some(password)).unwrap();
    let config = StoreConfig::new(raw.as_str(), Some("s3://unused-bucket")).unwrap();
    match config.metadata() {
        MetadataLocation::Postgres(url) => url.clone(),
        other => panic!("not a postgres URL: {other}"),
    }
}

#[test]
fn a_database_of_schema_2_migrates_to_the_current_schema_and_keeps_its_rows() {
    let Some(url) = fresh_database("schema2") else {
        return;
    };
    {
        let db = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap();
        let mut conn = db.conn().unwrap();
        // Schema 2 is schema 3 without `inputs.value_blob`; schema 4 added the executions'
        // `attempts`, `metadata` and `metrics`.
        conn.batch_execute(
            "INSERT INTO runs(id, pipeline, name, status, started_at_us) \
                 VALUES ('r', 'p', 'r', 'completed', 1);
             ALTER TABLE inputs DROP COLUMN value_blob;
             ALTER TABLE executions DROP COLUMN attempts;
             ALTER TABLE executions DROP COLUMN metadata;
             ALTER TABLE executions DROP COLUMN metrics;
             UPDATE pipeline_store SET value = '2' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let db = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap();
    let mut conn = db.conn().unwrap();
    let version: String = conn
        .query_one(
            "SELECT value FROM pipeline_store WHERE key = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "4");
    assert_eq!(schema::current_version(), 4);
    let columns: i64 = conn
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() \
               AND ((table_name = 'inputs' AND column_name = 'value_blob') \
                 OR (table_name = 'executions' \
                     AND column_name IN ('attempts', 'metadata', 'metrics')))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(columns, 4);
    let runs: i64 = conn
        .query_one("SELECT count(*) FROM runs WHERE id = 'r'", &[])
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "the rows of schema 2 are kept");
}

#[test]
fn a_fresh_database_is_migrated_once_even_by_concurrent_openers() {
    let Some(url) = fresh_database("fresh") else {
        return;
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Postgres::connect(&url, CONNECT_TIMEOUT).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("every opener succeeds");
    }
    let db = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap();
    let mut conn = db.conn().unwrap();
    let version: String = conn
        .query_one(
            "SELECT value FROM pipeline_store WHERE key = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, schema::current_version().to_string());
    let tables: Vec<String> = conn
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY table_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "artifacts",
            "condemned",
            "damaged_blobs",
            "executions",
            "holds",
            "inputs",
            "leases",
            "pipeline_live_owners",
            "pipeline_store",
            "runs",
            "settings",
            "undecodable"
        ],
        "the marker, the tables and the view of live owners, each once"
    );
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_shown() {
    let Some(url) = fresh_database("password") else {
        return;
    };
    let wrong = with_password(&url, "not-the-password-1234");
    let e = Postgres::connect(&wrong, CONNECT_TIMEOUT).unwrap_err();
    let shown = format!(
        "{e} / {e:?} / {:?}",
        std::error::Error::source(&e).map(|s| s.to_string())
    );
    assert!(matches!(e, Error::Remote { .. }), "{shown}");
    assert!(
        shown.contains("password authentication failed for user")
            && shown.contains("the password given in the metadata URL")
            && shown.contains("set the password in the URL, PGPASSWORD or ~/.pgpass"),
        "{shown}"
    );
    assert!(!shown.contains("not-the-password-1234"), "{shown}");
    if url.has_password() {
        let right = url.expose();
        let right = url::Url::parse(&right).unwrap();
        let right = right.password().unwrap();
        assert!(!shown.contains(right), "the real password leaked: {shown}");
    }
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    let Some(url) = fresh_database("unreachable") else {
        return;
    };
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut raw = url::Url::parse(&url.expose()).unwrap();
    raw.set_port(Some(port)).unwrap();
    let refused = StoreConfig::new(raw.as_str(), Some("s3://unused-bucket")).unwrap();
    let MetadataLocation::Postgres(refused) = refused.metadata() else {
        unreachable!()
    };
    let e = Postgres::connect(refused, Duration::from_secs(2)).unwrap_err();
    assert!(
        e.to_string().contains("cannot reach the metadata database"),
        "{e}"
    );

    // A server that accepts the connection and then says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    raw.set_port(Some(silent.local_addr().unwrap().port()))
        .unwrap();
    let quiet = StoreConfig::new(raw.as_str(), Some("s3://unused-bucket")).unwrap();
    let MetadataLocation::Postgres(quiet) = quiet.metadata() else {
        unreachable!()
    };
    let started = Instant::now();
    let e = Postgres::connect(quiet, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("did not answer within 1s"), "{e}");
    // Generous: only that it returned, not how fast (no timing assertions).
    assert!(started.elapsed() < Duration::from_secs(60));
    drop(silent);
}

#[test]
fn a_missing_database_is_named() {
    let Some(url) = fresh_database("missing") else {
        return;
    };
    let mut raw = url::Url::parse(&url.expose()).unwrap();
    raw.set_path("pipeline_no_such_database");
    let config = StoreConfig::new(raw.as_str(), Some("s3://unused-bucket")).unwrap();
    let MetadataLocation::Postgres(missing) = config.metadata() else {
        unreachable!()
    };
    let e = Postgres::connect(missing, CONNECT_TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("the database does not exist"), "{e}");
}

#[test]
fn a_database_of_a_newer_schema_is_refused_and_left_alone() {
    let Some(url) = fresh_database("newer") else {
        return;
    };
    let db = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap();
    let newer = schema::current_version() + 1;
    schema::set_version(&mut db.conn().unwrap(), newer).unwrap();
    let e = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap_err();
    match &e {
        Error::StoreTooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (newer, schema::current_version()))
        }
        other => panic!("expected StoreTooNew, got {other}"),
    }
    let version: String = db
        .conn()
        .unwrap()
        .query_one(
            "SELECT value FROM pipeline_store WHERE key = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, newer.to_string(), "not migrated backwards");
}

#[test]
fn a_foreign_database_is_not_taken_over() {
    let Some(url) = fresh_database("foreign") else {
        return;
    };
    let mut client = postgres::Client::connect(&url.expose(), NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT); INSERT INTO runs VALUES ('theirs', 'them')")
        .unwrap();
    let e = Postgres::connect(&url, CONNECT_TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "their table is untouched");
}

// --- PostgresMetadata -----------------------------------------------------------------------

/// A lease TTL no test outlives: a takeover under it proves a holder dead, not expired.
const LONG_TTL: Duration = Duration::from_secs(3600);

/// A fresh database holding a store, with blobs in a temporary folder.
struct PgFixture {
    db: TestDatabase,
    ttl: Duration,
    blobs: LocalArtifacts,
    _dir: tempfile::TempDir,
}

impl PgFixture {
    /// A fixture on a fresh database for `test`; `None` when the tests have no server.
    fn fresh(test: &str, ttl: Duration) -> Option<PgFixture> {
        fresh_database(test).map(|db| PgFixture::new(db, ttl))
    }

    fn new(db: TestDatabase, ttl: Duration) -> PgFixture {
        let dir = tempfile::tempdir().unwrap();
        PgFixture {
            db,
            ttl,
            blobs: LocalArtifacts::new(dir.path(), ""),
            _dir: dir,
        }
    }

    fn connect(&self) -> PostgresMetadata {
        PostgresMetadata::connect(&self.db, self.ttl).expect("connect")
    }
}

impl MetadataFixture for PgFixture {
    fn open(&self) -> Arc<dyn MetadataStore> {
        Arc::new(self.connect())
    }

    fn put_blob(&self, bytes: &[u8]) -> (Hash128, u64) {
        let mut put = self.blobs.put(ContentHash::Xxh3).unwrap();
        put.write_all(bytes).unwrap();
        put.commit().unwrap()
    }
}

#[test]
fn postgres_passes_the_metadata_contract() {
    if fresh_database("contract").is_none() {
        return;
    }
    contract::metadata(|| PgFixture::new(fresh_database("contract").unwrap(), LONG_TTL));
}

/// Environment of [`holder_process`]: the database URL, the cache key and the run id.
const HOLDER_ENV: [&str; 3] = [
    "PIPELINE_TEST_PG_HOLDER_URL",
    "PIPELINE_TEST_PG_HOLDER_KEY",
    "PIPELINE_TEST_PG_HOLDER_RUN",
];

/// Not a check of its own: the holder process of
/// `a_killed_holder_is_taken_over_at_once_and_a_live_one_stays_busy`, which runs this test
/// binary filtered to this function with [`HOLDER_ENV`] set. It claims the key, prints
/// `holder claimed <owner token>` and sleeps until it is killed. Without those variables (every
/// ordinary test run) it returns at once.
#[test]
fn holder_process() {
    let [Ok(url), Ok(key), Ok(run)] = HOLDER_ENV.map(std::env::var) else {
        return;
    };
    let config = StoreConfig::new(&url, Some("s3://unused-bucket")).unwrap();
    let MetadataLocation::Postgres(url) = config.metadata() else {
        unreachable!()
    };
    let handle = Arc::new(PostgresMetadata::connect(url, LONG_TTL).unwrap());
    start(&*handle, &run);
    let lease = claim(&*handle, &run, key.parse().unwrap());
    println!("holder claimed {}", handle.owner());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(lease);
}

/// A child process holding a claim; killed (`SIGKILL`) on drop at the latest.
struct HolderProcess {
    child: Child,
    run: String,
    owner: String,
}

impl HolderProcess {
    fn spawn(db: &TestDatabase, key: u128) -> HolderProcess {
        let run = format!("holder{key}");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::postgres::tests::holder_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV[0], db.expose())
            .env(HOLDER_ENV[1], key.to_string())
            .env(HOLDER_ENV[2], &run)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the holder process");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let owner = stdout
            .lines()
            .map_while(std::result::Result::ok)
            // After libtest's `test .. ... ` on the same line.
            .find_map(|line| {
                line.split_once("holder claimed ")
                    .map(|(_, o)| o.to_owned())
            })
            .expect("the holder process ended before it claimed its key");
        HolderProcess { child, run, owner }
    }

    /// `kill -9`, then waits until the server has ended its session (and so released its
    /// liveness lock), as it does when the socket closes.
    fn kill(&mut self, admin: &mut postgres::Client) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let started = Instant::now();
        while admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pipeline_live_owners \
                 WHERE owner_key = pipeline_owner_key($1))",
                &[&self.owner],
            )
            .unwrap()
            .get::<_, bool>(0)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server kept the session of a killed process"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HolderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn busy_with(handle: &dyn MetadataStore, run: &str, key: u128) -> crate::store::Holder {
    match handle.begin_step(&step(run, key)).expect("begin_step") {
        Begin::Busy(holder) => holder,
        other => panic!("expected Busy, got {other:?}"),
    }
}

#[test]
fn a_killed_holder_is_taken_over_at_once_and_a_live_one_stays_busy() {
    let Some(fixture) = PgFixture::fresh("killed", LONG_TTL) else {
        return;
    };
    let mut admin = postgres::Client::connect(&fixture.db.expose(), NoTls).unwrap();
    let mut taken = HolderProcess::spawn(&fixture.db, 21);
    let live = HolderProcess::spawn(&fixture.db, 22);
    let mut recovered = HolderProcess::spawn(&fixture.db, 23);
    let handle = fixture.connect();
    start(&handle, "parent");
    let holder = busy_with(&handle, "parent", 21);
    assert_eq!(
        (holder.run_id.as_str(), holder.pid),
        (taken.run.as_str(), taken.child.id())
    );
    assert_eq!(holder.owner, taken.owner);
    let live_holder = busy_with(&handle, "parent", 22);
    assert_eq!(
        handle.still_held(&[(Hash128(21), &holder)]).unwrap(),
        [true]
    );

    taken.kill(&mut admin);
    assert_eq!(
        handle
            .still_held(&[(Hash128(21), &holder), (Hash128(22), &live_holder)])
            .unwrap(),
        [false, true],
        "a dead holder no longer holds its key; a live one does"
    );
    // At once: the lease's heartbeat is fresh and its TTL an hour.
    let lease = match handle.begin_step(&step("parent", 21)).expect("begin_step") {
        Begin::Claimed { lease, .. } => lease,
        other => panic!("a dead holder's key must be taken over at once, got {other:?}"),
    };
    assert_eq!(handle.run(&taken.run).unwrap().status, RunStatus::Failed);
    assert_eq!(
        handle.run_steps(&taken.run).unwrap()[0].status,
        StepStatus::Failed,
        "the dead holder's running row fails"
    );
    assert_eq!(
        busy_with(&handle, "parent", 22).owner,
        live.owner,
        "a live holder keeps its key"
    );
    lease.commit(executed(&fixture, 21)).expect("commit");

    // A handle opening the store cleans up after a holder that died meanwhile.
    recovered.kill(&mut admin);
    let opened = fixture.connect();
    assert_eq!(
        opened.run(&recovered.run).unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(opened.run(&live.run).unwrap().status, RunStatus::Running);
    let leases: Vec<String> = admin
        .query("SELECT run_id FROM leases ORDER BY run_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        leases,
        std::slice::from_ref(&live.run),
        "only the live holder's lease is left"
    );
    drop(live);
}

#[test]
fn a_lease_expires_by_heartbeat_while_a_beating_one_stays_busy() {
    let ttl = Duration::from_secs(3);
    let Some(fixture) = PgFixture::fresh("expiry", ttl) else {
        return;
    };
    let (beating, silent, other) = (fixture.open(), fixture.open(), fixture.open());
    start(&*beating, "beating");
    start(&*silent, "silent");
    start(&*other, "other");
    let kept = claim(&*beating, "beating", 31);
    // A token stops its guard beating; the lease stays, and its handle stays alive.
    let token = claim(&*silent, "silent", 32).into_token();
    busy_with(&*other, "other", 32);
    std::thread::sleep(ttl * 2 + ttl / 3);
    assert_eq!(busy_with(&*other, "other", 31).run_id, "beating");
    match other.begin_step(&step("other", 32)).expect("begin_step") {
        Begin::Claimed { lease, .. } => drop(lease),
        other => panic!("a lease silent for its TTL must be taken over, got {other:?}"),
    }
    assert!(matches!(
        silent.adopt_lease(token),
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(
        other.run("silent").unwrap().status,
        RunStatus::Running,
        "its handle lives"
    );
    drop(kept);
}

#[test]
fn a_damaged_or_undecodable_output_is_executed_again() {
    let Some(fixture) = PgFixture::fresh("damaged", LONG_TTL) else {
        return;
    };
    let handle = fixture.connect();
    let decide = |run: &str| {
        start(&handle, run);
        handle.begin_step(&step(run, 41)).expect("begin_step")
    };
    let done = executed(&fixture, 41);
    let hash = done.outputs[0].hash;
    let Begin::Claimed { lease, .. } = decide("r1") else {
        panic!("a fresh key is claimed")
    };
    let first = lease.commit(done.clone()).unwrap();
    assert!(matches!(decide("r2"), Begin::Hit { reused, .. } if reused == first));

    handle.blob_damaged(hash, false).unwrap();
    let Begin::Claimed { lease, damaged } = decide("r3") else {
        panic!("a missing output is executed again")
    };
    assert_eq!(
        damaged,
        Some(Damage::Missing {
            output: "output".into()
        })
    );
    let second = lease.commit(done).unwrap();
    assert!(
        matches!(decide("r4"), Begin::Hit { reused, .. } if reused == second),
        "the commit that wrote the blob again clears the mark"
    );

    handle
        .undecodable(second, "output", "u32", "bad bytes")
        .unwrap();
    let Begin::Claimed { damaged, .. } = decide("r5") else {
        panic!("an undecodable output is executed again")
    };
    assert_eq!(
        damaged,
        Some(Damage::Undecodable {
            output: "output".into(),
            type_name: "u32".into()
        })
    );
}

/// Everything an error shows: its text, its debug form, and those of its sources.
fn shown(e: &Error) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

#[test]
fn no_credential_appears_in_errors_of_the_metadata_backend() {
    let Some(db) = fresh_database("credential") else {
        return;
    };
    let exposed = url::Url::parse(&db.expose()).unwrap();
    let Some(password) = exposed.password().map(str::to_owned) else {
        eprintln!("no_credential_appears_in_errors_of_the_metadata_backend: skipped, the test server's URL has no password");
        return;
    };
    let fixture = PgFixture::new(db, LONG_TTL);
    let mut admin = postgres::Client::connect(&fixture.db.expose(), NoTls).unwrap();
    let handle = fixture.connect();
    let mut errors: Vec<Error> = Vec::new();
    let debug = format!("{handle:?}");
    assert!(
        debug.contains("***") && !debug.contains(&password),
        "{debug}"
    );

    // A value this version does not know.
    admin
        .execute(
            "INSERT INTO runs(id, pipeline, name, status, started_at_us) \
             VALUES ('odd', 'p', 'odd', 'paused', 0)",
            &[],
        )
        .unwrap();
    let e = handle.runs(None).unwrap_err();
    assert!(matches!(e, Error::UnknownStoredValue { .. }), "{e}");
    errors.push(e);
    admin
        .execute("DELETE FROM runs WHERE id = 'odd'", &[])
        .unwrap();

    // A token no longer held.
    start(&handle, "r");
    let token = claim(&handle, "r", 51).into_token();
    handle.release_lease(&token).unwrap();
    errors.push(handle.adopt_lease(token).unwrap_err());

    // Requests the server refuses: the tables they need are gone.
    let lease = claim(&handle, "r", 52);
    admin.batch_execute("DROP TABLE leases, holds").unwrap();
    errors.extend(handle.begin_step(&step("r", 53)).err());
    errors.extend(handle.heartbeat().err());
    errors.extend(
        handle
            .still_held(&[(Hash128(52), &lease.lease().holder)])
            .err(),
    );
    errors.extend(handle.hold_blob(lease.lease(), Hash128(1)).err());
    errors.extend(handle.recover().err());
    errors.extend(
        handle
            .commit_lease(lease.lease(), &executed(&fixture, 52))
            .err(),
    );
    drop(lease);
    admin
        .batch_execute("DROP TABLE runs, artifacts, damaged_blobs CASCADE")
        .unwrap();
    errors.extend(handle.runs(None).err());
    errors.extend(
        handle
            .finish_run("r", RunStatus::Completed, Duration::ZERO)
            .err(),
    );
    errors.extend(handle.lineage(Hash128(1)).err());
    errors.extend(handle.execution(1).err());
    errors.extend(handle.blob_damaged(Hash128(1), true).err());
    assert_eq!(errors.len(), 13, "every call failed: {errors:?}");

    // A server that refuses new sessions of this database.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} CONNECTION LIMIT 0",
            fixture.db.name
        ))
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    errors.extend(handle.heartbeat().err());
    assert_eq!(errors.len(), 14, "the last call failed too");
    for e in &errors {
        let text = shown(e);
        assert!(!text.contains(&password), "the password leaked: {text}");
    }
    for e in errors.iter().filter(|e| matches!(e, Error::Remote { .. })) {
        assert!(
            shown(e).contains(":***@"),
            "names the store without its password: {e}"
        );
    }
}

/// `url` without its password.
fn without_password(url: &PostgresUrl) -> PostgresUrl {
    let mut raw = url::Url::parse(&url.expose()).unwrap();
    raw.set_password(None).unwrap();
    let config = StoreConfig::new(raw.as_str(), Some("s3://unused-bucket")).unwrap();
    match config.metadata() {
        MetadataLocation::Postgres(url) => url.clone(),
        other => panic!("not a postgres URL: {other}"),
    }
}

/// Opens `url` reading the variables `vars` give (and no others).
fn open_with(url: &PostgresUrl, vars: &[(&str, String)]) -> Result<Postgres> {
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    Postgres::open_with_env(url, CONNECT_TIMEOUT, Access::Write, &var).map(|(db, _)| db)
}

#[test]
fn a_url_without_a_password_takes_it_from_pgpassword_or_the_password_file() {
    let Some(db) = fresh_database("pgpass") else {
        return;
    };
    let exposed = url::Url::parse(&db.expose()).unwrap();
    let Some(password) = exposed.password().map(str::to_owned) else {
        eprintln!("a_url_without_a_password_takes_it_from_pgpassword_or_the_password_file: skipped, the test server's URL has no password");
        return;
    };
    let (user, port) = (
        exposed.username().to_string(),
        exposed.port().unwrap_or(5432),
    );
    let bare = without_password(&db);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().display().to_string();

    // None anywhere: the server's demand is named, with where a password goes.
    let e = open_with(&bare, &[("HOME", home.clone())]).unwrap_err();
    let text = shown(&e);
    assert!(
        text.contains(&format!("password authentication failed for user `{user}`"))
            && text.contains("none was given")
            && text.contains("set the password in the URL, PGPASSWORD or ~/.pgpass"),
        "{text}"
    );

    // PGPASSWORD, right and wrong.
    open_with(&bare, &[("PGPASSWORD", password.clone())]).expect("PGPASSWORD is used");
    let e = open_with(&bare, &[("PGPASSWORD", "not-the-password-5678".into())]).unwrap_err();
    let text = shown(&e);
    assert!(
        text.contains("password authentication failed") && text.contains("from PGPASSWORD"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password-5678") && !text.contains(&password),
        "{text}"
    );

    // A password file: the first matching line, `*` matching anything.
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    let lines = format!(
        "# host:port:database:user:password\n\
         127.0.0.1:{port}:*:someone-else:not-this-one\n\
         *:{port}:*:{user}:{escaped}\n"
    );
    let file = dir.path().join("pgpass");
    std::fs::write(&file, &lines).unwrap();
    let set_mode = |path: &std::path::Path, mode: u32| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (path, mode);
    };
    set_mode(&file, 0o600);
    let pgpassfile = [("PGPASSFILE", file.display().to_string())];
    open_with(&bare, &pgpassfile).expect("the password file named by PGPASSFILE is used");
    // ~/.pgpass when PGPASSFILE is not set.
    let dotfile = dir.path().join(".pgpass");
    std::fs::write(&dotfile, &lines).unwrap();
    set_mode(&dotfile, 0o600);
    open_with(&bare, &[("HOME", home.clone())]).expect("~/.pgpass is used");
    // A line that matches with a wrong password is named by its place.
    std::fs::write(&file, format!("*:*:*:{user}:not-the-password-5678\n")).unwrap();
    let e = open_with(&bare, &pgpassfile).unwrap_err();
    let text = shown(&e);
    assert!(
        text.contains(&format!("from {} line 1", file.display())),
        "{text}"
    );
    assert!(!text.contains("not-the-password-5678"), "{text}");
    // A file others may read is ignored, as libpq does, and the error says so.
    #[cfg(unix)]
    {
        std::fs::write(&file, &lines).unwrap();
        set_mode(&file, 0o644);
        let e = open_with(&bare, &pgpassfile).unwrap_err();
        let text = shown(&e);
        assert!(
            text.contains("was ignored") && text.contains("chmod 600"),
            "{text}"
        );
    }
    // The URL's password wins over both.
    let e = open_with(
        &with_password(&db, "not-the-password-5678"),
        &[("PGPASSWORD", password.clone())],
    )
    .unwrap_err();
    assert!(
        shown(&e).contains("the password given in the metadata URL"),
        "{e}"
    );
}

/// The tables and views of the database's current schema.
fn relations(client: &mut postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_read_only_open_creates_nothing_and_writes_nothing() {
    let Some(db) = fresh_database("readonly") else {
        return;
    };
    let mut admin = postgres::Client::connect(&db.expose(), NoTls).unwrap();

    // An empty database: no store, and none is made.
    let e = PostgresMetadata::connect_read_only(&db).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("holds no pipeline store") && text.contains("PIPELINE_METADATA"),
        "{text}"
    );
    assert!(
        !text.contains("PIPELINE_HOME"),
        "PIPELINE_METADATA wins over it: {text}"
    );
    let config = StoreConfig::new(&db.expose(), Some("s3://unused-bucket")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let options = crate::StoreOptions {
        read_only: true,
        local_dir: Some(home.path().to_path_buf()),
        ..crate::StoreOptions::default()
    };
    let e = crate::Store::connect_with(&config, options.clone()).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
    assert_eq!(relations(&mut admin), 0, "nothing was created");

    // A store: read, never written.
    let writer = PostgresMetadata::connect(&db, LONG_TTL).unwrap();
    start(&writer, "r1");
    let before = relations(&mut admin);
    let reader = PostgresMetadata::connect_read_only(&db).unwrap();
    assert_eq!(
        reader.runs(None).unwrap().len(),
        1,
        "a read-only handle reads the store"
    );
    let e = reader
        .begin_run(&crate::store::RunStart {
            id: "r2".into(),
            pipeline: "contract".into(),
            name: "r2-name".into(),
            started_at_us: crate::time::now_micros(),
        })
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("opened read-only"), "{e}");
    assert_eq!(writer.runs(None).unwrap().len(), 1, "nothing was written");
    assert_eq!(relations(&mut admin), before);
    let store = crate::Store::connect_with(&config, options).unwrap();
    assert_eq!(store.runs(None).unwrap().len(), 1);
    let e = store.pin("r1").unwrap_err();
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("postgres://") && text.contains("PIPELINE_METADATA"),
        "a remote store is named by its URL, and chosen by PIPELINE_METADATA: {text}"
    );

    // An older schema is not upgraded by a read-only open.
    schema::set_version(&mut admin, 1).unwrap();
    let e = PostgresMetadata::connect_read_only(&db).unwrap_err();
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    assert!(
        e.to_string().contains("upgrade its schema from version 1"),
        "{e}"
    );
}

#[test]
fn cached_rows_of_a_wave_go_in_one_statement_with_their_ids_in_order() {
    use crate::key::KeyComponents;
    use crate::store::metadata::Backend;
    use crate::store::{ExecutionRow, OutputsHolder};

    let Some(fixture) = PgFixture::fresh("batched", LONG_TTL) else {
        return;
    };
    let handle = fixture.connect();
    start(&handle, "r1");
    claim(&handle, "r1", 71)
        .commit(executed(&fixture, 71))
        .unwrap();
    let mut admin = postgres::Client::connect(&fixture.db.expose(), NoTls).unwrap();
    let holder = admin
        .query_one(
            "SELECT id, components FROM executions WHERE run_id = 'r1'",
            &[],
        )
        .unwrap();
    let (holder_id, stored): (i64, String) = (holder.get(0), holder.get(1));
    let same: KeyComponents = serde_json::from_str(&stored).unwrap();
    let other = KeyComponents {
        code_signature: "another signature".into(),
        ..same.clone()
    };
    start(&handle, "r2");
    let row = |name: &'static str, position: usize, components, status, outputs_of| ExecutionRow {
        details: Default::default(),
        run_id: "r2",
        name,
        step: "s",
        position,
        status,
        cache_key: Some(Hash128(71)),
        components,
        reason: Some("cached".into()),
        error: None,
        reused: Some(holder_id),
        compared: None,
        started_at_us: 1,
        duration: Duration::ZERO,
        outputs: vec![],
        inputs: vec![],
        outputs_of,
        lease_holder: None,
    };
    let points = Some(OutputsHolder {
        id: holder_id,
        fingerprint: None,
    });
    let rows = [
        row("a", 0, &same, StepStatus::Cached, points),
        row("b", 1, &other, StepStatus::Skipped, None),
        row("c", 2, &other, StepStatus::Cached, points),
        row("d", 3, &same, StepStatus::Cached, points),
    ];
    let ids = Backend::record(&handle, &rows).unwrap();
    assert_eq!(ids.len(), 4);
    for (id, row) in ids.iter().zip(&rows) {
        let got = admin
            .query_one(
                "SELECT name, position, status, outputs_of, components, reused_execution \
                 FROM executions WHERE id = $1",
                &[id],
            )
            .unwrap();
        assert_eq!(
            got.get::<_, &str>(0),
            row.name,
            "ids come back in the rows' order"
        );
        assert_eq!(got.get::<_, i64>(1), row.position as i64);
        assert_eq!(got.get::<_, &str>(2), row.status.as_str());
        assert_eq!(got.get::<_, Option<i64>>(3), row.outputs_of.map(|h| h.id));
        assert_eq!(got.get::<_, Option<i64>>(5), Some(holder_id));
        let components: &str = got.get(4);
        if row.outputs_of.is_some() && std::ptr::eq(row.components, &same) {
            assert_eq!(
                components, "",
                "the holder's components are not stored twice"
            );
        } else {
            assert_eq!(
                serde_json::from_str::<KeyComponents>(components).unwrap(),
                *row.components
            );
        }
    }
    assert!(ids[0] < ids[2] && ids[2] < ids[3], "{ids:?}");
    // What was recorded reads back as the run's steps.
    let steps = handle.run_steps("r2").unwrap();
    assert_eq!(steps.len(), 4);
}
