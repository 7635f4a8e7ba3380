//! Typed, cached ML and data pipelines from plain Rust functions.
//!
//! `#[step]` makes a function a pipeline step, `#[pipeline]` wires steps together, and
//! running a pipeline executes a step only when its cache key (code signature, parameters,
//! input contents, output declarations) has no completed execution in the store. Every
//! run, execution, artifact and lineage edge is recorded in an embedded SQLite store.
//!
//! ```no_run
//! use pipeline::prelude::*;
//!
//! #[step(outputs(train, test))]
//! fn split(n: usize) -> (Vec<f64>, Vec<f64>) {
//!     let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
//!     let (a, b) = all.split_at(n * 4 / 5);
//!     (a.to_vec(), b.to_vec())
//! }
//!
//! #[step]
//! fn mean(xs: &[f64]) -> f64 {
//!     xs.iter().sum::<f64>() / xs.len().max(1) as f64
//! }
//!
//! #[pipeline]
//! fn stats(n: usize) -> Artifact<f64> {
//!     let data = split(n);
//!     mean(&data.train)
//! }
//!
//! fn run() -> pipeline::Result<()> {
//!     let p = stats(1000).store_path("target/doc-store");
//!     let run = p.run()?; // executes both steps
//!     let m: f64 = run.output().load()?;
//!     p.run()?; // both cached: no step body runs, no artifact is read
//!     println!("mean = {m}");
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match run() {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(e) => {
//!             eprintln!("error: {e}"); // `Display`: what failed and what to do
//!             std::process::ExitCode::FAILURE
//!         }
//!     }
//! }
//! ```
//!
//! See `README.md` for the cache-key rules, the store layout and the log lines.

#![warn(clippy::missing_errors_doc)]

pub use pipeline_core::gather;
pub use pipeline_core::parse_expiry;
/// The worker protocol: `pipeline::worker::enter();` first in `main` lets this binary run
/// steps in worker processes (`PIPELINE_EXECUTOR=processes`) and replay them
/// (`--pipeline-replay RUN STEP`).
pub use pipeline_core::worker;
pub use pipeline_core::{
    cacher, canonical, cluster, config, context, policy, report, store, Artifact, ArtifactRecord,
    Attempt, Bincode, Binder, BoxError, Cacher, CancelToken, ContentHash, CopyEvent, CopyOptions,
    CopyReport, EarlierCall, Error, ExecutionDetails, ExecutionRef, GcPolicy, GcReport, Hash128,
    InputComponent, InputRecord, Json, KeyComponents, Lineage, MapList, MapResult, MetricValue,
    Named, OutputDecl, ParseHashError, Pipeline, PipelineOutput, Problem, ReadOnlyCause, Reason,
    Result, Run, RunComparison, RunRecord, RunStatus, StepComparison, StepContext, StepRecord,
    StepReport, StepStatus, Store, StoreOptions, StoreStats, StoredArtifact, UnknownValue,
    VerifyReport,
};
pub use pipeline_macros::{helper, pipeline, step};

#[cfg(feature = "progress")]
pub mod progress;

/// Everything a pipeline file needs: `use pipeline::prelude::*;`.
pub mod prelude {
    pub use pipeline_core::{
        Artifact, Bincode, Cacher, Error, Json, Named, Pipeline, Reason, Result, Run, StepReport,
        StepStatus, Store,
    };
    pub use pipeline_macros::{helper, pipeline, step};
}

#[doc(hidden)]
pub use pipeline_core::__private;
