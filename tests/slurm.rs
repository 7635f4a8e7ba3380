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
#[path = "common/harness.rs"]
mod harness;
#[path = "common/services.rs"]
mod services;

use std::path::{Path, PathBuf};

use pipeline::cluster::{Resources, Slurm, TimeLimit};
use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::store::LogStream;
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
    // Its job's stdout and stderr are kept in the store (PostgreSQL rows, S3 blobs), as
    // are those of the jobs that succeeded; the skipped step ran no job.
    let logs = store.execution_logs(checked.execution_id).unwrap();
    let streams: Vec<LogStream> = logs.iter().map(|l| l.stream).collect();
    assert_eq!(streams, [LogStream::Stdout, LogStream::Stderr]);
    let stderr = String::from_utf8(store.read_log(&logs[1]).unwrap()).unwrap();
    assert!(stderr.contains("checked: refusing"), "{stderr}");
    let numbers = failed.iter().find(|s| s.name == "numbers").unwrap();
    assert_eq!(store.execution_logs(numbers.execution_id).unwrap().len(), 2);
    let report = failed.iter().find(|s| s.name == "report").unwrap();
    assert!(store
        .execution_logs(report.execution_id)
        .unwrap()
        .is_empty());

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

// Ctrl-C on the driver: a child process of this binary drives a run whose step sleeps
// for minutes as a Slurm job; the test interrupts it once the job has started.

#[step]
fn sleepy(secs: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(secs));
    secs
}

#[pipeline]
fn slow(secs: u64) -> Artifact<String> {
    let a = sleepy(secs);
    report_secs(&a)
}

#[step]
fn report_secs(secs: &u64) -> String {
    format!("slept {secs} s")
}

/// The driver's side: runs `slow` on the store and cluster its environment names, and
/// exits 0 when the run was cancelled (anything else: 1).
fn drive_slow_run() -> ! {
    let var = |name: &str| std::env::var(name).expect(name);
    let config = StoreConfig::new(&var("SLURM_TEST_DB"), Some(&var("SLURM_TEST_PREFIX"))).unwrap();
    let options = StoreOptions {
        local_dir: Some(PathBuf::from(var("SLURM_TEST_LOCAL"))),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&config, options).unwrap();
    let slurm = Slurm::new()
        .conf(var("SLURM_TEST_CONF"))
        .log_dir(var("SLURM_TEST_LOGS"));
    let result = slow(300).store(store).executor(slurm).run();
    eprintln!("driver: {result:?}");
    std::process::exit(match result {
        Err(Error::Cancelled { .. }) => 0,
        _ => 1,
    })
}

/// The Slurm jobs whose logs are in `logs` (`<id>.out`, `<id>.err`).
fn jobs_logged_in(logs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(logs)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

/// Which of `ids` Slurm still lists as queued or running.
fn still_queued(conf: &str, ids: &[String]) -> Vec<String> {
    let out = std::process::Command::new("squeue")
        .env("SLURM_CONF", conf)
        .args(["-h", "-o", "%i %T", "-j", &ids.join(",")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn sigint_cancels_the_runs_jobs_and_records_the_run_cancelled() {
    let Some(cluster) = Cluster::new("sigint_on_slurm") else {
        return;
    };
    let logs = cluster.local.path().join("logs");
    let mut driver = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SLURM_TEST_DRIVER", "1")
        .env("SLURM_TEST_DB", cluster._db.url.clone())
        .env("SLURM_TEST_PREFIX", cluster.config.artifacts().to_string())
        .env("SLURM_TEST_LOCAL", cluster.local.path().join("driver"))
        .env("SLURM_TEST_CONF", &cluster.conf)
        .env("SLURM_TEST_LOGS", &logs)
        .spawn()
        .unwrap();
    // Wait for the step's job to start (Slurm opens its log files then).
    let started = std::time::Instant::now();
    let ids = loop {
        let ids = jobs_logged_in(&logs);
        if !ids.is_empty() {
            break ids;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the job did not start within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let status = std::process::Command::new("kill")
        .args(["-INT", &driver.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = driver.wait().unwrap();
    // Whatever happened, leave no job behind.
    let left = still_queued(&cluster.conf, &ids);
    if !left.is_empty() {
        let _ = std::process::Command::new("scancel")
            .env("SLURM_CONF", &cluster.conf)
            .args(&ids)
            .status();
    }
    assert!(
        exit.success(),
        "the driver did not end with a cancelled run: {exit:?}"
    );
    assert!(
        left.is_empty()
            || left
                .iter()
                .all(|l| l.ends_with("COMPLETING") || l.ends_with("CANCELLED")),
        "jobs left in squeue: {left:?}"
    );
    let store = cluster.store();
    let runs = store.runs(Some("slow")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, pipeline::RunStatus::Cancelled);
    let steps = store.run_steps(&runs[0].id).unwrap();
    // The step whose job was cancelled reads as the run's report has it: skipped because
    // the run was cancelled, not failed.
    for s in &steps {
        assert_eq!(s.status, StepStatus::Skipped, "{s:?}");
        assert!(s.error.is_none(), "{s:?}");
    }
    let sleepy = steps.iter().find(|s| s.name == "sleepy").unwrap();
    assert_eq!(
        sleepy.reason.as_deref(),
        Some("run cancelled while the step ran; its job was stopped")
    );
    let after = steps.iter().find(|s| s.name == "report_secs").unwrap();
    assert_eq!(
        after.reason.as_deref(),
        Some("run cancelled before the step started")
    );
}

fn a_job_past_its_time_limit_is_a_failed_step_with_slurms_reason() {
    let Some(cluster) = Cluster::new("time_limit_on_slurm") else {
        return;
    };
    // Slurm's shortest limit is a minute; the step would sleep for five.
    let minute = Resources::new().time(TimeLimit::from_seconds(60));
    let started = std::time::Instant::now();
    let err = slow(300)
        .step_resources("sleepy", minute)
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap_err();
    eprintln!(
        "time limit: the step failed after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let Error::StepFailed { step, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(step, "sleepy");
    let text = err.to_string();
    assert!(text.contains("TIMEOUT"), "{text}");
    assert!(text.contains("killed by Slurm at its time limit"), "{text}");
    assert!(text.contains("reason TimeLimit"), "{text}");
    let store = cluster.store();
    let run = &store.runs(Some("slow")).unwrap()[0];
    let steps = store.run_steps(&run.id).unwrap();
    let sleepy = steps.iter().find(|s| s.name == "sleepy").unwrap();
    assert_eq!(sleepy.status, StepStatus::Failed);
    let error = sleepy.error.clone().unwrap_or_default();
    assert!(
        error.contains("killed by Slurm at its time limit"),
        "{error}"
    );
    let after = steps.iter().find(|s| s.name == "report_secs").unwrap();
    assert_eq!(after.status, StepStatus::Skipped);
    // What Slurm itself wrote to the job's stderr is kept with it.
    let logs = store.execution_logs(sleepy.execution_id).unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let stderr = String::from_utf8(store.read_log(&logs[1]).unwrap()).unwrap();
    assert!(stderr.contains("DUE TO TIME LIMIT"), "{stderr}");
}

#[step]
fn squares_of(xs: &u64) -> u64 {
    xs * xs
}

#[pipeline]
fn mapped_squares(n: u64) -> Artifact<u64> {
    let squares = numbers(n).map(|x| squares_of(x));
    total(&squares)
}

/// A map's per-item calls are Slurm jobs; the built-in split and gather run in the driver.
fn a_map_runs_each_item_as_a_job() {
    let Some(cluster) = Cluster::new("map_on_slurm") else {
        return;
    };
    let run = mapped_squares(3)
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), 1 + 4 + 9);
    let items: Vec<_> = run
        .steps()
        .iter()
        .filter(|s| s.step() == "squares_of")
        .map(|s| (s.name().to_string(), s.status()))
        .collect();
    assert_eq!(
        items,
        [
            ("squares_of[0]".to_string(), StepStatus::Executed),
            ("squares_of[1]".to_string(), StepStatus::Executed),
            ("squares_of[2]".to_string(), StepStatus::Executed),
        ]
    );
    // The items are one wave, submitted as one job array: their logs are named
    // `<array>_<task>.out` (a plain job's are `<job>.out`), with one array id for all three.
    let mut arrays: Vec<(String, String)> = std::fs::read_dir(cluster.local.path().join("logs"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".out")?;
            let (array, task) = stem.split_once('_')?;
            Some((array.to_string(), task.to_string()))
        })
        .collect();
    arrays.sort();
    let ids: std::collections::BTreeSet<&str> = arrays.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(ids.len(), 1, "one array for the wave of items: {arrays:?}");
    let tasks: Vec<&str> = arrays.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(tasks, ["0", "1", "2"], "{arrays:?}");
}

#[step]
fn up_to(n: &u64) -> Vec<u64> {
    (1..=*n).collect()
}

#[step]
fn product(x: &u64, y: &u64) -> u64 {
    x * y
}

/// Per `x` of `1..=n`, per `y` of `1..=x`: `x * y`, then the sums.
#[pipeline]
fn nested_products(n: u64) -> Artifact<Vec<u64>> {
    numbers(n).map(|x| {
        let products = up_to(x).map(|y| product(x, y));
        total(&products)
    })
}

/// A map inside a map on Slurm: the inner per-item calls are jobs too, and a second run
/// submits nothing.
fn a_nested_maps_inner_calls_are_jobs() {
    let Some(cluster) = Cluster::new("nested_on_slurm") else {
        return;
    };
    let run = nested_products(3)
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap();
    // x = 1: 1; x = 2: 2 + 4; x = 3: 3 + 6 + 9.
    assert_eq!(run.output().load().unwrap(), [1, 6, 18]);
    let products: Vec<String> = run
        .steps()
        .iter()
        .filter(|s| s.step() == "product")
        .inspect(|s| assert_eq!(s.status(), StepStatus::Executed, "{}", s.name()))
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(products.len(), 6, "{products:?}");
    assert!(
        products.contains(&"product[2][1]".to_string()),
        "{products:?}"
    );
    // Each executed call was a job with its own log: numbers, 3 up_to, 6 product, 3 total.
    let logs = std::fs::read_dir(cluster.local.path().join("logs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".out"))
        })
        .count();
    assert_eq!(logs, 1 + 3 + 6 + 3);
    let again = nested_products(3)
        .store(cluster.store())
        .executor(cluster.slurm())
        .run()
        .unwrap();
    assert!(again
        .steps()
        .iter()
        .all(|s| s.status() == StepStatus::Cached));
}

fn main() {
    pipeline::worker::enter();
    if std::env::var_os("SLURM_TEST_DRIVER").is_some() {
        drive_slow_run();
    }
    let tests: [(&str, fn()); 7] = [
        (
            "a_map_runs_each_item_as_a_job",
            a_map_runs_each_item_as_a_job,
        ),
        (
            "a_nested_maps_inner_calls_are_jobs",
            a_nested_maps_inner_calls_are_jobs,
        ),
        (
            "a_job_past_its_time_limit_is_a_failed_step_with_slurms_reason",
            a_job_past_its_time_limit_is_a_failed_step_with_slurms_reason,
        ),
        (
            "sigint_cancels_the_runs_jobs_and_records_the_run_cancelled",
            sigint_cancels_the_runs_jobs_and_records_the_run_cancelled,
        ),
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
    harness::run(&tests)
}
