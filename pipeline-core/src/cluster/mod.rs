//! Running steps on a cluster that someone else schedules: the layer the Slurm executor
//! backend calls. Nothing here decides where or when a job runs; the cluster's scheduler
//! does.
//!
//! * [`Resources`] (with [`Memory`] and [`TimeLimit`]): what one step asks for, as users
//!   write it in `#[step(resources(cpus = 4, mem = "8G", gpus = 1, time = "2h"))]`.

mod resources;

pub use resources::{Memory, ParseResourceError, Resources, TimeLimit};
