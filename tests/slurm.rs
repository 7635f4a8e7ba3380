//! Steps on a real Slurm cluster (`PIPELINE_EXECUTOR=slurm`, here chosen in code with
//! `Pipeline::executor(Slurm::new()..)`), with PostgreSQL metadata and S3 (Garage)
//! artifacts: the seed example's pipeline gives the thread backend's outputs and its second
//! run submits nothing; a failing step's error carries its job's stderr, downstream steps
//! are skipped, and a rerun after the fix executes only those; a local store is refused
//! before anything is submitted.
//!
//! This test binary has a `main` of its own (`harness = false`) whose first line is
//! `pipeline::worker::enter();`, as a user's binary has: each Slurm job runs this very
//! binary as the worker of one step. `PIPELINE_TEST_SLURM` names the cluster's
//! `slurm.conf`, `PIPELINE_TEST_POSTGRES` and `PIPELINE_TEST_S3` the store's services
//! (`scripts/services.sh` starts all three); without them the tests say so and pass,
//! unless `PIPELINE_TEST_REQUIRE_SERVICES=1`.

#[path = "../examples/common/digits.rs"]
mod digits;
#[path = "../examples/common/digits_pipeline.rs"]
mod digits_pipeline;
#[path = "common/services.rs"]
mod services;

use std::path::{Path, PathBuf};

use pipeline::cluster::Slurm;
use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::{Error, StoreOptions};

use digits::{DEFAULT_C, DEFAULT_GAMMA};
use digits_pipeline::digits_pipeline;
use services::{fresh_database, fresh_prefix, service, TestDatabase};

/// Training rows used (of 1437): enough for an accuracy above 0.9, fast in debug builds.
const TRAIN_LIMIT: usize = 300;

/// A PostgreSQL + S3 store of its own for `test`, the cluster's `slurm.conf` and a
/// temporary folder (the store's local folder and the job logs).
struct Cluster {
    _db: TestDatabase,
    config: StoreConfig,
    conf: String,
    local: tempfile::TempDir,
}

impl Cluster {
    fn new(test: &str) -> Option<Cluster> {
        let conf = service("PIPELINE_TEST_SLURM", test)?;
        let db = fresh_database(test)?;
        let prefix = fresh_prefix(test)?;
        Some(Cluster {
            config: StoreConfig::new(&db.url, Some(&prefix)).unwrap(),
            _db: db,
            conf,
            local: tempfile::tempdir().unwrap(),
        })
    }

    fn store(&self) -> Store {
        let options = StoreOptions {
            local_dir: Some(self.local.path().to_path_buf()),
            ..StoreOptions::default()
        };
        Store::connect_with(&self.config, options).unwrap()
    }

    fn slurm(&self) -> Slurm {
        Slurm::new()
            .conf(&self.conf)
            .log_dir(self.local.path().join("logs"))
    }
}

fn seed_on_slurm_equals_threads_and_a_second_run_submits_nothing() {
    let Some(cluster) = Cluster::new("seed_on_slurm") else {
        return;
    };
    let pipeline = || digits_pipeline(DEFAULT_GAMMA, DEFAULT_C, Some(TRAIN_LIMIT), true);

    let local = tempfile::tempdir().unwrap();
    let on_threads = pipeline().store_path(local.path()).run().unwrap();

    let first = pipeline()
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap();
    assert!(
        first
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Executed),
        "{:?}",
        first.steps()
    );
    let accuracy: f64 = first.output().load().unwrap();
    assert_eq!(accuracy, on_threads.output().load().unwrap());
    assert!(accuracy > 0.9, "{accuracy}");
    // Every step has the thread backend's cache key; a key holds the content hashes of
    // the step's inputs, so every output upstream of the last is byte for byte the same.
    for (a, b) in first.steps().iter().zip(on_threads.steps()) {
        assert_eq!(a.name(), b.name());
        assert_eq!(a.cache_key(), b.cache_key(), "step {}", a.name());
    }
    // Each executed step left its job's log.
    let logs = std::fs::read_dir(cluster.local.path().join("logs"))
        .unwrap()
        .count();
    assert!(logs >= 2 * first.steps().len(), "{logs} log files");

    let logs_before = logs;
    let second = pipeline()
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap();
    assert!(
        second
            .steps()
            .iter()
            .all(|s| s.status() == StepStatus::Cached),
        "{:?}",
        second.steps()
    );
    let logs_after = std::fs::read_dir(cluster.local.path().join("logs"))
        .unwrap()
        .count();
    assert_eq!(logs_after, logs_before, "the cached run submitted a job");
}

// A 4-step pipeline whose third step fails while a flag file exists.

#[step]
fn numbers(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[step]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

#[step]
fn checked(total: &u64, flag: String) -> Result<u64, String> {
    if Path::new(&flag).exists() {
        eprintln!("checked: refusing, the flag file {flag} exists");
        return Err(format!("the flag file {flag} exists"));
    }
    Ok(*total)
}

#[step]
fn report(value: &u64) -> String {
    format!("total {value}")
}

#[pipeline]
fn flagged(n: u64, flag: String) -> Artifact<String> {
    let xs = numbers(n);
    let t = total(&xs);
    let c = checked(&t, flag);
    report(&c)
}

fn a_failing_step_carries_its_stderr_and_a_rerun_executes_only_what_failed() {
    let Some(cluster) = Cluster::new("failing_on_slurm") else {
        return;
    };
    let flag: PathBuf = cluster.local.path().join("flag");
    std::fs::write(&flag, "set").unwrap();
    let flag_text = flag.display().to_string();
    let run = || {
        flagged(10, flag_text.clone())
            .store(cluster.store())
            .executor(cluster.slurm())
            .run()
    };
    let err = run().unwrap_err();
    let Error::StepFailed { step, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(step, "checked");
    let text = err.to_string();
    assert!(text.contains("the flag file"), "{text}");
    // The job's stderr, kept in its log file, ends the error.
    let chain = format!("{text} {:?}", std::error::Error::source(&err));
    assert!(chain.contains("checked: refusing"), "{chain}");
    let store = cluster.store();
    let runs = store.runs(Some("flagged")).unwrap();
    let failed = store.run_steps(&runs[0].id).unwrap();
    let status = |name: &str| {
        failed
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name}"))
            .status
    };
    assert_eq!(status("numbers"), StepStatus::Executed);
    assert_eq!(status("total"), StepStatus::Executed);
    assert_eq!(status("checked"), StepStatus::Failed);
    assert_eq!(status("report"), StepStatus::Skipped);
    let checked = failed.iter().find(|s| s.name == "checked").unwrap();
    let error = checked.error.clone().unwrap_or_default();
    assert!(error.contains("the flag file"), "{error}");

    // The fix: the flag goes. Only the failed and the skipped step run again.
    std::fs::remove_file(&flag).unwrap();
    let fixed = run().unwrap();
    let statuses: Vec<(String, StepStatus)> = fixed
        .steps()
        .iter()
        .map(|s| (s.name().to_string(), s.status()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("numbers".to_string(), StepStatus::Cached),
            ("total".to_string(), StepStatus::Cached),
            ("checked".to_string(), StepStatus::Executed),
            ("report".to_string(), StepStatus::Executed),
        ]
    );
    assert_eq!(fixed.output().load().unwrap(), "total 55");
}

fn a_local_store_is_refused_before_anything_is_submitted() {
    let Some(conf) = service("PIPELINE_TEST_SLURM", "local_store_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs = dir.path().join("logs");
    let err = flagged(3, "/nonexistent".into())
        .store(store.clone())
        .executor(Slurm::new().conf(&conf).log_dir(&logs))
        .run()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Executor { .. }), "{err:?}");
    assert!(text.contains("SQLite file"), "{text}");
    assert!(text.contains("shared_store = true"), "{text}");
    assert!(store.runs(None).unwrap().is_empty(), "a run was recorded");
    assert!(!logs.exists(), "a job was submitted");
}

fn main() {
    pipeline::worker::enter();
    let tests: [(&str, fn()); 3] = [
        (
            "seed_on_slurm_equals_threads_and_a_second_run_submits_nothing",
            seed_on_slurm_equals_threads_and_a_second_run_submits_nothing,
        ),
        (
            "a_failing_step_carries_its_stderr_and_a_rerun_executes_only_what_failed",
            a_failing_step_carries_its_stderr_and_a_rerun_executes_only_what_failed,
        ),
        (
            "a_local_store_is_refused_before_anything_is_submitted",
            a_local_store_is_refused_before_anything_is_submitted,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {}", failed.join(", "));
        std::process::exit(101);
    }
}
