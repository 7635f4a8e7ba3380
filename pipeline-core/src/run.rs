//! The result of one pipeline run: per-step reports and the bound outputs.

use std::time::Duration;

use crate::key::Hash128;
pub use crate::status::{Reason, StepStatus};
use crate::store::Store;

/// What happened to one step in a run.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub(crate) name: String,
    pub(crate) step: String,
    pub(crate) status: StepStatus,
    pub(crate) duration: Duration,
    pub(crate) cache_key: Option<Hash128>,
    pub(crate) reason: Reason,
    pub(crate) error: Option<String>,
    pub(crate) execution_id: Option<i64>,
}

impl StepReport {
    /// Name within the run (`name`, `name_2`, ... when a step is called more than once).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's own name, shared by repeated calls.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Executed, cached, failed or skipped.
    pub fn status(&self) -> StepStatus {
        self.status
    }

    /// Time spent, including storing outputs; near zero for cached and skipped steps.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Cache key; `None` when the step was skipped before its inputs existed.
    pub fn cache_key(&self) -> Option<Hash128> {
        self.cache_key
    }

    /// Why the step executed, was reused, or was skipped.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The error message of a failed step.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Id of this step's execution record in the store.
    pub fn execution_id(&self) -> Option<i64> {
        self.execution_id
    }
}

/// A finished pipeline run: step reports and outputs bound to the stored artifacts.
#[derive(Debug, Clone)]
pub struct Run<O> {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) pipeline: String,
    pub(crate) output: O,
    pub(crate) steps: Vec<StepReport>,
    pub(crate) duration: Duration,
    pub(crate) store: Store,
}

impl<O> Run<O> {
    /// Unique run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Run name, e.g. `first_pipeline-2026_11_23-12_05_54_573248`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The pipeline's outputs, bound to this run's artifacts; `load()` them on demand.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// Every step in pipeline order.
    pub fn steps(&self) -> &[StepReport] {
        &self.steps
    }

    /// The step called `name` in this run.
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Wall time of the run.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The store the run was recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
