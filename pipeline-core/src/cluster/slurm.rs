//! A client of Slurm's commands: `sbatch` to submit, `squeue` and `scontrol show job` to
//! watch, `scancel` to cancel. It shells out rather than linking `libslurm`: the commands
//! are what every Slurm site installs and keeps compatible, and their text is documented.
//! It never calls `srun`, which costs about a second per call.
//!
//! * [`SlurmClient::submit_batch`] submits a wave: jobs that ask for the same
//!   [`Resources`] go in one job array (one `sbatch`), a job alone is a plain job. Each job
//!   runs one command through a small `/bin/sh` batch script (`exec`, so Slurm's signals
//!   reach the program), with its own environment variables and working directory.
//!   Its stdout and stderr go to `LOG_DIR/<job id>.out` and `.err`, named in
//!   [`SubmittedJob`]; Slurm's own messages about the job (time limit, cancellation) land
//!   in the `.err` file too.
//! * [`SlurmClient::states`] reads the states of many jobs with one `squeue` call. Slurm
//!   keeps a finished job for `MinJobAge` (300 s by default); with accounting off, as on
//!   many small clusters and in CI, `sacct` has nothing, so jobs that `squeue` does not
//!   list are looked up with `scontrol show job`, and jobs neither knows are
//!   [`JobState::Unknown`].
//! * [`SlurmClient::cancel`] cancels a set of jobs with one `scancel`.
//!
//! The environment a job sees is `sbatch`'s default (`--export=ALL`: the submitting
//! process's variables) plus the variables of its [`JobSpec`]. Values travel inside the
//! batch script, never on a command line, and never appear in an error or a log event.
//!
//! The text of Slurm's commands is parsed without panicking: a line that cannot be read
//! is skipped (its job is then looked up another way, or reported
//! [`JobState::Unknown`]), and an answer with no usable line is a
//! [`SlurmError::Unparsable`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cluster::Resources;
use crate::config::SlurmConfig;

/// `Result` of this module.
pub type Result<T, E = SlurmError> = std::result::Result<T, E>;

/// The most tasks one job array holds. Slurm's default `MaxArraySize` is 1001 (task ids
/// 0..=1000); a larger wave is split into several arrays.
pub const MAX_ARRAY_TASKS: usize = 1000;

/// Options every job of a client gets: `[slurm]` of `pipeline.toml`
/// ([`SlurmConfig`]), or set in code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    partition: Option<String>,
    account: Option<String>,
    extra_args: Vec<String>,
}

impl SlurmOptions {
    /// No option: the cluster's default partition and account.
    pub fn new() -> Self {
        SlurmOptions::default()
    }

    /// `sbatch --partition`.
    #[must_use]
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// `sbatch --account`.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// One more `sbatch` option, passed as given after the ones this client writes (so it
    /// can override them), e.g. `--qos=low` or `--export=NONE`. Options only: a script
    /// path here would replace the batch script.
    #[must_use]
    pub fn extra_arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The partition, if set.
    pub fn get_partition(&self) -> Option<&str> {
        self.partition.as_deref()
    }

    /// The account, if set.
    pub fn get_account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The extra `sbatch` options.
    pub fn get_extra_args(&self) -> &[String] {
        &self.extra_args
    }
}

impl From<&SlurmConfig> for SlurmOptions {
    fn from(config: &SlurmConfig) -> Self {
        SlurmOptions {
            partition: config.partition.clone(),
            account: config.account.clone(),
            extra_args: config.extra_args.clone(),
        }
    }
}

/// One job to submit: a program with its arguments, environment, working directory and
/// resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    current_dir: Option<PathBuf>,
    resources: Resources,
}

impl JobSpec {
    /// A job named `name` (shown by `squeue`; characters other than ASCII letters, digits,
    /// `.`, `_` and `-` become `_`) running `program`, which must be reachable from the
    /// compute nodes.
    pub fn new(name: impl Into<String>, program: impl AsRef<OsStr>) -> Self {
        JobSpec {
            name: name.into(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            resources: Resources::default(),
        }
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the job, over what `sbatch` exports. The value
    /// never appears in errors or logs, so it may be a credential.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// The directory the program starts in, on the compute node (default: `sbatch`'s,
    /// which is this process's working directory).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// What the job asks for.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// The job's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the job asks for.
    pub fn get_resources(&self) -> &Resources {
        &self.resources
    }
}

/// A Slurm job id: `123` for a plain job, `123_4` for task 4 of job array 123.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    job: u64,
    task: Option<u32>,
}

impl JobId {
    /// Plain job `job`.
    pub const fn plain(job: u64) -> Self {
        JobId { job, task: None }
    }

    /// Task `task` of job array `array`.
    pub const fn array_task(array: u64, task: u32) -> Self {
        JobId {
            job: array,
            task: Some(task),
        }
    }

    /// The job id, or for an array task the array's id.
    pub fn job(self) -> u64 {
        self.job
    }

    /// The task id within its array, if this is an array task.
    pub fn task(self) -> Option<u32> {
        self.task
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(t) => write!(f, "{}_{t}", self.job),
            None => write!(f, "{}", self.job),
        }
    }
}

impl std::str::FromStr for JobId {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a Slurm job id (e.g. `123` or `123_4`)");
        let s = s.trim();
        match s.split_once('_') {
            Some((job, task)) => Ok(JobId::array_task(
                parse_u64(job).ok_or_else(bad)?,
                parse_u32(task).ok_or_else(bad)?,
            )),
            None => Ok(JobId::plain(parse_u64(s).ok_or_else(bad)?)),
        }
    }
}

/// A submitted job and where its output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedJob {
    /// The job's id (an array task's for a job of an array).
    pub id: JobId,
    /// File receiving the program's stdout.
    pub stdout: PathBuf,
    /// File receiving the program's stderr and Slurm's messages about the job.
    pub stderr: PathBuf,
}

/// A job's state as Slurm reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to start (also: held, requeued).
    Pending {
        /// Slurm's reason, e.g. `Resources`, `Priority`, `JobHeldUser`; `None` when Slurm
        /// gives none.
        reason: Option<String>,
    },
    /// Started and not finished (also: configuring, completing, suspended).
    Running,
    /// Finished with exit code 0.
    Completed,
    /// Finished without success: a non-zero exit, or killed by Slurm.
    Failed(JobFailure),
    /// Cancelled (`scancel`, or an administrator).
    Cancelled,
    /// Slurm no longer knows the job: it finished more than `MinJobAge` ago and, with
    /// accounting off, its end state is gone; or the id was never Slurm's. Ask the
    /// metadata store what the job recorded.
    Unknown,
    /// A state this client does not know (a newer Slurm); not treated as finished.
    Unrecognized(String),
}

impl JobState {
    /// Whether the job will not change state any more (completed, failed, cancelled or
    /// unknown to Slurm).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed(_) | JobState::Cancelled | JobState::Unknown
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Pending { reason: Some(r) } => write!(f, "pending ({r})"),
            JobState::Pending { reason: None } => write!(f, "pending"),
            JobState::Running => write!(f, "running"),
            JobState::Completed => write!(f, "completed"),
            JobState::Failed(failure) => write!(f, "failed: {failure}"),
            JobState::Cancelled => write!(f, "cancelled"),
            JobState::Unknown => write!(
                f,
                "unknown to Slurm (finished long ago, or never submitted)"
            ),
            JobState::Unrecognized(s) => write!(f, "in Slurm state `{s}`, unknown to this version"),
        }
    }
}

/// How a job failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFailure {
    /// Slurm's end state.
    pub cause: FailCause,
    /// Slurm's reason, e.g. `NonZeroExitCode`, `TimeLimit`; `None` when Slurm gives none.
    pub reason: Option<String>,
    /// The batch script's exit code and signal, when Slurm reports them.
    pub exit: Option<ExitStatus>,
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.cause.slurm_state(),
            self.cause.describe()
        )?;
        if let Some(r) = &self.reason {
            write!(f, ", reason {r}")?;
        }
        if let Some(e) = &self.exit {
            write!(f, ", {e}")?;
        }
        Ok(())
    }
}

/// Slurm's end state of a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailCause {
    /// `FAILED`: the program exited with a non-zero code or was killed by a signal.
    Exit,
    /// `TIMEOUT`: killed at its time limit.
    TimeLimit,
    /// `OUT_OF_MEMORY`: killed past its memory limit (needs cgroups on the nodes).
    OutOfMemory,
    /// `NODE_FAIL`: its node failed.
    NodeFail,
    /// `BOOT_FAIL`: its node did not boot.
    BootFail,
    /// `DEADLINE`: it could not finish before its deadline.
    Deadline,
    /// `PREEMPTED`: another job took its resources.
    Preempted,
}

impl FailCause {
    /// Slurm's name of the state, e.g. `TIMEOUT`.
    pub fn slurm_state(self) -> &'static str {
        match self {
            FailCause::Exit => "FAILED",
            FailCause::TimeLimit => "TIMEOUT",
            FailCause::OutOfMemory => "OUT_OF_MEMORY",
            FailCause::NodeFail => "NODE_FAIL",
            FailCause::BootFail => "BOOT_FAIL",
            FailCause::Deadline => "DEADLINE",
            FailCause::Preempted => "PREEMPTED",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FailCause::Exit => "the program failed",
            FailCause::TimeLimit => {
                "killed by Slurm at its time limit; ask for more with `resources(time = ..)`"
            }
            FailCause::OutOfMemory => {
                "killed by Slurm past its memory limit; ask for more with `resources(mem = ..)`"
            }
            FailCause::NodeFail => "its node failed",
            FailCause::BootFail => "its node did not boot",
            FailCause::Deadline => "it could not finish before its deadline",
            FailCause::Preempted => "preempted by another job",
        }
    }
}

/// A batch script's end, as Slurm's `ExitCode=CODE:SIGNAL` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    /// The exit code (0 when killed by a signal).
    pub code: i32,
    /// The signal that killed it, 0 for none.
    pub signal: i32,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.signal != 0 {
            write!(f, "killed by signal {}", self.signal)
        } else {
            write!(f, "exit code {}", self.code)
        }
    }
}

/// What went wrong talking to Slurm. No variant holds a job's environment or script.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// A Slurm command is not installed (not on `PATH`, or not in the client's
    /// [`bin_dir`](SlurmClient::bin_dir)).
    #[error("`{program}` was not found, so Slurm's commands are not installed here; install them (Debian: `slurm-client`) or put them on PATH")]
    NotInstalled {
        /// The command, e.g. `sbatch`.
        program: String,
        /// The error from starting it.
        #[source]
        source: std::io::Error,
    },

    /// A Slurm command exists but could not be run (permissions, resources).
    #[error("could not run `{program}`: {source}")]
    Spawn {
        /// The command.
        program: String,
        /// The error from starting it or talking to it.
        #[source]
        source: std::io::Error,
    },

    /// The Slurm controller did not answer: `slurmctld` is down or unreachable, or
    /// `SLURM_CONF` names another cluster's configuration.
    #[error("the Slurm controller cannot be reached ({summary}); check that slurmctld runs and that SLURM_CONF names its configuration")]
    ClusterDown {
        /// The line of the command's stderr that says so.
        summary: String,
        /// The command's failure, with its whole stderr.
        #[source]
        source: CommandError,
    },

    /// Slurm refused the request, e.g. `sbatch` with an unknown partition or an invalid
    /// option.
    #[error("`{}` refused the request: {summary}", .source.program)]
    Rejected {
        /// The line of the command's stderr that says why.
        summary: String,
        /// The command's failure, with its whole stderr.
        #[source]
        source: CommandError,
    },

    /// A command's output could not be read.
    #[error("cannot read the output of `{program}`: {problem}; output was `{output}`")]
    Unparsable {
        /// The command.
        program: String,
        /// What was expected.
        problem: String,
        /// The output (at most 500 characters).
        output: String,
    },

    /// A job cannot be written as a batch script (a NUL byte, a bad variable name..).
    #[error("job `{job}` cannot be submitted: {problem}")]
    InvalidJob {
        /// The job's name.
        job: String,
        /// What is wrong.
        problem: String,
    },

    /// The log folder cannot be created.
    #[error("cannot create the job log folder {path}: {source}")]
    LogDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A Slurm command that exited with a failure: its status and stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{program}` exited with {}: {}", status_text(*.status), .stderr.trim())]
pub struct CommandError {
    /// The command.
    pub program: String,
    /// Its exit code; `None` when a signal ended it.
    pub status: Option<i32>,
    /// Its stderr (at most 4000 characters, the end kept).
    pub stderr: String,
}

fn status_text(status: Option<i32>) -> String {
    match status {
        Some(c) => format!("status {c}"),
        None => "a signal".to_owned(),
    }
}

/// A client of one Slurm cluster. Cheap to clone; every call runs one or a few commands
/// and waits for them.
#[derive(Clone, Debug, Default)]
pub struct SlurmClient {
    options: SlurmOptions,
    conf: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
}

/// What a command printed, once it exited successfully.
struct Ran {
    stdout: String,
    stderr: String,
}

impl SlurmClient {
    /// A client using `options` for every job, with Slurm's commands from `PATH` and the
    /// cluster that `SLURM_CONF` (or Slurm's default configuration) names.
    pub fn new(options: SlurmOptions) -> Self {
        SlurmClient {
            options,
            conf: None,
            bin_dir: None,
        }
    }

    /// Uses the cluster configured by `slurm_conf` (sets `SLURM_CONF` for the commands,
    /// and so for the jobs).
    #[must_use]
    pub fn conf(mut self, slurm_conf: impl Into<PathBuf>) -> Self {
        self.conf = Some(slurm_conf.into());
        self
    }

    /// Runs Slurm's commands from `dir` instead of finding them on `PATH`.
    #[must_use]
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// The options every job gets.
    pub fn options(&self) -> &SlurmOptions {
        &self.options
    }

    /// Submits one job as a plain job (one `sbatch`). Its output goes to
    /// `log_dir/<id>.out` and `.err`; `log_dir` is created if missing and must be
    /// reachable from the compute nodes.
    ///
    /// # Errors
    ///
    /// [`SlurmError::InvalidJob`] when the job cannot be written as a script,
    /// [`SlurmError::LogDir`] when `log_dir` cannot be created, and the errors of running
    /// `sbatch`: [`NotInstalled`](SlurmError::NotInstalled),
    /// [`ClusterDown`](SlurmError::ClusterDown), [`Rejected`](SlurmError::Rejected) (stderr
    /// shown), [`Unparsable`](SlurmError::Unparsable).
    pub fn submit(&self, job: &JobSpec, log_dir: &Path) -> Result<SubmittedJob> {
        let log_dir = prepare_log_dir(log_dir)?;
        let mut out = self.submit_group(&[job], &log_dir)?;
        // `submit_group` returns one entry per job given.
        out.pop().ok_or_else(|| SlurmError::Unparsable {
            program: "sbatch".into(),
            problem: "no job id".into(),
            output: String::new(),
        })
    }

    /// Submits a wave of jobs with as few `sbatch` calls as Slurm allows: jobs asking for
    /// the same [`Resources`] go in one job array (split every [`MAX_ARRAY_TASKS`]), a
    /// job alone is a plain job. Returns one [`SubmittedJob`] per job, in the order given.
    /// An array is named after its jobs when they share a name, else `pipeline`.
    ///
    /// When one `sbatch` fails after others succeeded, the jobs already submitted are
    /// cancelled before the error is returned, so none is left behind unknown.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn submit_batch(&self, jobs: &[JobSpec], log_dir: &Path) -> Result<Vec<SubmittedJob>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let log_dir = prepare_log_dir(log_dir)?;
        // Groups by resources, in order of first appearance.
        let mut groups: Vec<(&Resources, Vec<usize>)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match groups.iter_mut().find(|(r, _)| **r == job.resources) {
                Some((_, members)) => members.push(i),
                None => groups.push((&job.resources, vec![i])),
            }
        }
        let mut out: Vec<Option<SubmittedJob>> = vec![None; jobs.len()];
        for (_, members) in &groups {
            for chunk in members.chunks(MAX_ARRAY_TASKS) {
                let group: Vec<&JobSpec> = chunk.iter().map(|&i| &jobs[i]).collect();
                match self.submit_group(&group, &log_dir) {
                    Ok(submitted) => {
                        for (&i, s) in chunk.iter().zip(submitted) {
                            out[i] = Some(s);
                        }
                    }
                    Err(e) => {
                        let done: Vec<JobId> = out.iter().flatten().map(|s| s.id).collect();
                        if !done.is_empty() {
                            if let Err(cancel) = self.cancel(&done) {
                                tracing::warn!(target: "pipeline", jobs = done.len(), error = %cancel,
                                    "could not cancel the jobs of a wave whose submission failed");
                            }
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One `sbatch` for `jobs`, which share resources: a plain job for one, an array for
    /// more. `log_dir` is absolute.
    fn submit_group(&self, jobs: &[&JobSpec], log_dir: &Path) -> Result<Vec<SubmittedJob>> {
        let first = jobs[0];
        let array = jobs.len() > 1;
        let script = batch_script(jobs)?;
        let name = if jobs.iter().all(|j| j.name == first.name) {
            job_name(&first.name)
        } else {
            "pipeline".to_owned()
        };
        let pattern = slurm_path_pattern(log_dir).ok_or_else(|| SlurmError::InvalidJob {
            job: first.name.clone(),
            problem: format!(
                "the log folder {} is not UTF-8 or holds a `\\`, which Slurm cannot take in an output path",
                log_dir.display()
            ),
        })?;
        let stem = if array { "%A_%a" } else { "%j" };
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name={name}"),
            format!("--output={pattern}/{stem}.out"),
            format!("--error={pattern}/{stem}.err"),
        ];
        if array {
            args.push(format!("--array=0-{}", jobs.len() - 1));
        }
        args.extend(self.option_args(&first.resources));
        let ran = self.run("sbatch", &args, Some(script.as_bytes()))?;
        let id = parse_parsable(&ran.stdout).ok_or_else(|| SlurmError::Unparsable {
            program: "sbatch".into(),
            problem: "`--parsable` should print the job id".into(),
            output: clip(&ran.stdout),
        })?;
        if !ran.stderr.trim().is_empty() {
            tracing::debug!(target: "pipeline", job_id = id, stderr = %ran.stderr.trim(), "sbatch said");
        }
        tracing::debug!(target: "pipeline", job_id = id, jobs = jobs.len(), "submitted to Slurm");
        let ids: Vec<JobId> = if array {
            (0..jobs.len() as u32)
                .map(|t| JobId::array_task(id, t))
                .collect()
        } else {
            vec![JobId::plain(id)]
        };
        Ok(ids
            .into_iter()
            .map(|id| SubmittedJob {
                id,
                stdout: log_dir.join(format!("{id}.out")),
                stderr: log_dir.join(format!("{id}.err")),
            })
            .collect())
    }

    /// `sbatch` options from the client's options and a job's resources.
    fn option_args(&self, resources: &Resources) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.options.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.options.account {
            args.push(format!("--account={a}"));
        }
        args.extend(resource_args(resources));
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    /// The states of `jobs` (ids as [`submit`](Self::submit) returned them), read with one
    /// `squeue` call, plus one `scontrol show job` per job (or array) that `squeue` does
    /// not list. Every id given is in the answer; ids Slurm does not know are
    /// [`JobState::Unknown`].
    ///
    /// # Errors
    ///
    /// [`SlurmError::NotInstalled`], [`SlurmError::ClusterDown`], or another failure of
    /// `squeue` or `scontrol` ([`SlurmError::Rejected`]).
    pub fn states(&self, jobs: &[JobId]) -> Result<BTreeMap<JobId, JobState>> {
        let mut found = BTreeMap::new();
        if jobs.is_empty() {
            return Ok(found);
        }
        let wanted: BTreeSet<JobId> = jobs.iter().copied().collect();
        let bases: BTreeSet<u64> = wanted.iter().map(|id| id.job).collect();
        let list = bases
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let args = [
            "--noheader".to_owned(),
            "--array".to_owned(),
            "--states=all".to_owned(),
            format!("--jobs={list}"),
            format!("--Format={SQUEUE_FORMAT}"),
        ];
        // When no id is known any more, squeue fails with "Invalid job id specified".
        if let Some(ran) = self.run_allowing("squeue", &args, is_invalid_job_id)? {
            match_rows(&parse_squeue(&ran.stdout), &wanted, &mut found);
        }
        let missing: BTreeSet<u64> = wanted
            .iter()
            .filter(|id| !found.contains_key(*id))
            .map(|id| id.job)
            .collect();
        for base in missing {
            let args = [
                "--oneliner".to_owned(),
                "show".to_owned(),
                "job".to_owned(),
                base.to_string(),
            ];
            if let Some(ran) = self.run_allowing("scontrol", &args, is_invalid_job_id)? {
                match_rows(&parse_scontrol(&ran.stdout), &wanted, &mut found);
            }
        }
        for id in wanted {
            found.entry(id).or_insert(JobState::Unknown);
        }
        Ok(found)
    }

    /// Cancels `jobs` with one `scancel`. Jobs already finished, or unknown to Slurm, are
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`SlurmError::NotInstalled`], [`SlurmError::ClusterDown`], or [`SlurmError::Rejected`]
    /// when `scancel` refuses (e.g. another user's job).
    pub fn cancel(&self, jobs: &[JobId]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: BTreeSet<JobId> = jobs.iter().copied().collect();
        let args: Vec<String> = ids.iter().map(JobId::to_string).collect();
        self.run_allowing("scancel", &args, |stderr| {
            stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| is_invalid_job_id(l) || l.contains("already completing or completed"))
        })?;
        tracing::debug!(target: "pipeline", jobs = ids.len(), "cancelled Slurm jobs");
        Ok(())
    }

    /// Runs `program`; a failure whose stderr `tolerated` accepts gives `None`.
    fn run_allowing(
        &self,
        program: &str,
        args: &[String],
        tolerated: impl Fn(&str) -> bool,
    ) -> Result<Option<Ran>> {
        match self.run(program, args, None) {
            Ok(ran) => Ok(Some(ran)),
            Err(SlurmError::Rejected { source, .. }) if tolerated(&source.stderr) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `program` with `args` (and `stdin`), waits, and sorts its failure.
    fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Ran> {
        let path = match &self.bin_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(conf) = &self.conf {
            cmd.env("SLURM_CONF", conf);
        }
        let spawn_error = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SlurmError::NotInstalled {
                    program: program.to_owned(),
                    source,
                }
            } else {
                SlurmError::Spawn {
                    program: program.to_owned(),
                    source,
                }
            }
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        // Written from a second thread, so a command that prints before it has read all
        // of its input cannot deadlock against us.
        let output = std::thread::scope(|scope| {
            let writer = child.stdin.take().map(|mut pipe| {
                let bytes = stdin.unwrap_or_default();
                scope.spawn(move || pipe.write_all(bytes))
            });
            let output = child.wait_with_output()?;
            let written = match writer {
                Some(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked"))),
                None => Ok(()),
            };
            // A command that failed may have stopped reading (a broken pipe): its status
            // and stderr say why. One that succeeded must have read everything.
            match written {
                Err(e) if output.status.success() => Err(e),
                _ => Ok(output),
            }
        })
        .map_err(|source| SlurmError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            return Ok(Ran { stdout, stderr });
        }
        let source = CommandError {
            program: program.to_owned(),
            status: output.status.code(),
            stderr: clip_end(&stderr, 4000),
        };
        let summary = summary_line(&stderr);
        if is_cluster_down(&stderr) {
            Err(SlurmError::ClusterDown { summary, source })
        } else {
            Err(SlurmError::Rejected { summary, source })
        }
    }
}

/// Makes `dir` absolute (the nodes resolve relative paths elsewhere) and creates it.
fn prepare_log_dir(dir: &Path) -> Result<PathBuf> {
    let log_err = |source| SlurmError::LogDir {
        path: dir.to_owned(),
        source,
    };
    let dir = std::path::absolute(dir).map_err(log_err)?;
    std::fs::create_dir_all(&dir).map_err(log_err)?;
    Ok(dir)
}

/// `dir` as a literal in an `sbatch --output` pattern: `%` doubled. `None` for a path
/// Slurm cannot take (not UTF-8, or a `\`, which turns pattern expansion off).
fn slurm_path_pattern(dir: &Path) -> Option<String> {
    let text = dir.to_str()?;
    if text.contains('\\') {
        return None;
    }
    Some(text.trim_end_matches('/').replace('%', "%%"))
}

/// `sbatch` options for `resources`.
fn resource_args(resources: &Resources) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(c) = resources.get_cpus() {
        args.push(format!("--cpus-per-task={}", c.max(1)));
    }
    if let Some(m) = resources.get_mem() {
        args.push(format!("--mem={m}"));
    }
    if let Some(g) = resources.get_gpus().filter(|g| *g > 0) {
        args.push(format!("--gres=gpu:{g}"));
    }
    if let Some(t) = resources.get_time() {
        args.push(format!("--time={t}"));
    }
    args
}

/// A job name `squeue` and `scontrol` print as one word.
fn job_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "pipeline".to_owned()
    } else {
        cleaned
    }
}

/// The batch script for `jobs`: the job's command for one, a `case` on
/// `SLURM_ARRAY_TASK_ID` for an array.
fn batch_script(jobs: &[&JobSpec]) -> Result<String> {
    let mut s = String::from("#!/bin/sh\n# Written by pipeline (cluster::slurm).\n");
    if let [job] = jobs {
        job_lines(job, "", &mut s)?;
        return Ok(s);
    }
    s.push_str("case \"${SLURM_ARRAY_TASK_ID-}\" in\n");
    for (i, job) in jobs.iter().enumerate() {
        s.push_str(&format!("{i})\n"));
        job_lines(job, "  ", &mut s)?;
        s.push_str("  ;;\n");
    }
    s.push_str(
        "*)\n  echo \"pipeline: this job array has no task ${SLURM_ARRAY_TASK_ID-}\" >&2\n  exit 2\n  ;;\nesac\n",
    );
    Ok(s)
}

fn job_lines(job: &JobSpec, indent: &str, s: &mut String) -> Result<()> {
    let invalid = |problem: String| SlurmError::InvalidJob {
        job: job.name.clone(),
        problem,
    };
    let quote = |what: &str, text: &OsStr| {
        sh_quote(text)
            .ok_or_else(|| invalid(format!("its {what} holds a NUL byte or is not UTF-8")))
    };
    if let Some(dir) = &job.current_dir {
        let dir = quote("working directory", dir.as_os_str())?;
        s.push_str(&format!("{indent}cd {dir} || exit 1\n"));
    }
    for (name, value) in &job.env {
        if !is_env_name(name) {
            return Err(invalid(format!(
                "`{name}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"
            )));
        }
        let value = quote(&format!("variable {name}"), value)?;
        s.push_str(&format!("{indent}{name}={value}; export {name}\n"));
    }
    s.push_str(indent);
    s.push_str("exec ");
    s.push_str(&quote("program", &job.program)?);
    for arg in &job.args {
        s.push(' ');
        s.push_str(&quote("argument", arg)?);
    }
    s.push('\n');
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// POSIX single quoting: `'` becomes `'\''`. Hand-written, as it is one rule and the
/// script is ours; `None` for text a script cannot hold (NUL, not UTF-8).
fn sh_quote(text: &OsStr) -> Option<String> {
    let text = text.to_str()?;
    if text.contains('\0') {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', r"'\''")))
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
fn parse_parsable(stdout: &str) -> Option<u64> {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = line.split(';').next()?;
    parse_u64(id)
}

/// The `squeue --Format` this client reads: `|`-separated, unpadded, Reason last (it is
/// free text).
const SQUEUE_FORMAT: &str = "ArrayJobID:|,ArrayTaskID:|,JobID:|,State:|,exit_code:|,Reason:";

/// One job (or a block of array tasks) in `squeue` or `scontrol` output.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    /// `JobID`: the job's own id (an array task that started gets one of its own).
    job_id: Option<u64>,
    /// The array and its tasks, for array jobs.
    array: Option<(u64, TaskSet)>,
    state: JobState,
}

/// Array task ids as Slurm prints them: `3`, `0-5`, `1,3,5-7%2`.
#[derive(Debug, PartialEq, Eq)]
struct TaskSet(Vec<(u32, u32)>);

impl TaskSet {
    fn parse(text: &str) -> Option<TaskSet> {
        let text = text.trim();
        let text = text.strip_prefix('[').unwrap_or(text);
        let text = text.strip_suffix(']').unwrap_or(text);
        // `%N` is the most tasks running at once.
        let text = text.split('%').next()?;
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once('-') {
                Some((a, b)) => (parse_u32(a)?, parse_u32(b)?),
                None => {
                    let n = parse_u32(part)?;
                    (n, n)
                }
            };
            ranges.push(range);
        }
        Some(TaskSet(ranges))
    }

    fn contains(&self, task: u32) -> bool {
        self.0.iter().any(|&(a, b)| a <= task && task <= b)
    }
}

/// Rows of `squeue --noheader --Format=SQUEUE_FORMAT`. Lines that cannot be read are
/// skipped.
fn parse_squeue(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut f = line.splitn(6, '|');
            let array_job = f.next()?.trim();
            let task = f.next()?.trim();
            let job_id = f.next()?.trim();
            let state = f.next()?.trim();
            let exit = f.next()?.trim();
            let reason = f.next().unwrap_or("").trim();
            if state.is_empty() {
                return None;
            }
            Some(Row {
                job_id: parse_u64(job_id),
                array: array_of(array_job, task, job_id)?,
                state: parse_state(state, reason, exit),
            })
        })
        .collect()
}

/// Rows of `scontrol --oneliner show job`. Lines that cannot be read are skipped.
fn parse_scontrol(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields = scontrol_fields(line);
            let get = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.as_str())
            };
            let job_id = get("JobId")?;
            let state = get("JobState")?;
            let array = match (get("ArrayJobId"), get("ArrayTaskId")) {
                (Some(a), Some(t)) => array_of(a, t, job_id)?,
                _ => None,
            };
            Some(Row {
                job_id: Some(parse_u64(job_id)?),
                array,
                state: parse_state(
                    state,
                    get("Reason").unwrap_or(""),
                    get("ExitCode").unwrap_or(""),
                ),
            })
        })
        .collect()
}

/// The array a row belongs to: `None` for a plain job (task `N/A` or empty), an outer
/// `None` when the fields cannot be read.
fn array_of(array_job: &str, task: &str, job_id: &str) -> Option<Option<(u64, TaskSet)>> {
    if matches!(task, "" | "N/A" | "(null)") {
        // A plain job: squeue prints its own id as ArrayJobID; nothing to check.
        parse_u64(job_id)?;
        return Some(None);
    }
    Some(Some((parse_u64(array_job)?, TaskSet::parse(task)?)))
}

/// `Key=Value` fields of one `scontrol --oneliner` line. A value may hold spaces (a
/// reason, a path): words up to the next `Key=` belong to it.
fn scontrol_fields(line: &str) -> Vec<(&str, String)> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for word in line.split_whitespace() {
        match word.split_once('=') {
            Some((key, value))
                if !key.is_empty()
                    && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '/')) =>
            {
                fields.push((key, value.to_owned()));
            }
            _ => {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(word);
                }
            }
        }
    }
    fields
}

/// A job state from Slurm's name for it (`squeue %T`, `scontrol JobState=`), its reason
/// and its exit code.
fn parse_state(state: &str, reason: &str, exit: &str) -> JobState {
    // `CANCELLED by 0`, `COMPLETING+`: the first word, without flags.
    let name = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_ascii_uppercase();
    let reason = match reason.trim() {
        "" | "None" | "(null)" | "N/A" => None,
        r => Some(r.to_owned()),
    };
    let failed = |cause| {
        JobState::Failed(JobFailure {
            cause,
            reason: reason.clone(),
            exit: parse_exit(exit),
        })
    };
    match name.as_str() {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
        | "SPECIAL_EXIT" => JobState::Pending {
            reason: reason.clone(),
        },
        "RUNNING" | "CONFIGURING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" | "RESIZING"
        | "SUSPENDED" | "STOPPED" => JobState::Running,
        "COMPLETED" => JobState::Completed,
        "CANCELLED" => JobState::Cancelled,
        "FAILED" => failed(FailCause::Exit),
        "TIMEOUT" => failed(FailCause::TimeLimit),
        "OUT_OF_MEMORY" => failed(FailCause::OutOfMemory),
        "NODE_FAIL" => failed(FailCause::NodeFail),
        "BOOT_FAIL" => failed(FailCause::BootFail),
        "DEADLINE" => failed(FailCause::Deadline),
        "PREEMPTED" => failed(FailCause::Preempted),
        _ => JobState::Unrecognized(state.trim().to_owned()),
    }
}

/// `3:0` (scontrol's `CODE:SIGNAL`) or `768` (squeue's raw wait status).
fn parse_exit(text: &str) -> Option<ExitStatus> {
    let text = text.trim();
    if let Some((code, signal)) = text.split_once(':') {
        return Some(ExitStatus {
            code: code.trim().parse().ok()?,
            signal: signal.trim().parse().ok()?,
        });
    }
    let raw: i32 = text.parse().ok()?;
    if raw < 0 {
        return None;
    }
    Some(ExitStatus {
        code: (raw >> 8) & 0xff,
        signal: raw & 0x7f,
    })
}

/// Puts the state of each wanted id found in `rows` into `found` (first row wins).
fn match_rows(rows: &[Row], wanted: &BTreeSet<JobId>, found: &mut BTreeMap<JobId, JobState>) {
    let mut plain: HashMap<u64, &Row> = HashMap::new();
    let mut arrays: HashMap<u64, Vec<&Row>> = HashMap::new();
    for row in rows {
        match &row.array {
            Some((array, _)) => arrays.entry(*array).or_default().push(row),
            None => {
                if let Some(id) = row.job_id {
                    plain.entry(id).or_insert(row);
                }
            }
        }
    }
    for id in wanted {
        if found.contains_key(id) {
            continue;
        }
        let row = match id.task {
            None => plain.get(&id.job).copied(),
            Some(task) => arrays.get(&id.job).and_then(|rows| {
                rows.iter()
                    .copied()
                    .find(|r| r.array.as_ref().is_some_and(|(_, t)| t.contains(task)))
            }),
        };
        if let Some(row) = row {
            found.insert(*id, row.state.clone());
        }
    }
}

fn is_invalid_job_id(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

fn is_cluster_down(stderr: &str) -> bool {
    [
        "Unable to contact slurm controller",
        "Socket timed out",
        "Connection refused",
        "connect failure",
        "Zero Bytes were transmitted or received",
        "Communication connection failure",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// The line of a command's stderr that says what went wrong: the last `error` line, else
/// the first line that is not a hint like `Try "sbatch --help" for more information`.
fn summary_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("error"))
        .or_else(|| lines.iter().find(|l| !l.starts_with("Try ")))
        .or(lines.first())
        .copied()
        .unwrap_or("no message on stderr");
    clip(line)
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// At most 500 characters of `text`, for messages.
fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}..", &text[..i]),
        None => text.to_owned(),
    }
}

/// The last `max` characters of `text`.
fn clip_end(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let skip = count - max;
    let start = text.char_indices().nth(skip).map_or(0, |(i, _)| i);
    format!("..{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Memory, TimeLimit};

    // Captured from Slurm 22.05.8 (Debian 12), one-node cluster of scripts/services.sh.
    const SQUEUE_MIXED: &str = "\
2|2|7|PENDING|0|Resources
3|N/A|3|FAILED|768|NonZeroExitCode
2|0|5|RUNNING|0|None
2|1|6|COMPLETED|0|None
2|3|2|RUNNING|0|None
4|N/A|4|CANCELLED|0|None
8|N/A|8|TIMEOUT|15|TimeLimit
";

    const SCONTROL_FAILED: &str = "JobId=3 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901757 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-12-01T03:45:55 Partition=debug AllocNode:Sid=localhost:8597 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* WorkDir=/tmp/slurm x StdErr=/tmp/slurmx/b.out StdIn=/dev/null StdOut=/tmp/slurmx/b.out Power= \n";

    const SCONTROL_ARRAY: &str = "\
JobId=7 ArrayJobId=2 ArrayTaskId=2 JobName=wrap UserId=root(0) JobState=COMPLETED Reason=None Dependency=(null) ExitCode=0:0 RunTime=00:00:02
JobId=2 ArrayJobId=2 ArrayTaskId=3 JobName=wrap UserId=root(0) JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15
JobId=9 ArrayJobId=9 ArrayTaskId=4-9%2 JobName=wrap UserId=root(0) JobState=PENDING Reason=JobHeldUser ExitCode=0:0
";

    fn states(rows: &[Row], ids: &[JobId]) -> BTreeMap<JobId, JobState> {
        let mut found = BTreeMap::new();
        match_rows(rows, &ids.iter().copied().collect(), &mut found);
        found
    }

    #[test]
    fn squeue_rows_map_to_typed_states() {
        let rows = parse_squeue(SQUEUE_MIXED);
        assert_eq!(rows.len(), 7);
        let ids = [
            JobId::plain(3),
            JobId::array_task(2, 0),
            JobId::array_task(2, 1),
            JobId::array_task(2, 2),
            JobId::array_task(2, 3),
            JobId::plain(4),
            JobId::plain(8),
            JobId::plain(99),
        ];
        let s = states(&rows, &ids);
        assert_eq!(
            s[&JobId::plain(3)],
            JobState::Failed(JobFailure {
                cause: FailCause::Exit,
                reason: Some("NonZeroExitCode".into()),
                exit: Some(ExitStatus { code: 3, signal: 0 }),
            })
        );
        assert_eq!(s[&JobId::array_task(2, 0)], JobState::Running);
        assert_eq!(s[&JobId::array_task(2, 1)], JobState::Completed);
        assert_eq!(
            s[&JobId::array_task(2, 2)],
            JobState::Pending {
                reason: Some("Resources".into())
            }
        );
        // Task 3's own JobID is the array's id (2); it must not be read as plain job 2.
        assert_eq!(s[&JobId::array_task(2, 3)], JobState::Running);
        assert_eq!(s[&JobId::plain(4)], JobState::Cancelled);
        match &s[&JobId::plain(8)] {
            JobState::Failed(f) => {
                assert_eq!(f.cause, FailCause::TimeLimit);
                assert_eq!(
                    f.exit,
                    Some(ExitStatus {
                        code: 0,
                        signal: 15
                    })
                );
                assert!(f.to_string().starts_with("TIMEOUT"), "{f}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !s.contains_key(&JobId::plain(99)),
            "not listed: left to scontrol"
        );
        assert!(!s.contains_key(&JobId::plain(2)));
    }

    #[test]
    fn scontrol_lines_map_to_typed_states() {
        let s = states(&parse_scontrol(SCONTROL_FAILED), &[JobId::plain(3)]);
        match &s[&JobId::plain(3)] {
            JobState::Failed(f) => {
                assert_eq!(f.cause, FailCause::Exit);
                assert_eq!(f.exit, Some(ExitStatus { code: 3, signal: 0 }));
                assert_eq!(f.reason.as_deref(), Some("NonZeroExitCode"));
            }
            other => panic!("{other:?}"),
        }
        let ids = [
            JobId::array_task(2, 2),
            JobId::array_task(2, 3),
            JobId::array_task(9, 5),
            JobId::array_task(9, 3),
        ];
        let s = states(&parse_scontrol(SCONTROL_ARRAY), &ids);
        assert_eq!(s[&JobId::array_task(2, 2)], JobState::Completed);
        assert!(matches!(
            &s[&JobId::array_task(2, 3)],
            JobState::Failed(JobFailure {
                cause: FailCause::TimeLimit,
                ..
            })
        ));
        assert_eq!(
            s[&JobId::array_task(9, 5)],
            JobState::Pending {
                reason: Some("JobHeldUser".into())
            }
        );
        assert!(!s.contains_key(&JobId::array_task(9, 3)), "outside 4-9");
    }

    #[test]
    fn scontrol_values_with_spaces_stay_whole() {
        let fields = scontrol_fields("JobId=1 Reason=launch failed requeued held WorkDir=/a b");
        assert_eq!(
            fields[1],
            ("Reason", "launch failed requeued held".to_owned())
        );
        assert_eq!(fields[2], ("WorkDir", "/a b".to_owned()));
    }

    #[test]
    fn every_slurm_state_has_a_meaning() {
        let cases = [
            ("PENDING", "pending"),
            ("REQUEUE_HOLD", "pending"),
            ("CONFIGURING", "running"),
            ("COMPLETING", "running"),
            ("SUSPENDED", "running"),
            ("COMPLETED", "completed"),
            ("CANCELLED by 0", "cancelled"),
            ("CANCELLED+", "cancelled"),
            ("OUT_OF_MEMORY", "failed: OUT_OF_MEMORY"),
            ("NODE_FAIL", "failed: NODE_FAIL"),
            ("BOOT_FAIL", "failed: BOOT_FAIL"),
            ("DEADLINE", "failed: DEADLINE"),
            ("PREEMPTED", "failed: PREEMPTED"),
        ];
        for (state, shown) in cases {
            let s = parse_state(state, "None", "0:0").to_string();
            assert!(s.starts_with(shown), "{state}: {s}");
        }
        let new = parse_state("HIBERNATING", "", "");
        assert_eq!(new, JobState::Unrecognized("HIBERNATING".into()));
        assert!(!new.is_finished());
        assert!(parse_state("NODE_FAIL", "", "").is_finished());
        assert!(!parse_state("RUNNING", "", "").is_finished());
    }

    #[test]
    fn odd_output_never_panics_and_reads_nothing() {
        let odd = [
            "",
            "\n\n",
            "|||||",
            "a|b|c|d|e|f",
            "2|x|5|RUNNING|0|None",
            "2|0-|5|RUNNING|0|None",
            "2|99999999999|5|RUNNING|0|None",
            "||N/A|RUNNING||",
            "slurm_load_jobs error: Invalid job id specified",
            "JobId= JobState=",
            "JobState=RUNNING",
            "=== = =x",
            "JobId=5 ArrayJobId=5 ArrayTaskId=[ JobState=RUNNING",
            "é|ü|ñ|RUNNING|0|Ω",
        ];
        for text in odd {
            let ids = [JobId::plain(2), JobId::array_task(2, 0), JobId::plain(5)];
            let found = states(&parse_squeue(text), &ids);
            assert!(found.is_empty(), "{text:?} gave {found:?}");
            let found = states(&parse_scontrol(text), &ids);
            assert!(found.is_empty(), "{text:?} gave {found:?}");
        }
        assert_eq!(parse_exit("x:y"), None);
        assert_eq!(parse_exit("-5"), None);
        assert_eq!(parse_exit("N/A"), None);
        assert_eq!(parse_exit("768"), Some(ExitStatus { code: 3, signal: 0 }));
        // A reason holding the separator stays whole.
        let rows = parse_squeue("7|7|N/A|PENDING|0|odd|reason");
        assert_eq!(
            rows[0].state,
            JobState::Pending {
                reason: Some("odd|reason".into())
            }
        );
    }

    #[test]
    fn task_sets_read_slurm_ranges() {
        let t = TaskSet::parse("[1,3,5-7%2]").unwrap();
        assert!(t.contains(1) && t.contains(3) && t.contains(6) && !t.contains(4));
        assert!(TaskSet::parse("0-5").unwrap().contains(5));
        for bad in ["", "-", "1-", "a", "1,,2", "%2"] {
            assert_eq!(TaskSet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parsable_output_gives_the_job_id() {
        assert_eq!(parse_parsable("42\n"), Some(42));
        assert_eq!(parse_parsable("42;cluster\n"), Some(42));
        assert_eq!(parse_parsable("sbatch: warning: x\n43\n"), Some(43));
        for bad in ["", "\n", "Submitted batch job 42", "-1", "x;y"] {
            assert_eq!(parse_parsable(bad), None, "{bad}");
        }
    }

    #[test]
    fn job_ids_print_and_parse() {
        for text in ["12", "12_3"] {
            assert_eq!(text.parse::<JobId>().unwrap().to_string(), text);
        }
        for bad in ["", "_", "1_", "_1", "1_2_3", "x", "1_99999999999"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_are_sorted_by_their_stderr() {
        assert!(is_cluster_down(
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n"
        ));
        assert!(!is_cluster_down(
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
        ));
        assert_eq!(
            summary_line("sbatch: warning: a\nsbatch: error: Batch job submission failed: Invalid partition name specified\n\n"),
            "sbatch: error: Batch job submission failed: Invalid partition name specified"
        );
        assert_eq!(
            summary_line(
                "sbatch: unrecognized option '--x'\nTry \"sbatch --help\" for more information\n"
            ),
            "sbatch: unrecognized option '--x'"
        );
        assert_eq!(summary_line(""), "no message on stderr");
        assert_eq!(clip_end("abcdef", 3), "..def");
        assert_eq!(clip_end("ab", 3), "ab");
        assert_eq!(clip(&"é".repeat(600)).chars().count(), 502);
    }

    #[test]
    fn resources_become_sbatch_options() {
        let r = Resources::new()
            .cpus(4)
            .mem("8G".parse::<Memory>().unwrap())
            .gpus(1)
            .time("2h".parse::<TimeLimit>().unwrap());
        assert_eq!(
            resource_args(&r),
            [
                "--cpus-per-task=4",
                "--mem=8192M",
                "--gres=gpu:1",
                "--time=0-02:00:00"
            ]
        );
        assert!(resource_args(&Resources::new().gpus(0)).is_empty());
        let client = SlurmClient::new(
            SlurmOptions::new()
                .partition("gpu")
                .account("lab")
                .extra_arg("--qos=low"),
        );
        assert_eq!(
            client.option_args(&Resources::new().cpus(2)),
            [
                "--partition=gpu",
                "--account=lab",
                "--cpus-per-task=2",
                "--qos=low"
            ]
        );
        let from_config = SlurmOptions::from(&SlurmConfig {
            partition: Some("debug".into()),
            account: None,
            extra_args: vec!["--qos=x".into()],
            ..SlurmConfig::default()
        });
        assert_eq!(from_config.get_partition(), Some("debug"));
        assert_eq!(from_config.get_extra_args(), ["--qos=x"]);
    }

    #[test]
    fn scripts_quote_everything_and_branch_per_task() {
        let a = JobSpec::new("a", "/bin/echo")
            .arg("it's $HOME")
            .env("SECRET", "x'y")
            .current_dir("/tmp/a b");
        let b = JobSpec::new("b", "/bin/true");
        let single = batch_script(&[&a]).unwrap();
        assert_eq!(
            single,
            "#!/bin/sh\n# Written by pipeline (cluster::slurm).\ncd '/tmp/a b' || exit 1\nSECRET='x'\\''y'; export SECRET\nexec '/bin/echo' 'it'\\''s $HOME'\n"
        );
        let array = batch_script(&[&a, &b]).unwrap();
        assert!(
            array.contains("case \"${SLURM_ARRAY_TASK_ID-}\" in\n0)\n"),
            "{array}"
        );
        assert!(array.contains("1)\n  exec '/bin/true'\n  ;;\n"), "{array}");
        assert!(array.contains("*)\n"), "{array}");

        let bad_env = JobSpec::new("c", "/bin/true").env("1BAD", "v");
        let e = batch_script(&[&bad_env]).unwrap_err().to_string();
        assert!(e.contains("1BAD"), "{e}");
        let nul = JobSpec::new("d", "/bin/true").arg("a\0b");
        assert!(matches!(
            batch_script(&[&nul]),
            Err(SlurmError::InvalidJob { .. })
        ));
        let secret = JobSpec::new("e", "/bin/true").env("BAD NAME", "hunter2");
        let e = batch_script(&[&secret]).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "a value never shows: {e}");
    }

    #[test]
    fn names_and_paths_are_made_safe_for_slurm() {
        assert_eq!(job_name("train step/1 é"), "train_step_1__");
        assert_eq!(job_name(""), "pipeline");
        assert_eq!(
            slurm_path_pattern(Path::new("/logs/100%/")).as_deref(),
            Some("/logs/100%%")
        );
        assert_eq!(slurm_path_pattern(Path::new("/a\\b")), None);
    }
}
