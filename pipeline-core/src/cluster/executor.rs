//! Where the steps that miss the cache run, chosen in code with
//! [`Pipeline::executor`](crate::Pipeline::executor); `PIPELINE_EXECUTOR` or
//! `[executor] kind` of `pipeline.toml` choose it otherwise.

use std::path::PathBuf;

use crate::cluster::slurm::{SlurmClient, SlurmOptions};
use crate::config::{ExecutorKind, SlurmConfig};

/// An executor backend with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// Threads of this process (the default).
    Threads,
    /// A child process of this binary per step (`main` must call
    /// `pipeline::worker::enter()` first).
    Processes,
    /// A Slurm job per step, running this binary (`main` must call
    /// `pipeline::worker::enter()` first).
    Slurm(Slurm),
}

impl From<ExecutorKind> for Executor {
    /// The kind with the options of `pipeline.toml`'s `[slurm]` table, for Slurm.
    fn from(kind: ExecutorKind) -> Self {
        match kind {
            ExecutorKind::Threads => Executor::Threads,
            ExecutorKind::Processes => Executor::Processes,
            ExecutorKind::Slurm => Executor::Slurm(Slurm::configured()),
        }
    }
}

impl From<Slurm> for Executor {
    fn from(slurm: Slurm) -> Self {
        Executor::Slurm(slurm)
    }
}

/// The Slurm executor's options: `sbatch`'s partition, account and extra arguments, the
/// cluster's configuration, and where job logs go.
///
/// ```no_run
/// use pipeline::cluster::Slurm;
/// # use pipeline::prelude::*;
/// # #[step] fn train(n: u64) -> u64 { n }
/// # #[pipeline] fn fit(n: u64) -> Artifact<u64> { train(n) }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// pipeline::worker::enter();
/// let run = fit(3).executor(Slurm::new().partition("gpu")).run()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slurm {
    pub(crate) options: SlurmOptions,
    pub(crate) conf: Option<PathBuf>,
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) shared_store: bool,
}

impl Slurm {
    /// Slurm with the cluster's defaults (no partition, account or extra argument).
    pub fn new() -> Self {
        Slurm::default()
    }

    /// The options of `pipeline.toml`'s `[slurm]` table (defaults without one, or when it
    /// cannot be read: running then reports the configuration error).
    pub fn configured() -> Self {
        crate::config::Settings::from_env()
            .map(|s| Slurm::from(&s.slurm))
            .unwrap_or_default()
    }

    /// `sbatch --partition`.
    #[must_use]
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.options = self.options.partition(partition);
        self
    }

    /// `sbatch --account`.
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.options = self.options.account(account);
        self
    }

    /// One more `sbatch` argument, passed as given (e.g. `--qos=low`).
    #[must_use]
    pub fn extra_arg(mut self, arg: impl Into<String>) -> Self {
        self.options = self.options.extra_arg(arg);
        self
    }

    /// The cluster's `slurm.conf` (default: `SLURM_CONF`, else Slurm's own default).
    #[must_use]
    pub fn conf(mut self, slurm_conf: impl Into<PathBuf>) -> Self {
        self.conf = Some(slurm_conf.into());
        self
    }

    /// Where jobs write their stdout and stderr; the driver and every compute node must
    /// see it. Default: `slurm-logs/` in the store's local folder.
    #[must_use]
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Declares a local store (a SQLite file, a blob folder) visible from every compute
    /// node, e.g. on NFS; without it such a store is refused before anything is submitted.
    #[must_use]
    pub fn shared_store(mut self, shared: bool) -> Self {
        self.shared_store = shared;
        self
    }

    /// The client of this cluster's commands.
    pub(crate) fn client(&self) -> SlurmClient {
        let client = SlurmClient::new(self.options.clone());
        match &self.conf {
            Some(conf) => client.conf(conf),
            None => client,
        }
    }
}

impl From<&SlurmConfig> for Slurm {
    fn from(config: &SlurmConfig) -> Self {
        Slurm {
            options: SlurmOptions::from(config),
            conf: None,
            log_dir: config.log_dir.clone(),
            shared_store: config.shared_store,
        }
    }
}
