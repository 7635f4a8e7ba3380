//! Where a claimed step runs when it is not on one of the run's threads: the [`Backend`]
//! trait, shaped for batch schedulers (submit many jobs, ask their states in one call,
//! cancel, read their logs), and the [`Processes`] backend, a child process of the same
//! binary per step (`PIPELINE_EXECUTOR=processes`).
//!
//! The coordinator claims the key, turns the lease into a token and hands the job (JSON,
//! `worker::Job`) to the backend; the worker (`worker::enter()` at the top of the user's
//! `main`) adopts the lease, runs the step and commits its row. The coordinator then reads
//! that row: a job that ended without committing one is a failed step whose error carries
//! the tail of the job's stderr.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::LOG_KEPT;

/// One job handed to a backend: the worker protocol's job as JSON, and what the backend
/// names it by in messages.
pub(crate) struct Submission {
    /// The step call's name in its pipeline (`train`, `train_2`).
    pub(crate) label: String,
    /// `worker::Job` as JSON, with no password in it (credentials come from the
    /// environment, which the worker inherits).
    pub(crate) job: String,
    /// Variables to set in the worker's environment besides the job (a password the
    /// driver was given in code, which the job leaves out).
    pub(crate) env: Vec<(String, String)>,
    /// What the step asks of the machine that runs it (a cluster's job options).
    pub(crate) resources: crate::cluster::Resources,
}

/// A job's identity within its backend.
pub(crate) type JobId = u64;

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Queued or running.
    Active,
    /// Ended; `0` is success. `detail` says how it ended (exit code, signal, the
    /// scheduler's reason).
    Ended { success: bool, detail: String },
}

/// Runs workers somewhere: child processes here, or jobs of a cluster scheduler. Calls are
/// batched, so that a scheduler is asked once per poll, not once per job.
pub(crate) trait Backend: Send + Sync {
    /// Its name, as `PIPELINE_EXECUTOR` spells it.
    fn name(&self) -> &'static str;

    /// Starts one worker per submission (a wave of ready steps); returns their ids, in order.
    ///
    /// # Errors
    ///
    /// The worker cannot be started (the binary is missing, the scheduler refused).
    fn submit(&self, jobs: Vec<Submission>) -> Result<Vec<JobId>>;

    /// The states of `ids`, in order, with one question to the scheduler.
    ///
    /// # Errors
    ///
    /// The scheduler cannot be asked.
    fn states(&self, ids: &[JobId]) -> Result<Vec<JobState>>;

    /// Blocks until job `id` ends. The default polls [`states`](Self::states).
    ///
    /// # Errors
    ///
    /// As [`states`](Self::states).
    fn wait(&self, id: JobId) -> Result<JobState> {
        let mut pause = Duration::from_millis(1);
        loop {
            let state = self.states(&[id])?.pop().unwrap_or(JobState::Ended {
                success: false,
                detail: "the backend lost the job".into(),
            });
            if state != JobState::Active {
                return Ok(state);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Stops jobs that are still active.
    ///
    /// # Errors
    ///
    /// The scheduler refused.
    fn cancel(&self, ids: &[JobId]) -> Result<()>;

    /// What job `id` wrote to stdout and stderr (the end of each, at most
    /// [`LOG_KEPT`] bytes), once it has ended; `None` for a job it does not know.
    fn output(&self, id: JobId) -> Option<JobOutput>;

    /// Forgets job `id`, which has ended and been reported (its log tail included).
    fn forget(&self, id: JobId);

    /// Cancels every job still active: the run was interrupted (Ctrl-C, SIGTERM).
    fn cancel_all(&self);

    /// The coordinator is handing one more job of the current wave to a worker thread,
    /// which will [`submit`](Self::submit) it. A backend that batches may hold a
    /// submission until the wave is complete and every announced job has arrived, so a
    /// wave is one scheduler call (one Slurm job array). The default does nothing.
    fn announce(&self) {}

    /// Every job of the current wave has been announced (see [`announce`](Self::announce)).
    fn wave_complete(&self) {}
}

/// How much of a failed worker's stderr its step's error shows.
pub(crate) const STDERR_TAIL: usize = 4000;

/// The end of one stream of a job, and how long the stream was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    /// Its last bytes, at most [`LOG_KEPT`].
    pub(crate) kept: Vec<u8>,
    /// Bytes written to it in all.
    pub(crate) total: u64,
}

impl Captured {
    /// Adds `bytes` at the end, dropping the start beyond [`LOG_KEPT`] (in batches, so
    /// that a chatty worker costs no quadratic copying).
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.kept.extend_from_slice(bytes);
        let cap = LOG_KEPT as usize;
        if self.kept.len() > 2 * cap {
            let cut = self.kept.len() - cap;
            self.kept.drain(..cut);
        }
    }

    /// The same, its kept bytes cut to the last [`LOG_KEPT`].
    fn finished(&self) -> Captured {
        let cap = LOG_KEPT as usize;
        let start = self.kept.len().saturating_sub(cap);
        Captured {
            kept: self.kept[start..].to_vec(),
            total: self.total,
        }
    }
}

/// What a job wrote to its two streams.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct JobOutput {
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
}

impl JobOutput {
    /// The last lines of its stderr, at most `max` bytes.
    pub(crate) fn stderr_tail(&self, max: usize) -> String {
        tail(&String::from_utf8_lossy(&self.stderr.kept), max)
    }
}

/// One child process of the same binary per step.
pub(crate) struct Processes {
    exe: PathBuf,
    args: Vec<String>,
    jobs: Mutex<HashMap<JobId, Worker>>,
    next: Mutex<JobId>,
}

struct Worker {
    /// Its process id, to stop it while a thread waits on `child` (taken out then).
    pid: u32,
    child: Option<Child>,
    ended: Option<ExitStatus>,
    /// What the worker wrote to stdout and stderr (each read on a thread of its own).
    stdout: Arc<Mutex<Captured>>,
    stderr: Arc<Mutex<Captured>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Reads `pipe` to its end into `sink` on a thread of its own; with `echo`, passes what it
/// reads on to this process's stdout too (a step's prints show as on the thread backend).
fn capture(
    mut pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<Captured>>,
    echo: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if echo {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(&buf[..n]);
                }
            }
        }
    })
}

impl Processes {
    /// Workers run `std::env::current_exe()` with `args`.
    ///
    /// # Errors
    ///
    /// The path of the running binary cannot be found.
    pub(crate) fn new(args: Vec<String>) -> Result<Processes> {
        let exe =
            std::env::current_exe().map_err(|e| Error::io(PathBuf::from("<current exe>"), e))?;
        Ok(Processes {
            exe,
            args,
            jobs: Mutex::new(HashMap::new()),
            next: Mutex::new(1),
        })
    }

    fn spawn(&self, job: &Submission) -> Result<Worker> {
        let mut command = Command::new(&self.exe);
        command
            .args(&self.args)
            .env(crate::worker::PIPELINE_WORKER_JOB, &job.job)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &job.env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(self.exe.clone(), e))?;
        tracing::debug!(
            target: "pipeline",
            "Step `{}` runs in worker process {}.",
            job.label,
            child.id()
        );
        let stdout = Arc::new(Mutex::new(Captured::default()));
        let stderr = Arc::new(Mutex::new(Captured::default()));
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(capture(pipe, Arc::clone(&stdout), true));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(capture(pipe, Arc::clone(&stderr), false));
        }
        Ok(Worker {
            pid: child.id(),
            child: Some(child),
            ended: None,
            stdout,
            stderr,
            readers,
        })
    }
}

/// Sends SIGKILL to process `pid` (nothing when it is gone already).
fn kill(pid: u32) {
    #[cfg(unix)]
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".into(),
    }
}

fn ended(status: ExitStatus) -> JobState {
    JobState::Ended {
        success: status.success(),
        detail: describe(status),
    }
}

impl Backend for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn submit(&self, jobs: Vec<Submission>) -> Result<Vec<JobId>> {
        let mut ids = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let worker = self.spawn(job)?;
            let id = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                *next += 1;
                *next - 1
            };
            self.jobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, worker);
            ids.push(id);
        }
        Ok(ids)
    }

    fn states(&self, ids: &[JobId]) -> Result<Vec<JobState>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ids
            .iter()
            .map(|id| match jobs.get_mut(id) {
                None => JobState::Ended {
                    success: false,
                    detail: "is unknown".into(),
                },
                Some(w) => {
                    if let Some(status) = w.ended {
                        return ended(status);
                    }
                    match w.child.as_mut().map(Child::try_wait) {
                        Some(Ok(Some(status))) => {
                            w.ended = Some(status);
                            ended(status)
                        }
                        Some(Ok(None)) => JobState::Active,
                        Some(Err(e)) => JobState::Ended {
                            success: false,
                            detail: format!("could not be waited for: {e}"),
                        },
                        None => JobState::Active,
                    }
                }
            })
            .collect())
    }

    fn wait(&self, id: JobId) -> Result<JobState> {
        // Take the child out, so other jobs' calls do not wait on this one's lock.
        let child = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            match jobs.get_mut(&id) {
                Some(w) => w.child.take(),
                None => None,
            }
        };
        let Some(mut child) = child else {
            return Ok(self.states(&[id])?.pop().unwrap_or(JobState::Active));
        };
        let status = child.wait().map_err(|e| Error::io(self.exe.clone(), e))?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = jobs.get_mut(&id) {
            w.ended = Some(status);
            let readers = std::mem::take(&mut w.readers);
            drop(jobs);
            // The pipes close when the child ends (unless it left children behind).
            for reader in readers {
                let _ = reader.join();
            }
        }
        Ok(ended(status))
    }

    fn cancel(&self, ids: &[JobId]) -> Result<()> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let Some(w) = jobs.get_mut(id) else { continue };
            if w.ended.is_some() {
                continue;
            }
            match w.child.as_mut() {
                Some(child) => {
                    let _ = child.kill();
                }
                // A thread is waiting on it: it is not reaped before that wait returns,
                // so its pid is still its own.
                None => kill(w.pid),
            }
        }
        Ok(())
    }

    /// The run was interrupted (SIGINT or SIGTERM on the driver): every worker still
    /// running is killed, whether or not it got the signal too (a terminal's Ctrl-C
    /// reaches the whole process group; `kill -INT <driver>` or a scheduler's SIGTERM
    /// reaches the driver alone).
    fn cancel_all(&self) {
        let ids: Vec<JobId> = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let _ = self.cancel(&ids);
    }

    fn output(&self, id: JobId) -> Option<JobOutput> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let w = jobs.get(&id)?;
        let read =
            |c: &Arc<Mutex<Captured>>| c.lock().unwrap_or_else(|p| p.into_inner()).finished();
        Some(JobOutput {
            stdout: read(&w.stdout),
            stderr: read(&w.stderr),
        })
    }

    fn forget(&self, id: JobId) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// The end of `text`, at most `max` bytes, starting at a line.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(i) => format!("[..]\n{}", &cut[i + 1..]),
        None => format!("[..]{cut}"),
    }
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn a_tail_keeps_the_last_whole_lines() {
        assert_eq!(tail("a\nb\n", 10), "a\nb");
        assert_eq!(tail("first line\nsecond\nthird\n", 12), "[..]\nthird");
        assert_eq!(tail("é".repeat(10).as_str(), 5), "[..]éé");
    }
}
