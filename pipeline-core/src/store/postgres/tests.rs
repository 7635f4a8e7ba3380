//! Against a real PostgreSQL server: `PIPELINE_TEST_POSTGRES` names one whose user may
//! create databases (`scripts/test.sh` starts one). Each test works in a database of its
//! own. Without the variable these tests say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing server a failure.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::config::{MetadataLocation, StoreConfig};

/// A fresh, empty database on the test server, as a URL with the server's credentials.
fn fresh_database(test: &str) -> Option<PostgresUrl> {
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
        MetadataLocation::Postgres(url) => Some(url.clone()),
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
    let tables: i64 = conn
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 8, "marker + 7 tables");
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
        shown.contains("refused the user name or password"),
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
