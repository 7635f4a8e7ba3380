//! The Slurm backend (`PIPELINE_EXECUTOR=slurm`): each claimed step is a Slurm job running
//! this binary as a worker (`pipeline::worker::enter()`). Slurm decides where and when a
//! job runs; this file only submits, watches and cancels, through
//! [`SlurmClient`](crate::cluster::slurm::SlurmClient).
//!
//! The coordinator hands over one job per worker thread ([`Backend::submit`] with one
//! submission, then [`Backend::wait`]). To keep Slurm's controller from seeing one `sbatch`
//! and one `squeue` per step, the backend gathers:
//! - **submissions**: the coordinator announces each job of a wave before its thread
//!   starts ([`Backend::announce`]) and says when the wave is complete; the first thread
//!   to submit waits until every announced job has arrived (at most [`GATHER_MAX`]), then
//!   submits them all with one `submit_batch` (one job array per set of resources), and
//!   hands each thread its job's id. So the items of a `map` go to Slurm as one array;
//! - **states**: one `squeue` (with `scontrol` for jobs it no longer lists) for every job
//!   still active, at most once per [`POLL`], shared by all waiting threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::{Backend, Captured, JobId, JobOutput, JobState, Submission};
use crate::cluster::slurm::{self, JobSpec, SlurmClient, SubmittedJob};
use crate::error::{Error, Result};

/// How long the first submitter of a wave waits at most for the rest of it (announced
/// jobs whose threads have not submitted yet). Reached only if a thread is starved: a
/// wave then becomes two arrays, which is slower but still correct.
const GATHER_MAX: Duration = Duration::from_secs(2);

/// How long a submitter not announced by a coordinator waits for others (a batch call
/// made directly): a short window, as before announcements.
const GATHER_UNANNOUNCED: Duration = Duration::from_millis(20);

/// How often Slurm is asked for the states of the active jobs.
const POLL: Duration = Duration::from_millis(250);

/// Steps submitted to Slurm at once when `max_parallelism` is not set: each costs a
/// sleeping thread of the driver, and Slurm queues what the cluster cannot start yet.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 512;

/// Runs workers as Slurm jobs.
pub(crate) struct SlurmBackend {
    client: SlurmClient,
    exe: PathBuf,
    args: Vec<String>,
    /// Where jobs write their stdout and stderr; the compute nodes must see it.
    log_dir: PathBuf,
    gather: Mutex<Gather>,
    gathered: Condvar,
    jobs: Mutex<HashMap<JobId, Tracked>>,
    /// Held by the thread that asks Slurm, so that one asks at a time.
    polling: Mutex<Option<Instant>>,
}

/// Submissions waiting for the wave's `sbatch`, and their results.
#[derive(Default)]
struct Gather {
    queue: Vec<(u64, JobSpec)>,
    done: HashMap<u64, std::result::Result<JobId, String>>,
    leader: bool,
    next_ticket: u64,
    /// Jobs announced by the coordinator whose threads have not submitted yet.
    announced: usize,
    /// The coordinator is still announcing the current wave.
    wave_open: bool,
}

/// A submitted job: Slurm's id, its log files and its last known state.
struct Tracked {
    submitted: SubmittedJob,
    state: JobState,
}

impl SlurmBackend {
    /// A backend submitting `std::env::current_exe()` with `args`, logs in `log_dir`.
    ///
    /// # Errors
    ///
    /// The running binary's path cannot be found.
    pub(crate) fn new(client: SlurmClient, args: Vec<String>, log_dir: PathBuf) -> Result<Self> {
        let exe =
            std::env::current_exe().map_err(|e| Error::io(PathBuf::from("<current exe>"), e))?;
        Ok(SlurmBackend {
            client,
            exe,
            args,
            log_dir,
            gather: Mutex::new(Gather::default()),
            gathered: Condvar::new(),
            jobs: Mutex::new(HashMap::new()),
            polling: Mutex::new(None),
        })
    }

    /// The backend for a run on `store`, after checking that the compute nodes can
    /// reach the store: a SQLite file or a blob folder is refused unless declared shared.
    ///
    /// # Errors
    ///
    /// [`Error::Executor`] for a store the nodes cannot see; the running binary's path
    /// cannot be found.
    pub(crate) fn for_store(
        slurm: &crate::cluster::Slurm,
        store: &crate::store::Store,
        args: Vec<String>,
    ) -> Result<Self> {
        let (metadata, artifacts, _password) = store.location();
        if !slurm.shared_store {
            let local = if let Some(path) = metadata.strip_prefix("sqlite:") {
                Some(format!("its metadata is the SQLite file {path}"))
            } else {
                artifacts
                    .filter(|a| !a.starts_with("s3://"))
                    .map(|a| format!("its artifacts are in the local folder {a}"))
            };
            if let Some(local) = local {
                return Err(Error::Executor {
                    backend: "slurm",
                    message: format!(
                        "the store is not one the compute nodes can reach: {local}. \
                         Use a shared store (PIPELINE_METADATA=postgres://.. and \
                         PIPELINE_ARTIFACTS=s3://..), or, if these paths are on a file \
                         system every node mounts at the same place (e.g. NFS), declare it \
                         with `shared_store = true` under [slurm] in pipeline.toml \
                         (`Slurm::shared_store(true)` in code). Nothing was submitted."
                    ),
                });
            }
        }
        let log_dir = slurm
            .log_dir
            .clone()
            .unwrap_or_else(|| store.path().join("slurm-logs"));
        let backend = SlurmBackend::new(slurm.client(), args, log_dir)?;
        tracing::info!(
            target: "pipeline",
            "Steps that miss the cache run as Slurm jobs of {}, which must be at this path on \
             the compute nodes; job logs go to {}.",
            backend.exe.display(),
            backend.log_dir.display()
        );
        Ok(backend)
    }

    fn spec(&self, job: &Submission) -> JobSpec {
        let mut spec = JobSpec::new(format!("pipeline-{}", job.label), &self.exe)
            .args(&self.args)
            .env(crate::worker::PIPELINE_WORKER_JOB, &job.job)
            .resources(job.resources.clone());
        if let Ok(dir) = std::env::current_dir() {
            spec = spec.current_dir(dir);
        }
        for (k, v) in &job.env {
            spec = spec.env(k.clone(), v);
        }
        spec
    }

    fn lock_gather(&self) -> MutexGuard<'_, Gather> {
        self.gather.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_jobs(&self) -> MutexGuard<'_, HashMap<JobId, Tracked>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits what the gather holds (as its leader), and records the results.
    fn submit_gathered(&self, mut gather: MutexGuard<'_, Gather>) -> MutexGuard<'_, Gather> {
        gather.leader = true;
        let mut gather = if gather.wave_open || gather.announced > 0 {
            let until = Instant::now() + GATHER_MAX;
            loop {
                if !gather.wave_open && gather.announced == 0 {
                    break gather;
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // A starved thread: submit what is here; its job goes in a later
                    // batch. Counting starts again, so one lost announcement cannot slow
                    // every later wave.
                    tracing::debug!(target: "pipeline", missing = gather.announced,
                        "submitting a wave to Slurm without all of its jobs");
                    gather.announced = 0;
                    gather.wave_open = false;
                    break gather;
                }
                gather = self
                    .gathered
                    .wait_timeout(gather, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        } else {
            drop(gather);
            std::thread::sleep(GATHER_UNANNOUNCED);
            self.lock_gather()
        };
        let batch = std::mem::take(&mut gather.queue);
        drop(gather);
        let (tickets, specs): (Vec<u64>, Vec<JobSpec>) = batch.into_iter().unzip();
        let result = self.client.submit_batch(&specs, &self.log_dir);
        let mut results: Vec<std::result::Result<JobId, String>> = Vec::new();
        match result {
            Ok(submitted) => {
                let mut jobs = self.lock_jobs();
                for job in submitted {
                    let id = job_key(job.id);
                    jobs.insert(
                        id,
                        Tracked {
                            submitted: job,
                            state: JobState::Active,
                        },
                    );
                    results.push(Ok(id));
                }
            }
            Err(e) => {
                let message = e.to_string();
                results.extend(tickets.iter().map(|_| Err(message.clone())));
            }
        }
        let mut gather = self.lock_gather();
        for (ticket, result) in tickets.into_iter().zip(results) {
            gather.done.insert(ticket, result);
        }
        gather.leader = false;
        self.gathered.notify_all();
        gather
    }

    /// Asks Slurm for the states of every active job, unless another thread did within
    /// [`POLL`].
    fn refresh(&self) -> Result<()> {
        let mut last = self.polling.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < POLL) {
            return Ok(());
        }
        let active: Vec<slurm::JobId> = self
            .lock_jobs()
            .values()
            .filter(|t| t.state == JobState::Active)
            .map(|t| t.submitted.id)
            .collect();
        *last = Some(Instant::now());
        if active.is_empty() {
            return Ok(());
        }
        let states = self.client.states(&active).map_err(slurm_error)?;
        let mut jobs = self.lock_jobs();
        for (id, state) in states {
            if let Some(t) = jobs.get_mut(&job_key(id)) {
                t.state = state_of(id, &state);
            }
        }
        Ok(())
    }
}

/// The end of a job's log file (at most [`LOG_KEPT`](crate::store::LOG_KEPT) bytes) and
/// its length; empty when the file is missing (the job never started, or wrote nothing).
fn read_end(path: &std::path::Path) -> Captured {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Captured::default();
    };
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = total.saturating_sub(crate::store::LOG_KEPT);
    let mut kept = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.read_to_end(&mut kept);
    }
    Captured {
        total: total.max(kept.len() as u64),
        kept,
    }
}

/// Our id for a Slurm job: its job id, with an array task's number in the low bits.
fn job_key(id: slurm::JobId) -> JobId {
    match id.task() {
        Some(task) => (id.job() << 20) | u64::from(task) | (1 << 63),
        None => id.job(),
    }
}

/// A Slurm state as the coordinator reads it; `detail` follows "the worker process".
fn state_of(id: slurm::JobId, state: &slurm::JobState) -> JobState {
    use slurm::JobState as S;
    match state {
        // Queued, started, or a state this version does not know: not over.
        S::Pending { .. } | S::Running | S::Unrecognized(_) => JobState::Active,
        S::Completed => JobState::Ended {
            success: true,
            detail: format!("(Slurm job {id}) completed"),
        },
        S::Failed(failure) => JobState::Ended {
            success: false,
            detail: format!("(Slurm job {id}) failed: {failure}"),
        },
        S::Cancelled => JobState::Ended {
            success: false,
            detail: format!("(Slurm job {id}) was cancelled"),
        },
        // Finished so long ago that Slurm forgot it: the store tells what it recorded.
        S::Unknown => JobState::Ended {
            success: false,
            detail: format!("(Slurm job {id}) ended, its end state unknown to Slurm,"),
        },
        // `JobState` is non-exhaustive: a variant added later is not over either.
        #[allow(unreachable_patterns)]
        _ => JobState::Active,
    }
}

fn slurm_error(e: slurm::SlurmError) -> Error {
    Error::Executor {
        backend: "slurm",
        message: e.to_string(),
    }
}

impl Backend for SlurmBackend {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn submit(&self, jobs: Vec<Submission>) -> Result<Vec<JobId>> {
        let mut gather = self.lock_gather();
        let mut tickets = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let ticket = gather.next_ticket;
            gather.next_ticket += 1;
            gather.queue.push((ticket, self.spec(job)));
            tickets.push(ticket);
        }
        gather.announced = gather.announced.saturating_sub(jobs.len());
        // A leader may be waiting for this wave's last job.
        self.gathered.notify_all();
        // Wait until every ticket has its result; lead a submission when none is under way.
        loop {
            if tickets.iter().all(|t| gather.done.contains_key(t)) {
                break;
            }
            if !gather.leader && !gather.queue.is_empty() {
                gather = self.submit_gathered(gather);
                continue;
            }
            gather = self
                .gathered
                .wait(gather)
                .unwrap_or_else(|p| p.into_inner());
        }
        let results: Vec<_> = tickets
            .iter()
            .filter_map(|t| gather.done.remove(t))
            .collect();
        results
            .into_iter()
            .map(|r| {
                r.map_err(|message| Error::Executor {
                    backend: "slurm",
                    message,
                })
            })
            .collect()
    }

    fn states(&self, ids: &[JobId]) -> Result<Vec<JobState>> {
        self.refresh()?;
        let jobs = self.lock_jobs();
        Ok(ids
            .iter()
            .map(|id| {
                jobs.get(id)
                    .map(|t| t.state.clone())
                    .unwrap_or(JobState::Ended {
                        success: false,
                        detail: "is unknown to this run".into(),
                    })
            })
            .collect())
    }

    fn wait(&self, id: JobId) -> Result<JobState> {
        loop {
            let state = self.states(&[id])?.pop().unwrap_or(JobState::Active);
            if state != JobState::Active {
                return Ok(state);
            }
            std::thread::sleep(POLL / 2);
        }
    }

    fn cancel(&self, ids: &[JobId]) -> Result<()> {
        let slurm_ids: Vec<slurm::JobId> = {
            let jobs = self.lock_jobs();
            ids.iter()
                .filter_map(|id| jobs.get(id))
                .filter(|t| t.state == JobState::Active)
                .map(|t| t.submitted.id)
                .collect()
        };
        if slurm_ids.is_empty() {
            return Ok(());
        }
        self.client.cancel(&slurm_ids).map_err(slurm_error)
    }

    fn output(&self, id: JobId) -> Option<JobOutput> {
        let (stdout, stderr) = {
            let jobs = self.lock_jobs();
            let t = jobs.get(&id)?;
            (t.submitted.stdout.clone(), t.submitted.stderr.clone())
        };
        Some(JobOutput {
            stdout: read_end(&stdout),
            stderr: read_end(&stderr),
        })
    }

    fn announce(&self) {
        let mut gather = self.lock_gather();
        gather.announced += 1;
        gather.wave_open = true;
    }

    fn wave_complete(&self) {
        let mut gather = self.lock_gather();
        if gather.wave_open {
            gather.wave_open = false;
            self.gathered.notify_all();
        }
    }

    fn cancel_all(&self) {
        let active = self.active();
        if let Err(e) = self.cancel(&active) {
            tracing::warn!(target: "pipeline", "Could not cancel the run's Slurm jobs: {e}");
        }
    }

    fn forget(&self, id: JobId) {
        // Its log files stay in the log folder (the run's record of what the job printed).
        self.lock_jobs().remove(&id);
    }
}

impl SlurmBackend {
    /// The jobs not known to have ended.
    fn active(&self) -> Vec<JobId> {
        self.lock_jobs()
            .iter()
            .filter(|(_, t)| t.state == JobState::Active)
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Drop for SlurmBackend {
    /// Jobs still active when the run's backend goes away (the run ended on an error, or
    /// was cancelled) are cancelled: none is left running unwatched by a live driver. A
    /// driver that dies instead leaves them to commit their results.
    fn drop(&mut self) {
        let active = self.active();
        if !active.is_empty() {
            let _ = self.cancel(&active);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_tasks_and_plain_jobs_get_distinct_keys() {
        let plain = job_key(slurm::JobId::plain(42));
        let task0 = job_key(slurm::JobId::array_task(42, 0));
        let task1 = job_key(slurm::JobId::array_task(42, 1));
        assert_ne!(plain, task0);
        assert_ne!(task0, task1);
        assert_eq!(plain, 42);
    }

    #[test]
    fn slurm_states_read_as_the_coordinator_needs() {
        let id = slurm::JobId::plain(7);
        assert_eq!(state_of(id, &slurm::JobState::Running), JobState::Active);
        assert!(matches!(
            state_of(id, &slurm::JobState::Completed),
            JobState::Ended { success: true, .. }
        ));
        let JobState::Ended { success, detail } = state_of(id, &slurm::JobState::Cancelled) else {
            panic!("cancelled is an end");
        };
        assert!(!success);
        assert!(detail.contains("Slurm job 7"), "{detail}");
    }
}
