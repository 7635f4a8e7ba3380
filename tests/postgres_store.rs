//! A store whose metadata is in PostgreSQL (`PIPELINE_METADATA=postgres://..`) and whose
//! artifact bytes are in S3 (Garage), opened by `Store::connect`: the seed example's
//! pipeline runs on it, a second run on a new handle caches every step and reads no artifact
//! bytes, misses are explained, and the queries see what SQLite's would. Connection errors
//! (wrong password, unreachable or silent server, newer schema) are clear and never show a
//! credential.
//!
//! `PIPELINE_TEST_POSTGRES` names a server whose user may create databases (each test works
//! in a database of its own), `PIPELINE_TEST_S3` a bucket and prefix (with the standard
//! `AWS_*` variables); `scripts/services.sh` starts both. Without them the tests say so and
//! pass, unless `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing service a failure.

#[path = "../examples/common/digits.rs"]
mod digits;
#[path = "../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
#[path = "common/services.rs"]
mod services;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::{Error, StepStatus, StoreOptions};

use digits::{DEFAULT_C, DEFAULT_GAMMA};
use digits_pipeline::{digits_pipeline, STEPS};
use services::{fresh_database, fresh_prefix};

/// Training rows used (of 1437): enough for an accuracy above 0.9, fast in debug builds.
const TRAIN_LIMIT: usize = 300;

/// Options with the local folder (the S3 read cache) in `dir`.
fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        local_dir: Some(dir.to_path_buf()),
        ..StoreOptions::default()
    }
}

fn statuses(run: &Run<Artifact<f64>>) -> Vec<StepStatus> {
    run.steps().iter().map(|s| s.status()).collect()
}

#[test]
fn the_seed_pipeline_runs_on_postgres_and_s3_and_caches_across_handles() {
    let (Some(db), Some(prefix)) = (
        fresh_database("seed_pipeline"),
        fresh_prefix("seed_pipeline"),
    ) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
    let open = || Store::connect_with(&config, options(local.path())).unwrap();
    let pipeline = |gamma: f64, cache_normalizer: bool| {
        digits_pipeline(gamma, DEFAULT_C, Some(TRAIN_LIMIT), cache_normalizer)
    };

    let store = open();
    assert_eq!(store.path(), local.path());
    // The handle names its metadata without the password.
    let shown = format!("{store:?}");
    assert!(shown.contains(":***@"), "{shown}");
    if let Some(password) = url::Url::parse(&db.url).unwrap().password() {
        assert!(!shown.contains(password), "{shown}");
    }
    let first = pipeline(DEFAULT_GAMMA, true)
        .store(store.clone())
        .run_name("first")
        .run()
        .unwrap();
    assert_eq!(statuses(&first), [StepStatus::Executed; 4]);
    let accuracy = first.output().load().unwrap();
    assert!(accuracy > 0.9, "accuracy {accuracy}");

    // A new handle, as another process (or host) opens it: every step cached, and not one
    // artifact byte read, locally or from the bucket.
    let again = open();
    let second = pipeline(DEFAULT_GAMMA, true)
        .store(again.clone())
        .run_name("second")
        .run()
        .unwrap();
    assert_eq!(statuses(&second), [StepStatus::Cached; 4]);
    assert_eq!(again.stats().blob_reads, 0, "a cached run reads no blobs");
    assert_eq!(again.stats().bytes_read, 0);
    // Loading reads through the backend and verifies the bytes.
    assert_eq!(second.output().load().unwrap(), accuracy);
    assert!(again.stats().blob_reads > 0);

    // A changed parameter: the trainer and evaluator miss, and the miss says why.
    let third = pipeline(DEFAULT_GAMMA * 2.0, true)
        .store(again.clone())
        .run_name("third")
        .run()
        .unwrap();
    assert_eq!(
        statuses(&third),
        [
            StepStatus::Cached,
            StepStatus::Cached,
            StepStatus::Executed,
            StepStatus::Executed
        ]
    );
    let reason = third.step("svc_trainer").unwrap().reason().to_string();
    assert!(reason.contains("gamma"), "{reason}");

    // Caching off for the normalizer: it runs (a row recorded outside any lease) and writes
    // the same bytes, so the trainer after it is cached again.
    let fourth = pipeline(DEFAULT_GAMMA, false)
        .store(open())
        .run_name("fourth")
        .run()
        .unwrap();
    assert_eq!(
        statuses(&fourth),
        [
            StepStatus::Cached,
            StepStatus::Executed,
            StepStatus::Cached,
            StepStatus::Cached
        ]
    );

    // The queries, on a third handle.
    let reader = open();
    let names: Vec<String> = reader
        .runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["fourth", "third", "second", "first"]);
    assert_eq!(reader.pipelines().unwrap(), ["digits_pipeline"]);
    let steps = reader.run_steps("second").unwrap();
    let step_names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(step_names, STEPS);
    assert!(steps
        .iter()
        .all(|s| s.outputs.len() == s.components.outputs.len()));
    let trainer = reader.run_steps("third").unwrap()[2].clone();
    let compared = reader
        .compared_execution(trainer.execution_id)
        .unwrap()
        .expect("the miss was compared with the first run's trainer");
    assert_eq!(compared.run_name, "second");
    let diff = reader.compare_runs("second", "third").unwrap();
    let changed: Vec<&str> = diff.changed().map(|s| s.name.as_str()).collect();
    assert_eq!(changed, ["svc_trainer", "evaluator"]);
    let model = reader.artifact("first", "svc_trainer", "output").unwrap();
    let lineage = reader.lineage(model.content_hash()).unwrap();
    assert_eq!(lineage.producers.len(), 1);
    assert_eq!(lineage.producers[0].run_name, "first");
    assert_eq!(lineage.reused_by.len(), 2, "{lineage:?}");
    assert_eq!(
        reader.execution_run(model.execution_id()).unwrap().name,
        "first"
    );
    reader.pin("first").unwrap();
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let pinned: Vec<String> = client
        .query("SELECT name FROM runs WHERE pinned", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pinned, ["first"]);
    assert!(
        reader.schema_version().unwrap() >= 1,
        "the PostgreSQL schema's version"
    );
    // verify reads every referenced object back; an object deleted behind the store's back
    // is reported, and a load that finds it gone makes the next run execute its step again
    // (a hit trusts the rows and asks the bucket nothing).
    let report = reader.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.blobs_checked >= 5, "{report:?}");
    assert!(reader
        .artifact_store()
        .delete(model.content_hash())
        .unwrap());
    let report = reader.verify().unwrap();
    assert!(
        matches!(
            report.problems.as_slice(),
            [pipeline::Problem::MissingBlob { hash, .. }] if *hash == model.content_hash().to_hex()
        ),
        "{:?}",
        report.problems
    );
    let e = model.load::<digits::Svc>().unwrap_err();
    assert!(matches!(e, Error::BlobMissing { .. }), "{e}");
    let fifth = pipeline(DEFAULT_GAMMA, true)
        .store(open())
        .run_name("fifth")
        .run()
        .unwrap();
    assert_eq!(
        statuses(&fifth)[..3],
        [StepStatus::Cached, StepStatus::Cached, StepStatus::Executed]
    );
    let reason = fifth.step("svc_trainer").unwrap().reason().to_string();
    assert!(reason.contains("missing"), "{reason}");
    assert_eq!(fifth.output().load().unwrap(), accuracy);
    assert!(reader.verify().unwrap().is_ok());
}

/// Every way an error can show: `Display`, `Debug` and each source's.
fn everything_shown(e: &Error) -> String {
    let mut text = format!("{e}\n{e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    text
}

fn with_password(url: &str, password: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(password)).unwrap();
    url.into()
}

/// The error of `Store::connect` for metadata at `url`; the artifacts half is never reached.
fn connect_error(url: &str) -> Error {
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(url, Some("s3://unused-bucket/x")).unwrap();
    Store::connect_with(&config, options(local.path())).unwrap_err()
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_shown() {
    let Some(db) = fresh_database("wrong_password") else {
        return;
    };
    let e = connect_error(&with_password(&db.url, "not-the-password-5678"));
    let shown = everything_shown(&e);
    assert!(
        shown.contains("password authentication failed for user")
            && shown.contains("set the password in the URL, PGPASSWORD or ~/.pgpass"),
        "{shown}"
    );
    assert!(!shown.contains("not-the-password-5678"), "{shown}");
    if let Some(real) = url::Url::parse(&db.url).unwrap().password() {
        assert!(!shown.contains(real), "the real password leaked: {shown}");
    }
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    // Nothing listens on port 1.
    let e = connect_error("postgres://ci:hunter2@127.0.0.1:1/p");
    let shown = everything_shown(&e);
    assert!(
        shown.contains("cannot reach the metadata database"),
        "{shown}"
    );
    assert!(shown.contains("postgres://ci:***@127.0.0.1:1/p"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_server_that_never_answers_is_a_timeout_not_a_hang() {
    // Accepts connections and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let e = connect_error(&format!("postgres://ci:hunter2@127.0.0.1:{port}/p"));
    let waited = started.elapsed();
    let shown = everything_shown(&e);
    assert!(shown.contains("did not answer within"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(waited < Duration::from_secs(30), "waited {waited:?}");
    drop(listener);
}

#[test]
fn a_database_of_a_newer_schema_is_refused_and_named_without_its_password() {
    let Some(db) = fresh_database("newer_schema") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some("s3://unused-bucket/x")).unwrap();
    let store = Store::connect_with(&config, options(local.path())).unwrap();
    let current = store.schema_version().unwrap();
    drop(store);
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    client
        .execute(
            "UPDATE pipeline_store SET value = $1 WHERE key = 'schema_version'",
            &[&(current + 1).to_string()],
        )
        .unwrap();
    let e = connect_error(&db.url);
    match &e {
        Error::StoreTooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (current + 1, current)),
        other => panic!("expected StoreTooNew, got {other}"),
    }
    let shown = everything_shown(&e);
    if let Some(real) = url::Url::parse(&db.url).unwrap().password() {
        assert!(!shown.contains(real), "the password leaked: {shown}");
    }
}

/// What the processes of the concurrency test share: the database, the bucket prefix, and
/// a folder where each step body appends a line each time it runs (in any process).
const SHARED: &str = "PIPELINE_TEST_SHARED_STORE";

/// Appends a line to `<shared folder>/<step>`: one per execution of the body, whichever
/// process ran it.
fn count_execution(step: &str) {
    use std::io::Write;
    let Ok(shared) = std::env::var(SHARED) else {
        return;
    };
    let dir = shared.split('|').nth(2).unwrap().to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&dir).join(step))
        .unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
}

#[step]
fn numbers(n: u64) -> Vec<u64> {
    count_execution("numbers");
    (1..=n).collect()
}

#[step]
fn slow_squares(xs: &[u64]) -> Vec<u64> {
    count_execution("slow_squares");
    // Long enough that the other processes find the key claimed and wait for it.
    std::thread::sleep(Duration::from_millis(1500));
    xs.iter().map(|x| x * x).collect()
}

#[step]
fn sum(xs: &[u64]) -> u64 {
    count_execution("sum");
    xs.iter().sum()
}

#[pipeline]
fn shared_squares(n: u64) -> Artifact<u64> {
    let xs = numbers(n);
    let squares = slow_squares(&xs);
    sum(&squares)
}

/// One of the processes of the test below (run by it through this test binary); does
/// nothing when run on its own.
#[test]
fn shared_store_process() {
    let Ok(shared) = std::env::var(SHARED) else {
        return;
    };
    let mut parts = shared.split('|');
    let (url, prefix, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let config = StoreConfig::new(url, Some(prefix)).unwrap();
    let store = Store::connect_with(&config, options(std::path::Path::new(dir))).unwrap();
    let run = shared_squares(1000).store(store).run().unwrap();
    let statuses: Vec<String> = run
        .steps()
        .iter()
        .map(|s| format!("{:?}", s.status()))
        .collect();
    println!(
        "RESULT {} {}",
        run.output().load().unwrap(),
        statuses.join(",")
    );
}

#[test]
fn four_processes_on_one_store_run_each_step_once_and_agree() {
    let (Some(db), Some(prefix)) = (
        fresh_database("four_processes"),
        fresh_prefix("four_processes"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = format!("{}|{prefix}|{}", db.url, dir.path().display());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "shared_store_process", "--nocapture"])
                .env(SHARED, &shared)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "a process failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result in:\n{stdout}"))
            .to_string();
        results.push(line);
    }
    let expected: u64 = (1..=1000u64).map(|x| x * x).sum();
    let mut executed = [0usize; 3];
    for line in &results {
        let (value, statuses) = line.split_once(' ').unwrap();
        assert_eq!(value, expected.to_string(), "{results:?}");
        for (i, status) in statuses.split(',').enumerate() {
            assert!(matches!(status, "Executed" | "Cached"), "{results:?}");
            executed[i] += usize::from(status == "Executed");
        }
    }
    // Each step body ran exactly once, in whichever process claimed it; the others reused it.
    assert_eq!(executed, [1, 1, 1], "{results:?}");
    for step in ["numbers", "slow_squares", "sum"] {
        let lines = std::fs::read_to_string(dir.path().join(step)).unwrap();
        assert_eq!(lines.lines().count(), 1, "`{step}` ran in: {lines}");
    }
    // One run per process, all completed.
    let store = Store::connect_with(
        &StoreConfig::new(&db.url, Some(&prefix)).unwrap(),
        options(dir.path()),
    )
    .unwrap();
    let runs = store.runs(None).unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs
        .iter()
        .all(|r| r.status == pipeline::RunStatus::Completed));
}

#[test]
fn gc_on_postgres_keeps_what_kept_runs_reuse_and_removes_the_rest() {
    let (Some(db), Some(prefix)) = (fresh_database("gc"), fresh_prefix("gc")) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
    let store = Store::connect_with(&config, options(local.path())).unwrap();
    let run = |gamma: f64, name: &str| {
        digits_pipeline(gamma, DEFAULT_C, Some(TRAIN_LIMIT), true)
            .store(store.clone())
            .run_name(name)
            .run()
            .unwrap()
    };
    run(DEFAULT_GAMMA, "g1");
    run(DEFAULT_GAMMA * 2.0, "g2");
    let third = run(DEFAULT_GAMMA * 3.0, "g3");
    assert_eq!(
        statuses(&third),
        [
            StepStatus::Cached,
            StepStatus::Cached,
            StepStatus::Executed,
            StepStatus::Executed
        ]
    );
    let objects = |store: &Store| store.artifact_store().list().unwrap().len();
    let before = objects(&store);
    let outputs = |run: &str| -> std::collections::HashSet<pipeline::Hash128> {
        store
            .run_steps(run)
            .unwrap()
            .iter()
            .flat_map(|s| {
                let outputs = s.outputs.iter().map(|o| o.content_hash);
                // The parameters' stored forms are blobs of the execution too.
                outputs.chain(s.inputs.iter().filter_map(|i| i.value_blob))
            })
            .collect()
    };
    // What only the runs gc drops reference (equal accuracies share one object).
    let kept = outputs("g3");
    let only_dropped: std::collections::HashSet<_> = outputs("g1")
        .union(&outputs("g2"))
        .filter(|h| !kept.contains(h))
        .copied()
        .collect();
    assert!(only_dropped.len() >= 3, "{only_dropped:?}");
    let policy = pipeline::GcPolicy {
        keep_last: 1,
        min_blob_age: Duration::ZERO,
        ..pipeline::GcPolicy::default()
    };

    // A dry run says what would go and removes nothing.
    let dry = store
        .gc(&pipeline::GcPolicy {
            dry_run: true,
            ..policy.clone()
        })
        .unwrap();
    assert_eq!(dry.runs_removed, ["g2", "g1"]);
    assert_eq!(objects(&store), before);
    assert_eq!(store.runs(None).unwrap().len(), 3);

    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed, ["g2", "g1"]);
    assert_eq!(report.runs_kept, 1);
    // The trainers' and evaluators' outputs of g1 and g2 go; the loader's and the
    // normalizer's, which g3 reused from g1, stay with their rows handed over to g3's.
    assert_eq!(report.blobs_removed, only_dropped.len(), "{report:?}");
    assert_eq!(objects(&store), before - only_dropped.len());
    for hash in &only_dropped {
        assert!(store.artifact_store().stat(*hash).unwrap().is_none());
    }
    let names: Vec<String> = store
        .runs(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["g3"]);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let steps = store.run_steps("g3").unwrap();
    assert!(steps
        .iter()
        .all(|s| s.outputs.len() == s.components.outputs.len()));

    // g3 again: every step cached. g1 again: its trainer and evaluator run again.
    assert_eq!(
        statuses(&run(DEFAULT_GAMMA * 3.0, "g3-again")),
        [StepStatus::Cached; 4]
    );
    let again = run(DEFAULT_GAMMA, "g1-again");
    assert_eq!(
        statuses(&again)[..3],
        [StepStatus::Cached, StepStatus::Cached, StepStatus::Executed]
    );
    assert!(again.output().load().unwrap() > 0.9);
    // Nothing left to collect beyond what the policy drops.
    let report = store.gc(&policy).unwrap();
    assert_eq!(report.runs_removed, ["g3-again", "g3"]);
    assert!(store.verify().unwrap().is_ok());
}

#[step]
fn word_list(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("word{i}")).collect()
}

#[step]
fn shout(word: &str) -> String {
    word.to_uppercase()
}

#[pipeline]
fn shouted(n: usize) -> Artifact<Vec<String>> {
    word_list(n).map(|w| shout(w))
}

/// A map on PostgreSQL metadata and S3 artifacts: the split's one-output-per-item rows and
/// the gather's one-input-per-item rows round-trip, and a fully cached map from a new handle
/// reads no byte.
#[test]
fn a_map_runs_on_postgres_and_s3_and_is_cached_per_item() {
    let (Some(db), Some(prefix)) = (fresh_database("map"), fresh_prefix("map")) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
    let open = || Store::connect_with(&config, options(local.path())).unwrap();
    let first = shouted(4).store(open()).run().unwrap();
    assert_eq!(
        first.output().load().unwrap(),
        ["WORD0", "WORD1", "WORD2", "WORD3"]
    );
    let again = open();
    let second = shouted(4).store(again.clone()).run().unwrap();
    assert!(second
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
    assert_eq!(again.stats().bytes_read, 0);
    // One more item: only its call executes.
    let third = shouted(5).store(open()).run().unwrap();
    let executed: Vec<&str> = third
        .steps()
        .iter()
        .filter(|s| s.status() == StepStatus::Executed)
        .map(|s| s.name())
        .collect();
    assert_eq!(
        executed,
        ["word_list", "pipeline.split", "shout[4]", "pipeline.gather"]
    );
}

#[step]
fn square(x: &u64) -> u64 {
    x * x
}

#[pipeline]
fn mapped_sum(n: u64) -> Artifact<u64> {
    let squares = numbers(n).map(|x| square(x));
    sum(&squares)
}

#[test]
fn a_map_over_an_empty_list_is_cached_on_postgres_too() {
    let (Some(db), Some(prefix)) = (fresh_database("empty_map"), fresh_prefix("empty_map")) else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(&db.url, Some(&prefix)).unwrap();
    let open = || Store::connect_with(&config, options(local.path())).unwrap();
    for n in [0, 3] {
        let first = mapped_sum(n).store(open()).run().unwrap();
        assert_eq!(
            first.output().load().unwrap(),
            (1..=n).map(|x| x * x).sum::<u64>()
        );
        // A new handle: the split (of no item, or of three) and everything else is found.
        let again = mapped_sum(n).store(open()).run().unwrap();
        let statuses: Vec<(String, StepStatus)> = again
            .steps()
            .iter()
            .map(|s| (s.name().to_string(), s.status()))
            .collect();
        assert!(
            statuses.iter().all(|(_, s)| *s == StepStatus::Cached),
            "n = {n}: {statuses:?}"
        );
    }
}
