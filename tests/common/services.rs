//! The real services the remote-backend tests use, shared by `tests/postgres_store.rs` and
//! `pipeline-cli/tests/postgres.rs`: `PIPELINE_TEST_POSTGRES` (a server whose user may
//! create databases) and `PIPELINE_TEST_S3` (a bucket and prefix, with the `AWS_*`
//! variables); `scripts/services.sh` starts both. Without them a test says so and passes,
//! unless `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing service a failure.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The value of a service variable, or `None` (after saying so) when it is unset and
/// services are not required.
pub fn service(var: &str, test: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(v) => Some(v),
        None if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{test}: {var} is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start the services with scripts/services.sh")
        }
        None => {
            eprintln!("{test}: skipped, {var} is not set (scripts/test.sh starts the services and sets it)");
            None
        }
    }
}

/// A database of the test server that one test works in, dropped when the test ends.
pub struct TestDatabase {
    /// Its URL, with the server's credentials.
    pub url: String,
    name: String,
    server: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

pub fn fresh_database(test: &str) -> Option<TestDatabase> {
    let server = service("PIPELINE_TEST_POSTGRES", test)?;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "pipeline_store_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        test.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
    );
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create test database");
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    Some(TestDatabase {
        url: url.into(),
        name,
        server,
    })
}

/// A prefix of the test bucket no other test or run uses.
pub fn fresh_prefix(test: &str) -> Option<String> {
    let bucket = service("PIPELINE_TEST_S3", test)?;
    Some(format!(
        "{}/{test}-{}-{}",
        bucket.trim_end_matches('/'),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}
