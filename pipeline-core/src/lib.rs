//! Runtime of the [`pipeline`](https://docs.rs/cached-pipeline) crate (package
//! `cached-pipeline`): artifact handles, the step graph, cache keys, the SQLite + blob
//! store, the parallel executor and the cachers.
//!
//! Users depend on the `pipeline` facade, which re-exports this crate and the macros; the
//! `__private` module is the surface generated code uses and is not a stable API.

#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

mod artifact;
mod async_step;
pub mod cacher;
mod cancel;
pub mod canonical;
mod checks;
pub mod cluster;
pub mod config;
mod context;
mod error;
mod executor;
mod expiry;
mod gather;
mod graph;
mod key;
mod local_fs;
mod map;
mod output;
mod pipeline;
pub mod policy;
pub mod report;
mod run;
pub mod shape;
mod signature;
mod status;
pub mod store;
mod time;
mod value_text;
mod wire;
pub mod worker;

pub use crate::artifact::Artifact;
pub use crate::cacher::{Bincode, Cacher, Json};
pub use crate::cancel::CancelToken;
pub use crate::context::{context, StepContext};
pub use crate::error::{BoxError, Error, ReadOnlyCause, Result, UnknownValue};
pub use crate::expiry::parse_expiry;
pub use crate::gather::gather;
pub use crate::key::{Hash128, InputComponent, KeyComponents, OutputDecl, ParseHashError};
pub use crate::map::{MapList, MapResult};
pub use crate::pipeline::{Binder, Named, Pipeline, PipelineOutput};
pub use crate::run::{Run, StepReport};
pub use crate::signature::{CodePart, CodePartKind, StepCode};
pub use crate::status::{Reason, RunStatus, StepStatus};
pub use crate::store::{
    ArtifactRecord, Attempt, ContentHash, CopyEvent, CopyOptions, CopyReport, EarlierCall,
    ExecutionDetails, ExecutionRef, GcPolicy, GcReport, InputRecord, Lineage, MetricValue, Problem,
    RunComparison, RunRecord, StepComparison, StepRecord, Store, StoreOptions, StoreStats,
    StoredArtifact, VerifyReport,
};

/// Items used by code that `#[step]`, `#[pipeline]` and `#[helper]` generate. Not a
/// stable API: names here change without notice.
#[doc(hidden)]
pub mod __private {
    /// `async fn` steps run through this (feature `tokio`; without it, a compile error).
    pub use crate::async_step::run_async;
    /// `#[step(resources(..))]` builds its constant with these.
    pub use crate::cluster::{Memory, Resources, TimeLimit};
    pub use crate::graph::{
        add_step, artifact, Input, InputMode, InputSpec, IntoStepErrorDisplay, IntoStepErrorSource,
        OutputSpec, StepContext, StepDef, StepError, StepErrorValue, Value,
    };
    pub use crate::pipeline::{Binder, Named, Pipeline, PipelineOutput};
    /// `#[step(retries, retry_delay, backoff, timeout)]` builds its constant with these.
    pub use crate::policy::{parse_duration_or_panic, StepPolicy};
    pub use crate::signature::{
        compile_signature, value_probe, CodePartKind, HelperDecl, PartDecl, PartValue, StepDecl,
        Values,
    };
    pub use crate::{Artifact, Bincode, Json};

    pub use crate::__pl_register_step as register_step;
    pub use crate::__pl_step_entry as step_entry;
    /// Compile-time checks: one spanned error per missing bound (see `checks.rs`).
    pub use crate::checks::{
        build_pipeline, unwired, CannotStore, Checked, InputNotDeserialize, InputNotSerialize,
        InputNotThreadSafe, Never, NoCacher, NoDeserialize, NoSerialize, NotThreadSafe, Ops,
        OutputNotDeserialize, OutputNotSerialize, OutputNotThreadSafe, Pass, Probe, Unwired,
    };
    /// Whether a `#[step]` or `#[helper]` is a module item (see `checks.rs`).
    pub use crate::checks::{
        helper_at_module_level, step_at_module_level, AtModuleLevel, HelperAtModuleLevel,
        InFunctionBody, ScopeFallback, StepAtModuleLevel,
    };
    /// How a pipeline body's arguments become step inputs (see `checks.rs`).
    pub use crate::checks::{
        ByArtifact, ByArtifactRef, ByList, ByListRef, ByValue, HandleMode, Stub, StubRef,
        ValueMode, WireInput,
    };
    /// `#[step(cache_expires = "..")]`, read in a constant (see `expiry.rs`).
    pub use crate::expiry::expiry_or_panic;
    /// The type-erased start of an `async fn` step (see `wire.rs`, `async_body`).
    pub use crate::graph::AsyncBodyFn;
    /// The step registry (see `worker.rs`): one entry per `#[step]`.
    pub use crate::wire::rebuild;
    /// The generic half of a step's wiring (see `wire.rs`).
    pub use crate::wire::{
        async_body, wire, AsyncOutValues, Cachers, Fetched, Given, Handle, InOps, InputList, Out,
        OutOps, OutValues, OutputList, Owned, Ref, Slot, StepFn, StepHandles, StepInfo,
    };
    pub use crate::worker::{StepEntry, STEPS};
    pub use linkme;
    /// The probe traits, imported by generated code as `use ..::probe::*`.
    pub mod probe {
        pub use crate::checks::{ProbeL0, ProbeL1, ProbeL2, ProbeL3, ProbeL4};
    }

    /// Wraps an output value for the executor.
    pub fn value<T: Send + Sync + 'static>(v: T) -> Value {
        std::sync::Arc::new(v)
    }

    /// Asserts at the step definition that a type can be an input or output.
    pub const fn assert_step_value<
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    >() {
    }
}
