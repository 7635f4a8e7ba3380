//! Running steps on a cluster that someone else schedules: the layer the Slurm executor
//! backend calls. Nothing here decides where or when a job runs; the cluster's scheduler
//! does. We only submit, watch and cancel.
//!
//! * [`Resources`] (with [`Memory`] and [`TimeLimit`]): what one step asks for, as users
//!   write it in `#[step(resources(cpus = 4, mem = "8G", gpus = 1, time = "2h"))]`.
//! * [`slurm`]: a client of Slurm's commands (`sbatch`, `squeue`, `scontrol`, `scancel`):
//!   submit one job or a job array per wave, read the states of many jobs in one call,
//!   cancel a set of jobs in one call.
//!
//! ```no_run
//! use pipeline_core::cluster::slurm::{JobSpec, SlurmClient, SlurmOptions};
//! use pipeline_core::cluster::Resources;
//!
//! let slurm = SlurmClient::new(SlurmOptions::new().partition("debug"));
//! let jobs: Vec<JobSpec> = (0..3)
//!     .map(|i| {
//!         JobSpec::new("step", "/shared/bin/my-pipeline")
//!             .arg(format!("--part={i}"))
//!             .resources(Resources::new().cpus(2))
//!     })
//!     .collect();
//! // One `sbatch` for the three: a job array, since they ask for the same resources.
//! let submitted = slurm.submit_batch(&jobs, "/shared/logs".as_ref())?;
//! let ids: Vec<_> = submitted.iter().map(|s| s.id).collect();
//! // One `squeue` for all of them.
//! for (id, state) in slurm.states(&ids)? {
//!     println!("{id}: {state}");
//! }
//! # Ok::<(), pipeline_core::cluster::slurm::SlurmError>(())
//! ```

mod executor;
pub(crate) mod resources;
pub mod slurm;

#[cfg(test)]
mod slurm_tests;

pub use executor::{Executor, Slurm};
pub use resources::{Memory, ParseResourceError, Resources, TimeLimit};
