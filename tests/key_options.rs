//! The step options that act on the cache key: `cache_ignore` (parameters left out of the
//! key), `cache_expires` (an old execution is a miss that says so, on SQLite and
//! PostgreSQL) and `secret` (in the key by hash, never stored or shown).

mod common;
#[path = "common/services.rs"]
mod services;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::temp_store;
use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::{Error, InputComponent, Reason};

// ---- cache_ignore ----------------------------------------------------------------------

#[step]
fn numbers(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

#[step(cache_ignore = [threads, verbose])]
fn weigh(xs: &[u32], rate: f64, threads: u32, verbose: bool) -> f64 {
    if verbose {
        eprintln!("weighing on {threads} threads");
    }
    xs.iter().map(|x| f64::from(*x) * rate).sum()
}

#[pipeline]
fn weighing(rate: f64, threads: u32, verbose: bool) -> Artifact<f64> {
    let xs = numbers(4);
    weigh(&xs, rate, threads, verbose)
}

#[test]
fn ignored_parameters_leave_the_key_and_never_explain_a_miss() {
    let (_dir, store) = temp_store();
    let first = weighing(0.5, 4, false).store(store.clone()).run().unwrap();
    assert_eq!(first.step("weigh").unwrap().status(), StepStatus::Executed);

    // Other threads and verbosity: the same key, a hit.
    let other = weighing(0.5, 16, true).store(store.clone()).run().unwrap();
    let weigh = other.step("weigh").unwrap();
    assert_eq!(weigh.status(), StepStatus::Cached);
    assert_eq!(weigh.cache_key(), first.step("weigh").unwrap().cache_key());
    assert_eq!(other.output().load().unwrap(), 5.0);

    // A kept parameter changes with an ignored one: only the kept one is the reason.
    let changed = weighing(1.0, 2, false).store(store.clone()).run().unwrap();
    let weigh = changed.step("weigh").unwrap();
    assert_eq!(weigh.status(), StepStatus::Executed);
    assert_eq!(
        weigh.reason(),
        &Reason::ParameterChanged {
            name: "rate".into(),
            old: "0.5".into(),
            new: "1.0".into(),
        }
    );
    assert_eq!(
        weigh.reason().to_string(),
        "parameter `rate` changed (0.5 -> 1.0)"
    );

    // The ignored values are recorded, flagged, for lineage; `explain` and `diff` agree
    // that only `rate` changed.
    let record = store
        .run_steps(changed.id())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "weigh")
        .unwrap();
    let threads = record
        .components
        .inputs
        .iter()
        .find(|i| i.name() == "threads")
        .unwrap();
    assert!(
        matches!(threads, InputComponent::Parameter { ignored: true, value, .. } if *value == serde_json::json!(2)),
        "{threads:?}"
    );
    assert!(!threads.in_key());
    let cmp = store.compare_runs(first.id(), changed.id()).unwrap();
    let step = cmp.steps.iter().find(|s| s.name == "weigh").unwrap();
    assert_eq!(step.changes.len(), 1, "{:?}", step.changes);
    assert!(matches!(&step.changes[0], Reason::ParameterChanged { name, .. } if name == "rate"));
}

#[test]
fn steps_without_the_options_keep_their_keys() {
    // `numbers` uses none of the new options: its key is computed as before (the key
    // format test in `pipeline-core/src/key` pins the encoding itself).
    let (_dir, store) = temp_store();
    let run = weighing(0.5, 4, false).store(store.clone()).run().unwrap();
    let record = store
        .run_steps(run.id())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "numbers")
        .unwrap();
    let json = serde_json::to_string(&record.components).unwrap();
    assert!(
        !json.contains("ignored") && !json.contains("secret"),
        "{json}"
    );
    assert_eq!(
        Some(record.components.cache_key()),
        run.step("numbers").unwrap().cache_key()
    );
}

// ---- cache_expires ---------------------------------------------------------------------

static STAMPS: AtomicUsize = AtomicUsize::new(0);

#[step(cache_expires = "7d")]
fn stamp(day: u32) -> u32 {
    STAMPS.fetch_add(1, Ordering::SeqCst);
    day * 10
}

#[step]
fn echo(day: u32) -> u32 {
    day
}

#[pipeline]
fn stamping(day: u32) -> (Artifact<u32>, Artifact<u32>) {
    (stamp(day), echo(day))
}

/// Moves every execution recorded in the SQLite store at `dir` `days` days into the past.
fn backdate_sqlite(dir: &Path, days: i64) {
    let db = rusqlite::Connection::open(dir.join("metadata.sqlite")).unwrap();
    db.execute(
        "UPDATE executions SET started_at_us = started_at_us - ?1",
        [days * 86_400_000_000],
    )
    .unwrap();
}

fn status(run: &Run<(Artifact<u32>, Artifact<u32>)>, step: &str) -> StepStatus {
    run.step(step).unwrap().status()
}

#[test]
fn an_expired_execution_is_a_miss_that_says_so_and_its_new_row_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let p = stamping(3).store_path(&path);
    let first = p.run().unwrap();
    assert_eq!(status(&first, "stamp"), StepStatus::Executed);
    // Fresh: a hit.
    let hit = p.run().unwrap();
    assert_eq!(status(&hit, "stamp"), StepStatus::Cached);

    backdate_sqlite(&path, 8);
    let expired = p.run().unwrap();
    let step = expired.step("stamp").unwrap();
    assert_eq!(step.status(), StepStatus::Executed);
    assert_eq!(
        step.reason().to_string(),
        "cached execution expired (produced 8d ago, expires after 7d)"
    );
    assert!(matches!(
        step.reason(),
        Reason::CacheExpired { expires_after, .. } if *expires_after == Duration::from_secs(7 * 86_400)
    ));
    // Expiry is not in the key: the same key executed again.
    assert_eq!(step.cache_key(), first.step("stamp").unwrap().cache_key());
    // A step without expiry keeps its 8-day-old entry.
    assert_eq!(status(&expired, "echo"), StepStatus::Cached);
    // The store records the same reason.
    let record = Store::open(&path)
        .unwrap()
        .run_steps(expired.id())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "stamp")
        .unwrap();
    assert_eq!(record.reason, Some(step.reason().to_string()));

    // The new execution is the newest with that key: the next run reuses it.
    let again = p.run().unwrap();
    assert_eq!(status(&again, "stamp"), StepStatus::Cached);
    assert_eq!(again.output().0.load().unwrap(), 30);
}

#[test]
fn run_and_step_settings_override_the_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let p = stamping(4).store_path(&path);
    p.run().unwrap();
    backdate_sqlite(&path, 2);

    // The run-level setting replaces the step's 7 days, and applies to `echo` too.
    let hour = p
        .clone()
        .cache_expires(Duration::from_secs(3_600))
        .run()
        .unwrap();
    for name in ["stamp", "echo"] {
        let step = hour.step(name).unwrap();
        assert_eq!(step.status(), StepStatus::Executed, "{name}");
        assert_eq!(
            step.reason().to_string(),
            "cached execution expired (produced 2d ago, expires after 1h)"
        );
    }
    backdate_sqlite(&path, 40);

    // Per step, by name: beats the run's setting.
    let run = p
        .clone()
        .cache_expires(Duration::from_secs(60))
        .step_cache_expires("stamp", Duration::from_secs(90 * 86_400))
        .run()
        .unwrap();
    assert_eq!(status(&run, "stamp"), StepStatus::Cached);
    assert_eq!(status(&run, "echo"), StepStatus::Executed);

    // A name the pipeline does not have is an error, and nothing runs.
    let err = p
        .clone()
        .step_cache_expires("stomp", Duration::from_secs(1))
        .run()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::UnknownStep { .. }), "{err}");
    assert!(err.to_string().contains("stomp"), "{err}");
}

#[test]
fn a_short_expiry_expires_while_waiting() {
    // No backdating: a one-second expiry and a pause. Only statuses are asserted.
    let (_dir, store) = temp_store();
    let p = stamping(5)
        .store(store.clone())
        .step_cache_expires("stamp", Duration::from_secs(1));
    p.run().unwrap();
    assert_eq!(status(&p.run().unwrap(), "stamp"), StepStatus::Cached);
    std::thread::sleep(Duration::from_millis(1_300));
    let run = p.run().unwrap();
    let step = run.step("stamp").unwrap();
    assert_eq!(step.status(), StepStatus::Executed);
    assert!(
        matches!(step.reason(), Reason::CacheExpired { age, .. } if *age > Duration::from_secs(1)),
        "{}",
        step.reason()
    );
}

#[test]
fn expiry_applies_on_postgres() {
    let Some(db) = services::fresh_database("expiry_applies_on_postgres") else {
        return;
    };
    let blobs = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&blobs.path().display().to_string())).unwrap();
    let store = Store::connect(&config).unwrap();
    let p = stamping(6).store(store.clone());
    let first = p.run().unwrap();
    assert_eq!(status(&first, "stamp"), StepStatus::Executed);
    assert_eq!(status(&p.run().unwrap(), "stamp"), StepStatus::Cached);

    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    admin
        .execute(
            "UPDATE executions SET started_at_us = started_at_us - $1",
            &[&(8i64 * 86_400_000_000)],
        )
        .unwrap();
    let expired = p.run().unwrap();
    let step = expired.step("stamp").unwrap();
    assert_eq!(step.status(), StepStatus::Executed);
    assert_eq!(
        step.reason().to_string(),
        "cached execution expired (produced 8d ago, expires after 7d)"
    );
    assert_eq!(status(&expired, "echo"), StepStatus::Cached);
    assert_eq!(status(&p.run().unwrap(), "stamp"), StepStatus::Cached);
}

// ---- secret ----------------------------------------------------------------------------

/// The value no record, blob or output may ever hold.
const TOKEN: &str = "tok-5f3c9e71-never-stored";

#[step(secret = [token])]
fn fetch(url: String, token: String) -> usize {
    url.len() + token.len()
}

#[step]
fn double(n: &usize) -> usize {
    n * 2
}

#[pipeline]
fn fetching(url: &str, token: &str) -> Artifact<usize> {
    let n = fetch(url.to_string(), token.to_string());
    double(&n)
}

/// Every file under `dir`, read whole, that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn a_secret_is_in_the_key_but_never_stored_or_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let p = fetching("https://example.org", TOKEN).store_path(&path);
    let first = p.run().unwrap();
    assert_eq!(first.output().load().unwrap(), 2 * (19 + TOKEN.len()));
    // Same secret: a hit. Another secret: a miss that names no value.
    assert_eq!(
        p.run().unwrap().step("fetch").unwrap().status(),
        StepStatus::Cached
    );
    let other = fetching("https://example.org", "another-token")
        .store_path(&path)
        .run()
        .unwrap();
    let step = other.step("fetch").unwrap();
    assert_eq!(step.status(), StepStatus::Executed);
    assert_eq!(
        step.reason(),
        &Reason::SecretChanged {
            name: "token".into()
        }
    );
    assert_eq!(
        step.reason().to_string(),
        "parameter `token` changed (<secret, changed>)"
    );
    assert_ne!(step.cache_key(), first.step("fetch").unwrap().cache_key());

    // What the store records: `<secret>` and the hash.
    let store = Store::open(&path).unwrap();
    let record = store
        .run_steps(first.id())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "fetch")
        .unwrap();
    assert_eq!(
        record.parameters.get("token"),
        Some(&serde_json::json!("<secret>"))
    );
    let token = record
        .components
        .inputs
        .iter()
        .find(|i| i.name() == "token")
        .unwrap();
    assert!(token.is_secret());
    assert_eq!(token.value_text().as_deref(), Some("<secret>"));
    let cmp = store.compare_runs(first.id(), other.id()).unwrap();
    let text = format!("{cmp:?}");
    assert!(text.contains("SecretChanged"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    drop(store);

    // Nowhere in the store's files: database, its journal, blobs, sidecars.
    assert_eq!(
        files_containing(&path, TOKEN.as_bytes()),
        Vec::<String>::new()
    );
    // The probe works: the URL parameter, which is not secret, is there.
    assert!(!files_containing(&path, b"https://example.org").is_empty());
}

#[test]
fn a_secret_step_runs_on_the_driver_under_the_process_backend() {
    // A worker process would need the value from the store: the step runs on a thread of
    // the driver instead, and the run succeeds.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let run = common::on_backend(
        fetching("https://example.org", TOKEN).store_path(&path),
        pipeline::config::ExecutorKind::Processes,
    )
    .run()
    .unwrap();
    assert_eq!(run.output().load().unwrap(), 2 * (19 + TOKEN.len()));
    assert_eq!(
        files_containing(&path, TOKEN.as_bytes()),
        Vec::<String>::new()
    );
}

/// The worker side of the process-backend test: `pipeline::worker::enter()`.
#[test]
fn worker_entry() {
    pipeline::worker::enter();
}
