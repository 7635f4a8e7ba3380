//! The worker protocol and the process backend (`PIPELINE_EXECUTOR=processes`).
//!
//! This test binary has a `main` of its own (`harness = false`), whose first line is
//! `pipeline::worker::enter();`, as a user's binary has: the process backend starts this
//! very binary as each step's worker, and a replay runs it with `--pipeline-replay`.

#[path = "common/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

use pipeline::config::ExecutorKind;
use pipeline::prelude::*;
use pipeline::store::{Begin, ExecutionLog, LogStream, RunStart, StepStart};
use pipeline::worker::{Job, JobStore, EXIT_STALE, PIPELINE_WORKER_JOB};
use pipeline::Hash128;
use pipeline::{Error, GcPolicy};
use serde::{Deserialize, Serialize};

// A seed-like pipeline: data, a split, a fitted model and its score.

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    n: usize,
    slope: f64,
    label: String,
}

/// One `(x, y)` point.
type Point = (f64, f64);

#[step]
fn make_data(settings: &Settings) -> Vec<Point> {
    (0..settings.n)
        .map(|i| {
            let x = i as f64;
            (x, settings.slope * x + ((i * 7919) % 13) as f64 / 13.0)
        })
        .collect()
}

#[step(outputs(train, test))]
fn split(rows: &[Point], test_every: usize) -> (Vec<Point>, Vec<Point>) {
    let (test, train): (Vec<_>, Vec<_>) = rows
        .iter()
        .enumerate()
        .partition(|(i, _)| i % test_every == 0);
    (
        train.into_iter().map(|(_, r)| *r).collect(),
        test.into_iter().map(|(_, r)| *r).collect(),
    )
}

#[step(cacher = Json)]
fn fit(train: &[(f64, f64)]) -> (f64, f64) {
    let n = train.len() as f64;
    let (sx, sy) = train
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = train.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    let slope = num / den;
    (slope, my - slope * mx)
}

#[step]
fn score(model: (f64, f64), test: Vec<(f64, f64)>) -> f64 {
    let (a, b) = model;
    test.iter()
        .map(|(x, y)| (a * x + b - y).powi(2))
        .sum::<f64>()
        / test.len() as f64
}

/// The process that ran the step: another one under the process backend.
#[step]
fn which_process(seen: &f64) -> u32 {
    let _ = seen;
    std::process::id()
}

#[pipeline]
fn seed_like(settings: Settings) -> (Artifact<(f64, f64)>, Artifact<f64>, Artifact<u32>) {
    let rows = make_data(settings);
    let parts = split(&rows, 5);
    let model = fit(&parts.train);
    let mse = score(&model, &parts.test);
    let pid = which_process(&mse);
    (model, mse, pid)
}

// A step that fails in one of several ways, and one downstream of it.

#[step]
fn flaky(mode: u8) -> Result<u64, String> {
    match mode {
        0 => Ok(7),
        1 => {
            eprintln!("flaky: the input file is missing (diagnostic from the step)");
            Err("no input".to_string())
        }
        2 => panic!("flaky panicked on purpose"),
        _ => {
            eprintln!("flaky: about to abort");
            std::process::abort()
        }
    }
}

#[step]
fn after(x: &u64) -> u64 {
    x + 1
}

#[pipeline]
fn fragile(mode: u8) -> Artifact<u64> {
    let x = flaky(mode);
    after(&x)
}

fn settings() -> Settings {
    Settings {
        n: 200,
        slope: 1.5,
        label: "seed".into(),
    }
}

fn store_dir(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    dir.path().join(name)
}

fn statuses<O>(run: &Run<O>) -> Vec<(String, StepStatus)> {
    run.steps()
        .iter()
        .map(|s| (s.name().to_string(), s.status()))
        .collect()
}

fn processes_equal_threads_and_a_second_run_starts_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let threads = seed_like(settings())
        .store_path(store_dir(&dir, "threads"))
        .run()
        .unwrap();
    let p = seed_like(settings())
        .store_path(store_dir(&dir, "processes"))
        .executor(ExecutorKind::Processes);
    let first = p.run().unwrap();
    let (t_model, t_mse, t_pid) = threads.output();
    let (p_model, p_mse, p_pid) = first.output();
    assert_eq!(t_model.load().unwrap(), p_model.load().unwrap());
    assert_eq!(t_mse.load().unwrap(), p_mse.load().unwrap());
    assert_eq!(t_pid.load().unwrap(), std::process::id());
    let worker_pid = p_pid.load().unwrap();
    assert_ne!(
        worker_pid,
        std::process::id(),
        "the step ran in a worker process"
    );
    assert!(statuses(&first)
        .iter()
        .all(|(_, s)| *s == StepStatus::Executed));
    // The same content hashes in both stores, output by output.
    let hashes = |run: &Run<_>| -> Vec<Option<Hash128>> {
        let store = run.store();
        run.steps()
            .iter()
            .filter(|s| s.name() != "which_process")
            .flat_map(|s| {
                store
                    .execution(s.execution_id().unwrap())
                    .unwrap()
                    .outputs
                    .into_iter()
                    .map(|o| Some(o.content_hash))
            })
            .collect()
    };
    assert_eq!(hashes(&threads), hashes(&first));

    let second = p.run().unwrap();
    assert!(
        statuses(&second)
            .iter()
            .all(|(_, s)| *s == StepStatus::Cached),
        "{:?}",
        statuses(&second)
    );
    // Nothing was executed, so no worker could have run: the recorded pid is the first one's.
    assert_eq!(second.output().2.load().unwrap(), worker_pid);
}

fn a_failing_step_carries_its_stderr_and_downstream_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = fragile(1)
        .store_path(store_dir(&dir, "s"))
        .executor(ExecutorKind::Processes);
    let err = p.run().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no input"), "{text}");
    assert!(
        text.contains("the input file is missing (diagnostic from the step)"),
        "the worker's stderr is in the error: {text}"
    );
    let store = Store::open(store_dir(&dir, "s")).unwrap();
    let run = &store.runs(None).unwrap()[0];
    let steps = store.run_steps(&run.id).unwrap();
    let status = |name: &str| steps.iter().find(|s| s.name == name).unwrap().status;
    assert_eq!(status("flaky"), StepStatus::Failed);
    assert_eq!(status("after"), StepStatus::Skipped);
}

fn panicking_and_aborting_workers_are_failed_steps() {
    let dir = tempfile::tempdir().unwrap();
    let panicked = fragile(2)
        .store_path(store_dir(&dir, "s"))
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap_err()
        .to_string();
    assert!(panicked.contains("flaky panicked on purpose"), "{panicked}");

    let aborting = fragile(3)
        .store_path(store_dir(&dir, "s"))
        .executor(ExecutorKind::Processes);
    let aborted = aborting.run().unwrap_err().to_string();
    assert!(
        aborted.contains("the worker process was killed by signal 6 before it recorded the step"),
        "{aborted}"
    );
    assert!(aborted.contains("flaky: about to abort"), "{aborted}");
    // The dead worker's claim was freed: a second run executes the step again at once
    // (it does not wait for a holder) and fails the same way.
    let again = aborting.run().unwrap_err().to_string();
    assert!(again.contains("killed by signal 6"), "{again}");
    let store = Store::open(store_dir(&dir, "s")).unwrap();
    for run in store.runs(None).unwrap() {
        for step in store.run_steps(&run.id).unwrap() {
            assert_ne!(step.status, StepStatus::Running, "{}: {:?}", run.name, step);
        }
    }
}

fn a_stale_worker_refuses_and_records_nothing_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_dir(&dir, "s");
    // A real run gives real key components to claim a key with.
    let run = fragile(0).store_path(&path).run().unwrap();
    let store = Store::open(&path).unwrap();
    let recorded = store
        .execution(run.step("flaky").unwrap().execution_id().unwrap())
        .unwrap();
    let meta = store.metadata_store();
    meta.begin_run(&RunStart {
        id: "stale-run".into(),
        pipeline: "fragile".into(),
        name: "stale".into(),
        started_at_us: 1,
    })
    .unwrap();
    let key = Hash128(0x5eed);
    let start = StepStart {
        run_id: "stale-run".into(),
        run_name: "stale".into(),
        name: "flaky".into(),
        step: "flaky".into(),
        position: 0,
        cache_key: key,
        components: recorded.components.clone(),
        inputs: Vec::new(),
        outputs: recorded.components.outputs.clone(),
        not_before_us: None,
    };
    let Begin::Claimed { lease, .. } = store.begin_step(&start).unwrap() else {
        panic!("a fresh key is claimed");
    };
    let execution = lease.execution();
    let mine = recorded.code_signature.clone();
    let job = Job {
        store: JobStore {
            metadata: format!("sqlite:{}", path.join("metadata.sqlite").display()),
            artifacts: None,
            lease_ttl_ms: None,
        },
        run_id: "stale-run".into(),
        node: "flaky".into(),
        position: 0,
        step: "workers::flaky".into(),
        signature: "00000000000000ff".into(),
        cache_key: key,
        components: recorded.components.clone(),
        reason: "first_execution".into(),
        replace_outputs: false,
        compared: None,
        lease: lease.into_token(),
        inputs: Vec::new(),
        outputs: vec!["output".into()],
        policy: Default::default(),
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .env(PIPELINE_WORKER_JOB, serde_json::to_string(&job).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_STALE), "{stderr}");
    assert!(stderr.contains("stale worker"), "{stderr}");
    assert!(
        stderr.contains(&mine),
        "names this binary's signature: {stderr}"
    );
    assert!(
        stderr.contains("00000000000000ff"),
        "names the expected signature: {stderr}"
    );
    let row = store.execution(execution).unwrap();
    assert_eq!(row.status, StepStatus::Failed);
    assert!(row.error.unwrap().contains("stale worker"));
    assert!(row.outputs.is_empty());
    // Nothing done: the key is free, and claimed again rather than reused.
    let start = StepStart {
        run_id: "stale-run".into(),
        ..start
    };
    assert!(matches!(
        store.begin_step(&start).unwrap(),
        Begin::Claimed { .. }
    ));
}

/// A step whose output differs on every execution.
#[step]
fn stamp(seed: u64) -> u128 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    now ^ u128::from(seed)
}

#[pipeline]
fn stamped(seed: u64) -> (Artifact<u128>, Artifact<u64>) {
    let s = stamp(seed);
    let x = flaky(0);
    (s, after(&x))
}

fn replay(store: &Path, run: &str, step: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--pipeline-replay", run, step, "--store"])
        .arg(store)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Also a regression test: the threads run's store handle stays open while the processes
/// run opens a second one on the same SQLite file; opening it used to drop the first one's
/// POSIX locks, so a worker closing its connection removed the WAL under the driver, and
/// the next worker did not see its claim.
fn replay_reports_equal_and_different_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_dir(&dir, "s");
    let threads = seed_like(settings()).store_path(&path).run().unwrap();
    let (code, out) = replay(&path, threads.name(), "score");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Output `output`: equal"), "{out}");
    assert!(out.contains("Outputs equal the recorded ones."), "{out}");
    // Multiple outputs, and an input that is a parameter struct.
    let (code, out) = replay(&path, threads.name(), "split");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Output `train`: equal"), "{out}");
    assert!(out.contains("Output `test`: equal"), "{out}");

    // A run under processes replays as well; a step that differs each time says so.
    let run = stamped(3)
        .store_path(&path)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap();
    let (code, out) = replay(&path, run.name(), "after");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = replay(&path, run.name(), "stamp");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Output `output`: differs (recorded"), "{out}");
    assert!(
        out.contains("Outputs differ from the recorded ones."),
        "{out}"
    );

    let (code, out) = replay(&path, run.name(), "nope");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the run has no step call `nope`"), "{out}");
}

// A step that prints to both streams.

#[step]
fn chatty(n: u32) -> u32 {
    println!("chatty says {n} on stdout");
    eprintln!("chatty warns {n} on stderr");
    n * 2
}

#[pipeline]
fn talk(n: u32) -> Artifact<u32> {
    chatty(n)
}

/// The kept streams of step `step` of the newest run of `pipeline`, read back as text.
fn kept_logs(store: &Store, pipeline: &str, step: &str) -> Vec<(LogStream, String, ExecutionLog)> {
    let run = &store.runs(Some(pipeline)).unwrap()[0];
    let steps = store.run_steps(&run.id).unwrap();
    let record = steps.iter().find(|s| s.name == step).unwrap();
    store
        .execution_logs(record.execution_id)
        .unwrap()
        .into_iter()
        .map(|log| {
            let text = String::from_utf8(store.read_log(&log).unwrap()).unwrap();
            (log.stream, text, log)
        })
        .collect()
}

fn a_workers_stdout_and_stderr_are_kept_as_artifacts_of_its_execution() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_dir(&dir, "s");
    let on_processes = |n: u32| talk(n).store_path(&path).executor(ExecutorKind::Processes);
    let first = on_processes(3).run().unwrap();
    assert_eq!(first.output().load().unwrap(), 6);
    let store = Store::open(&path).unwrap();
    let logs = kept_logs(&store, "talk", "chatty");
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].0, LogStream::Stdout);
    assert!(logs[0].1.contains("chatty says 3 on stdout"), "{logs:?}");
    assert!(!logs[0].1.contains("chatty warns"), "{logs:?}");
    assert_eq!(logs[1].0, LogStream::Stderr);
    assert!(logs[1].1.contains("chatty warns 3 on stderr"), "{logs:?}");
    for (_, text, log) in &logs {
        assert_eq!(log.size, text.len() as u64);
        assert_eq!(log.total_size, log.size);
        assert!(!log.truncated());
    }

    // A failed step keeps its streams too; a skipped one has none.
    fragile(1)
        .store_path(&path)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap_err();
    let failed = kept_logs(&store, "fragile", "flaky");
    assert!(
        failed[1]
            .1
            .contains("the input file is missing (diagnostic from the step)"),
        "{failed:?}"
    );
    assert!(kept_logs(&store, "fragile", "after").is_empty());
    // Steps on threads print to the driver's own streams: nothing is kept.
    talk(5).store_path(&path).run().unwrap();
    assert!(kept_logs(&store, "talk", "chatty").is_empty());

    // `verify` reads them, `copy_to` copies them.
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let copy = Store::open(store_dir(&dir, "copy")).unwrap();
    store
        .copy_to(&copy, pipeline::CopyOptions::default())
        .unwrap();
    let copied = kept_logs(&copy, "fragile", "flaky");
    assert_eq!(
        copied.iter().map(|l| &l.1).collect::<Vec<_>>(),
        failed.iter().map(|l| &l.1).collect::<Vec<_>>()
    );

    // gc keeps them while their execution row exists, and removes them with it.
    on_processes(4).run().unwrap();
    let kept = kept_logs(&store, "talk", "chatty");
    assert!(kept[0].1.contains("chatty says 4"), "{kept:?}");
    let gone = &logs[0].2;
    let report = store
        .gc(&GcPolicy {
            keep_last: 1,
            min_blob_age: std::time::Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.runs_removed.len(), 2, "{report:?}");
    assert!(
        matches!(store.read_log(gone), Err(Error::BlobMissing { .. })),
        "the log of a removed execution is gone"
    );
    for (_, text, log) in &kept {
        assert_eq!(
            &String::from_utf8(store.read_log(log).unwrap()).unwrap(),
            text
        );
    }
    // A kept log whose blob is lost is a problem `verify` names.
    let lost = &kept[1].2;
    store.artifact_store().delete(lost.content_hash).unwrap();
    let report = store.verify().unwrap();
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            pipeline::Problem::MissingBlob { hash, .. } if *hash == lost.content_hash.to_hex()
        )),
        "{report:?}"
    );

    // A kept cached row takes over the outputs of the execution it reused when gc removes
    // that execution's run, but not its logs: they go with their execution.
    let path = store_dir(&dir, "heir");
    let executed = talk(7)
        .store_path(&path)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap();
    let cached = talk(7)
        .store_path(&path)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap();
    assert_eq!(
        statuses(&cached),
        [("chatty".to_string(), StepStatus::Cached)]
    );
    let store = Store::open(&path).unwrap();
    let id = |run: &Run<Artifact<u32>>| run.steps()[0].execution_id().unwrap();
    let logs = store.execution_logs(id(&executed)).unwrap();
    assert_eq!(logs.len(), 2);
    assert!(store.execution_logs(id(&cached)).unwrap().is_empty());
    let report = store
        .gc(&GcPolicy {
            keep_last: 1,
            min_blob_age: std::time::Duration::ZERO,
            ..GcPolicy::default()
        })
        .unwrap();
    assert_eq!(report.runs_removed, [executed.name().to_string()]);
    assert_eq!(cached.output().load().unwrap(), 14);
    for log in &logs {
        assert!(
            matches!(store.read_log(log), Err(Error::BlobMissing { .. })),
            "{log:?}"
        );
    }
    assert!(store.verify().unwrap().is_ok());
}

// SIGINT on the driver alone (`kill -INT`, not a terminal's Ctrl-C to the whole process
// group): the driver kills its worker processes and records the run cancelled.

#[step]
fn napping(marker: String) -> u64 {
    std::fs::write(&marker, std::process::id().to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(300));
    1
}

#[step]
fn woken(x: &u64) -> u64 {
    x + 1
}

#[pipeline]
fn napper(marker: String) -> Artifact<u64> {
    let x = napping(marker);
    woken(&x)
}

/// The driver's side: runs `napper` on the processes backend and exits 0 when the run was
/// cancelled (anything else: 1).
fn drive_napper(store: &str) -> ! {
    let marker = std::env::var("WORKERS_TEST_MARKER").unwrap();
    let result = napper(marker)
        .store_path(store)
        .executor(ExecutorKind::Processes)
        .run();
    eprintln!("driver: {result:?}");
    std::process::exit(match result {
        Err(Error::Cancelled { .. }) => 0,
        _ => 1,
    })
}

/// Whether process `pid` is still running (not gone, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            // The state follows the command name in parentheses.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

fn sigint_on_the_driver_kills_its_workers_and_records_the_run_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_dir(&dir, "s");
    let marker = dir.path().join("worker.pid");
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .env("WORKERS_TEST_DRIVER", &path)
        .env("WORKERS_TEST_MARKER", &marker)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let worker: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the worker did not start within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(running(worker));
    let status = Command::new("kill")
        .args(["-INT", &driver.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let waited = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = driver.try_wait().unwrap() {
            break Some(exit);
        }
        if waited.elapsed() > std::time::Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Whatever happened, leave no process behind.
    let outlived = running(worker);
    if outlived {
        let _ = Command::new("kill")
            .args(["-KILL", &worker.to_string()])
            .status();
    }
    if exit.is_none() {
        let _ = driver.kill();
        let _ = driver.wait();
    }
    let exit = exit.expect("the driver did not end within 60 s of SIGINT");
    assert!(!outlived, "the worker process outlived the run");
    assert!(
        exit.success(),
        "the driver did not end with a cancelled run: {exit:?}"
    );
    let store = Store::open(&path).unwrap();
    let runs = store.runs(Some("napper")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, pipeline::RunStatus::Cancelled);
    let steps = store.run_steps(&runs[0].id).unwrap();
    let napping = steps.iter().find(|s| s.name == "napping").unwrap();
    assert_eq!(napping.status, StepStatus::Skipped, "{napping:?}");
    assert_eq!(
        napping.reason.as_deref(),
        Some("run cancelled while the step ran; its job was stopped")
    );
    assert!(napping.error.is_none(), "{napping:?}");
    let woken = steps.iter().find(|s| s.name == "woken").unwrap();
    assert_eq!(woken.status, StepStatus::Skipped);
}

#[step(secret = [token])]
fn authorised(token: String, n: u64) -> u64 {
    token.len() as u64 + n
}

#[pipeline]
fn with_secret(token: &str) -> Artifact<u64> {
    authorised(token.to_string(), 2)
}

/// A secret parameter has no stored form: under processes its step runs on the driver,
/// and a replay refuses it, saying why, without the value.
fn a_secret_step_runs_on_the_driver_and_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_dir(&dir, "secret");
    let token = "tok-3e1f-not-in-any-blob";
    let run = with_secret(token)
        .store_path(&path)
        .executor(ExecutorKind::Processes)
        .run()
        .unwrap();
    assert_eq!(run.output().load().unwrap(), token.len() as u64 + 2);
    let (code, out) = replay(&path, run.name(), "authorised");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("parameter `token` is secret: its value is never stored, so the step cannot be replayed"),
        "{out}"
    );
    assert!(!out.contains(token), "{out}");
}

fn main() {
    pipeline::worker::enter();
    if let Ok(store) = std::env::var("WORKERS_TEST_DRIVER") {
        drive_napper(&store);
    }
    let tests: [(&str, fn()); 8] = [
        (
            "a_secret_step_runs_on_the_driver_and_is_not_replayed",
            a_secret_step_runs_on_the_driver_and_is_not_replayed,
        ),
        (
            "sigint_on_the_driver_kills_its_workers_and_records_the_run_cancelled",
            sigint_on_the_driver_kills_its_workers_and_records_the_run_cancelled,
        ),
        (
            "a_workers_stdout_and_stderr_are_kept_as_artifacts_of_its_execution",
            a_workers_stdout_and_stderr_are_kept_as_artifacts_of_its_execution,
        ),
        (
            "processes_equal_threads_and_a_second_run_starts_no_worker",
            processes_equal_threads_and_a_second_run_starts_no_worker,
        ),
        (
            "a_failing_step_carries_its_stderr_and_downstream_is_skipped",
            a_failing_step_carries_its_stderr_and_downstream_is_skipped,
        ),
        (
            "panicking_and_aborting_workers_are_failed_steps",
            panicking_and_aborting_workers_are_failed_steps,
        ),
        (
            "a_stale_worker_refuses_and_records_nothing_as_done",
            a_stale_worker_refuses_and_records_nothing_as_done,
        ),
        (
            "replay_reports_equal_and_different_outputs",
            replay_reports_equal_and_different_outputs,
        ),
    ];
    harness::run(&tests)
}
