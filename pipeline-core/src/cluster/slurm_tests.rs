//! Against a real Slurm cluster: `PIPELINE_TEST_SLURM` names its `slurm.conf`
//! (`scripts/test.sh` starts the one-node cluster of `scripts/services.sh` and sets it).
//! Without the variable these tests say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing cluster a failure.
//!
//! The jobs run on this machine, so a temporary folder serves as the shared log folder.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::slurm::{
    FailCause, JobFailure, JobId, JobSpec, JobState, SlurmClient, SlurmError, SlurmOptions,
};
use super::{Resources, TimeLimit};

/// The test cluster's `slurm.conf`, or `None` (with the reason printed) when there is none.
fn slurm_conf(test: &str) -> Option<String> {
    match std::env::var("PIPELINE_TEST_SLURM") {
        Ok(conf) if !conf.is_empty() => Some(conf),
        _ => {
            if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: PIPELINE_TEST_SLURM is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start Slurm with scripts/services.sh");
            }
            eprintln!("{test}: skipped, PIPELINE_TEST_SLURM is not set (scripts/test.sh starts the one-node Slurm cluster and sets it to its slurm.conf)");
            None
        }
    }
}

/// A client of the test cluster.
fn cluster(test: &str) -> Option<SlurmClient> {
    slurm_conf(test).map(|conf| SlurmClient::new(SlurmOptions::new()).conf(conf))
}

/// A job running `script` with `/bin/sh -c`.
fn shell(name: &str, script: &str) -> JobSpec {
    JobSpec::new(name, "/bin/sh").arg("-c").arg(script)
}

/// Polls until every job is finished, or panics after `limit`.
fn wait_finished(slurm: &SlurmClient, ids: &[JobId], limit: Duration) -> BTreeMap<JobId, JobState> {
    let start = Instant::now();
    loop {
        let states = slurm.states(ids).expect("squeue");
        assert_eq!(states.len(), ids.len(), "one state per id");
        if states.values().all(JobState::is_finished) {
            return states;
        }
        assert!(
            start.elapsed() < limit,
            "jobs not finished after {limit:?}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What plain `squeue` (pending and running jobs only) lists of `ids`.
fn squeue_lists(conf: &str, ids: &[JobId]) -> String {
    let list: Vec<String> = ids.iter().map(JobId::to_string).collect();
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%i %T"])
        .arg(format!("--jobs={}", list.join(",")))
        .env("SLURM_CONF", conf)
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn job_array_of_shell_jobs_completes() {
    let Some(slurm) = cluster("job_array_of_shell_jobs_completes") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let n = 6;
    let jobs: Vec<JobSpec> = (0..n)
        .map(|i| {
            shell(
                "array-test",
                "echo \"task $TASK in $(pwd) says $MSG\"; echo to-stderr >&2",
            )
            .env("TASK", i.to_string())
            .env("MSG", format!("it's \"{i}\" $HOME"))
            .current_dir(work.path())
            .resources(Resources::new().cpus(1))
        })
        .collect();
    let submitted = slurm.submit_batch(&jobs, logs.path()).expect("sbatch");
    assert_eq!(submitted.len(), n);
    let array = submitted[0].id.job();
    for (i, s) in submitted.iter().enumerate() {
        assert_eq!(
            s.id,
            JobId::array_task(array, i as u32),
            "one array, tasks in order"
        );
    }
    let ids: Vec<JobId> = submitted.iter().map(|s| s.id).collect();
    let states = wait_finished(&slurm, &ids, Duration::from_secs(120));
    for (i, s) in submitted.iter().enumerate() {
        assert_eq!(states[&s.id], JobState::Completed, "{}", s.id);
        let out = read(&s.stdout);
        let dir = work.path().canonicalize().unwrap();
        assert_eq!(
            out.trim(),
            format!("task {i} in {} says it's \"{i}\" $HOME", dir.display()),
            "stdout of {}",
            s.id
        );
        assert_eq!(read(&s.stderr).trim(), "to-stderr", "stderr of {}", s.id);
    }
}

#[test]
fn waves_with_two_kinds_of_resources_make_two_submissions() {
    let Some(slurm) = cluster("waves_with_two_kinds_of_resources_make_two_submissions") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let small = Resources::new().cpus(1);
    let big = Resources::new()
        .cpus(2)
        .time("5m".parse::<TimeLimit>().unwrap());
    let jobs = [
        shell("w", "echo a").resources(small.clone()),
        shell("w", "echo b").resources(big.clone()),
        shell("w", "echo c").resources(small),
    ];
    let s = slurm.submit_batch(&jobs, logs.path()).expect("sbatch");
    // The two small jobs share an array; the big one is a plain job of its own.
    assert_eq!(s[0].id.job(), s[2].id.job());
    assert_eq!((s[0].id.task(), s[2].id.task()), (Some(0), Some(1)));
    assert_eq!(s[1].id.task(), None);
    let ids: Vec<JobId> = s.iter().map(|j| j.id).collect();
    let states = wait_finished(&slurm, &ids, Duration::from_secs(120));
    assert!(
        states.values().all(|st| *st == JobState::Completed),
        "{states:?}"
    );
    let outs: Vec<String> = s
        .iter()
        .map(|j| read(&j.stdout).trim().to_owned())
        .collect();
    assert_eq!(outs, ["a", "b", "c"]);
}

#[test]
fn job_exiting_3_is_failed_with_its_exit_code() {
    let Some(slurm) = cluster("job_exiting_3_is_failed_with_its_exit_code") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let job = slurm
        .submit(&shell("exit-3", "echo dying >&2; exit 3"), logs.path())
        .expect("sbatch");
    let states = wait_finished(&slurm, &[job.id], Duration::from_secs(60));
    match &states[&job.id] {
        JobState::Failed(JobFailure { cause, exit, .. }) => {
            assert_eq!(*cause, FailCause::Exit);
            let exit = exit.expect("Slurm reports the exit code");
            assert_eq!((exit.code, exit.signal), (3, 0));
        }
        other => panic!("expected a failure with exit code 3, got {other}"),
    }
    assert_eq!(read(&job.stderr).trim(), "dying");
}

/// Slurm's smallest limit is one minute, and slurmctld checks limits every 30 s, so this
/// test takes 60 to 100 s; it runs beside the others.
#[test]
fn job_over_its_time_limit_fails_with_timeout() {
    let Some(slurm) = cluster("job_over_its_time_limit_fails_with_timeout") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let limit: TimeLimit = "0:01".parse().unwrap();
    let job = slurm
        .submit(
            &shell("over-time", "sleep 600").resources(Resources::new().time(limit)),
            logs.path(),
        )
        .expect("sbatch");
    let start = Instant::now();
    let states = wait_finished(&slurm, &[job.id], Duration::from_secs(300));
    eprintln!(
        "job_over_its_time_limit_fails_with_timeout: killed after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    match &states[&job.id] {
        JobState::Failed(f) => {
            assert_eq!(f.cause, FailCause::TimeLimit, "{f}");
            assert_eq!(f.reason.as_deref(), Some("TimeLimit"));
            assert!(f.to_string().starts_with("TIMEOUT"), "{f}");
        }
        other => panic!("expected TIMEOUT, got {other}"),
    }
    let stderr = read(&job.stderr);
    assert!(
        stderr.contains("DUE TO TIME LIMIT"),
        "Slurm's message lands in stderr: {stderr}"
    );
}

#[test]
fn scancel_of_sleeping_jobs_leaves_nothing_in_squeue() {
    let test = "scancel_of_sleeping_jobs_leaves_nothing_in_squeue";
    let (Some(conf), Some(slurm)) = (slurm_conf(test), cluster(test)) else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let single = slurm
        .submit(&shell("sleeper", "sleep 300"), logs.path())
        .expect("sbatch");
    let array = slurm
        .submit_batch(
            &[
                shell("sleepers", "sleep 300"),
                shell("sleepers", "sleep 300"),
            ],
            logs.path(),
        )
        .expect("sbatch");
    let ids = vec![single.id, array[0].id, array[1].id];
    let start = Instant::now();
    while slurm.states(&[single.id]).expect("squeue")[&single.id] != JobState::Running {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the sleeper never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !squeue_lists(&conf, &ids).is_empty(),
        "squeue lists them before"
    );
    slurm.cancel(&ids).expect("scancel");
    let start = Instant::now();
    loop {
        let listed = squeue_lists(&conf, &ids);
        if listed.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "squeue still lists after scancel: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let states = slurm.states(&ids).expect("squeue");
    for id in &ids {
        assert!(
            matches!(states[id], JobState::Cancelled | JobState::Unknown),
            "{id}: {}",
            states[id]
        );
    }
    assert_eq!(states[&single.id], JobState::Cancelled);
    // Cancelling again, or cancelling ids Slurm never gave, is not an error.
    slurm.cancel(&ids).expect("scancel of cancelled jobs");
    slurm
        .cancel(&[JobId::plain(3_999_999_999)])
        .expect("scancel of an unknown id");
}

#[test]
fn ids_slurm_never_gave_are_unknown() {
    let Some(slurm) = cluster("ids_slurm_never_gave_are_unknown") else {
        return;
    };
    let ids = [
        JobId::plain(3_999_999_998),
        JobId::array_task(3_999_999_997, 2),
    ];
    let states = slurm.states(&ids).expect("squeue");
    assert_eq!(states[&ids[0]], JobState::Unknown);
    assert_eq!(states[&ids[1]], JobState::Unknown);
}

#[test]
fn sbatch_rejecting_an_option_shows_its_stderr() {
    let test = "sbatch_rejecting_an_option_shows_its_stderr";
    let Some(conf) = slurm_conf(test) else {
        return;
    };
    let slurm = SlurmClient::new(SlurmOptions::new().partition("no-such-partition")).conf(&conf);
    let logs = tempfile::tempdir().unwrap();
    let secret = "hunter2-never-shown";
    let err = slurm
        .submit(&shell("rejected", "true").env("TOKEN", secret), logs.path())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SlurmError::Rejected { .. }), "{err:?}");
    assert!(text.contains("Invalid partition name specified"), "{text}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
    let source = std::error::Error::source(&err).expect("the command's failure");
    assert!(source.to_string().contains("sbatch"), "{source}");

    let bad_option =
        SlurmClient::new(SlurmOptions::new().extra_arg("--no-such-option")).conf(&conf);
    let err = bad_option
        .submit(&shell("rejected", "true"), logs.path())
        .unwrap_err();
    assert!(matches!(err, SlurmError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-option"), "{err}");
}

#[test]
fn unreachable_controller_is_cluster_down() {
    let test = "unreachable_controller_is_cluster_down";
    let Some(conf) = slurm_conf(test) else {
        return;
    };
    // The test cluster's configuration pointing at a port where nothing listens, with a
    // short timeout: the real controller keeps running.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&conf).unwrap();
    let mut moved: String = text
        .lines()
        .filter(|l| !l.starts_with("MessageTimeout="))
        .map(|l| {
            if l.starts_with("SlurmctldPort=") {
                format!("SlurmctldPort={port}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    moved.push_str("MessageTimeout=1\n");
    let dir = tempfile::tempdir().unwrap();
    let down_conf = dir.path().join("slurm.conf");
    std::fs::write(&down_conf, moved).unwrap();
    let slurm = SlurmClient::new(SlurmOptions::new()).conf(&down_conf);
    let err = slurm
        .submit(&shell("down", "true"), dir.path())
        .unwrap_err();
    assert!(matches!(err, SlurmError::ClusterDown { .. }), "{err:?}");
    assert!(err.to_string().contains("slurmctld"), "{err}");
    let err = slurm.states(&[JobId::plain(1)]).unwrap_err();
    assert!(matches!(err, SlurmError::ClusterDown { .. }), "{err:?}");
    let err = slurm.cancel(&[JobId::plain(1)]).unwrap_err();
    assert!(matches!(err, SlurmError::ClusterDown { .. }), "{err:?}");
}

/// Needs no cluster: the commands are looked for in an empty folder.
#[test]
fn missing_sbatch_is_not_installed() {
    let empty = tempfile::tempdir().unwrap();
    let slurm = SlurmClient::new(SlurmOptions::new()).bin_dir(empty.path());
    let err = slurm
        .submit(&shell("nowhere", "true"), empty.path())
        .unwrap_err();
    assert!(matches!(err, SlurmError::NotInstalled { .. }), "{err:?}");
    assert!(err.to_string().contains("`sbatch` was not found"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    let err = slurm.states(&[JobId::plain(1)]).unwrap_err();
    assert!(err.to_string().contains("`squeue` was not found"), "{err}");
    let err = slurm.cancel(&[JobId::plain(1)]).unwrap_err();
    assert!(err.to_string().contains("`scancel` was not found"), "{err}");
}

/// Prints how fast 50 trivial jobs are submitted and finished, as one array and as 50
/// plain jobs. Figures only: nothing about speed is asserted.
#[test]
fn throughput_of_50_trivial_jobs() {
    let Some(slurm) = cluster("throughput_of_50_trivial_jobs") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let jobs: Vec<JobSpec> = (0..50)
        .map(|_| JobSpec::new("trivial", "/bin/true"))
        .collect();

    let start = Instant::now();
    let array = slurm.submit_batch(&jobs, logs.path()).expect("sbatch");
    let submitted = start.elapsed();
    let ids: Vec<JobId> = array.iter().map(|s| s.id).collect();
    let states = wait_finished(&slurm, &ids, Duration::from_secs(300));
    let finished = start.elapsed();
    assert!(
        states.values().all(|s| *s == JobState::Completed),
        "{states:?}"
    );
    eprintln!(
        "throughput_of_50_trivial_jobs: one array: submitted in {:.3} s ({:.0} jobs/s), all finished in {:.1} s ({:.1} jobs/s)",
        submitted.as_secs_f64(),
        50.0 / submitted.as_secs_f64(),
        finished.as_secs_f64(),
        50.0 / finished.as_secs_f64()
    );

    let start = Instant::now();
    let mut ids = Vec::new();
    for job in &jobs {
        ids.push(slurm.submit(job, logs.path()).expect("sbatch").id);
    }
    let submitted = start.elapsed();
    let states = wait_finished(&slurm, &ids, Duration::from_secs(300));
    let finished = start.elapsed();
    assert!(
        states.values().all(|s| *s == JobState::Completed),
        "{states:?}"
    );
    eprintln!(
        "throughput_of_50_trivial_jobs: 50 sbatch calls: submitted in {:.3} s ({:.0} jobs/s), all finished in {:.1} s ({:.1} jobs/s)",
        submitted.as_secs_f64(),
        50.0 / submitted.as_secs_f64(),
        finished.as_secs_f64(),
        50.0 / finished.as_secs_f64()
    );
}
