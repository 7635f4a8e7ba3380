//! `Pipeline<O>`: a built graph plus run settings; `run()` may be called many times.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::artifact::{Artifact, BoundArtifact};
use crate::cancel::CancelToken;
use crate::cluster::Executor;
use crate::cluster::Resources;
use crate::config::ExecutorKind;
use crate::error::Result;
use crate::executor::{self, PolicyOverride, RunSettings};
use crate::graph::{self, Graph, NodeId};
use crate::run::Run;
use crate::store::Store;

/// What a pipeline body may return: `()`, an `Artifact<T>`, a tuple or `Vec` of them, or a
/// step's generated `Outputs` struct.
#[diagnostic::on_unimplemented(
    message = "a `#[pipeline]` must return artifacts, but this one returns `{Self}`",
    label = "not an artifact handle",
    note = "return `()`, an `Artifact<T>` from a step, a tuple or `Vec` of them, or a step's `Outputs` struct"
)]
pub trait PipelineOutput: Clone + Send + Sync + 'static {
    /// Returns a copy whose handles are bound to a run's artifacts.
    fn bind(&self, binder: &Binder<'_>) -> Self;
}

/// Binds unbound handles to the artifacts a run produced or reused.
pub struct Binder<'a> {
    pub(crate) artifacts: &'a HashMap<(NodeId, usize), Arc<BoundArtifact>>,
    /// When set, records the `(graph, node)` of every handle bound (used by
    /// [`Named::named`] to find the call a step's `Outputs` struct came from, without
    /// growing every step's expansion).
    pub(crate) seen: Option<&'a RefCell<Vec<(u64, NodeId)>>>,
}

impl Binder<'_> {
    /// The bound version of `artifact` (unchanged if the run did not produce it).
    pub fn bind<T>(&self, artifact: &Artifact<T>) -> Artifact<T> {
        if let Some(seen) = self.seen {
            seen.borrow_mut().push((artifact.graph, artifact.node));
        }
        match self.artifacts.get(&(artifact.node, artifact.output)) {
            Some(b) => artifact.with_binding(Arc::clone(b)),
            None => artifact.clone(),
        }
    }
}

/// Labels the step call whose outputs these are: `.named(label)` on what a multi-output
/// step call returns (its `Outputs` struct) in a `#[pipeline]` body. For a single-output
/// step, [`Artifact::named`] does the same.
///
/// The label becomes the call's name in the run's records (`StepRecord::name`),
/// `pipeline show`, `diff`, `explain` and the dashboard, in place of the generated `step`,
/// `step_2`, ...; it does not enter the cache key. Rules are those of [`Artifact::named`].
pub trait Named: PipelineOutput {
    /// Names the step call that returned `self` `label`; see [`Artifact::named`].
    ///
    /// # Panics
    /// Outside a `#[pipeline]` body.
    #[must_use = "`.named(..)` returns the handles it was called on"]
    fn named(self, label: impl Into<String>) -> Self
    where
        Self: crate::wire::StepHandles;
}

// For every pipeline output, so that `.named(..)` on a list of handles from a loop finds
// the method and the compiler says why it does not apply (`StepHandles`).
impl<O: PipelineOutput> Named for O {
    fn named(self, label: impl Into<String>) -> Self
    where
        Self: crate::wire::StepHandles,
    {
        let seen = RefCell::new(Vec::new());
        let empty = HashMap::new();
        let _ = self.bind(&Binder {
            artifacts: &empty,
            seen: Some(&seen),
        });
        // A step's `Outputs` holds at least one handle, all of the same call.
        if let Some(&at) = seen.into_inner().first() {
            crate::graph::name_call(at, label.into());
        }
        self
    }
}

impl PipelineOutput for () {
    fn bind(&self, _: &Binder<'_>) -> Self {}
}

impl<T: 'static> PipelineOutput for Artifact<T> {
    fn bind(&self, binder: &Binder<'_>) -> Self {
        binder.bind(self)
    }
}

impl<O: PipelineOutput> PipelineOutput for Vec<O> {
    fn bind(&self, binder: &Binder<'_>) -> Self {
        self.iter().map(|o| o.bind(binder)).collect()
    }
}

macro_rules! tuple_output {
    ($($name:ident)+) => {
        impl<$($name: PipelineOutput),+> PipelineOutput for ($($name,)+) {
            #[allow(non_snake_case)]
            fn bind(&self, binder: &Binder<'_>) -> Self {
                let ($($name,)+) = self;
                ($($name.bind(binder),)+)
            }
        }
    };
}
tuple_output!(A);
tuple_output!(A B);
tuple_output!(A B C);
tuple_output!(A B C D);
tuple_output!(A B C D E);
tuple_output!(A B C D E F);
tuple_output!(A B C D E F G);
tuple_output!(A B C D E F G H);

/// The immutable part of a pipeline, shared by clones.
pub(crate) struct PipelineDef {
    pub(crate) name: String,
    pub(crate) enable_cache: Option<bool>,
    pub(crate) graph: Graph,
}

#[derive(Clone)]
enum StoreSource {
    Default,
    Path(PathBuf),
    Store(Store),
}

/// A pipeline built by a `#[pipeline]` constructor. Clone it to vary run settings.
///
/// ```ignore
/// let p = first_pipeline(0.001);
/// let run = p.run()?;                       // executes every step
/// p.run()?;                                 // reuses cached steps
/// p.clone().enable_cache(false).run()?;     // re-executes everything
/// ```
#[derive(Clone)]
pub struct Pipeline<O> {
    def: Arc<PipelineDef>,
    output: O,
    enable_cache: Option<bool>,
    store: StoreSource,
    opened: Arc<Mutex<Option<Store>>>,
    max_parallelism: Option<usize>,
    executor: Option<Executor>,
    worker_args: Vec<String>,
    run_name: Option<String>,
    step_cache: HashMap<String, bool>,
    step_resources: HashMap<String, Resources>,
    step_policy: HashMap<String, PolicyOverride>,
    cancel: Option<CancelToken>,
    cache_expires: Option<Duration>,
    step_cache_expires: HashMap<String, Duration>,
}

impl<O: PipelineOutput> Pipeline<O> {
    /// Builds a pipeline by running `body` once to record its steps (for generated code).
    pub fn build(name: &str, enable_cache: Option<bool>, body: impl FnOnce() -> O) -> Self {
        let (mut graph, output) = graph::build(body);
        // The pipeline's outputs, as handles: one made inside a map's closure exists only
        // per item and cannot be returned (`map.rs`).
        let seen = RefCell::new(Vec::new());
        let _ = output.bind(&Binder {
            artifacts: &HashMap::new(),
            seen: Some(&seen),
        });
        let outputs: Vec<NodeId> = seen.into_inner().into_iter().map(|(_, n)| n).collect();
        let problems = crate::map::returned_from_closure(&graph, &outputs);
        graph.errors.extend(problems);
        Pipeline {
            def: Arc::new(PipelineDef {
                name: name.to_string(),
                enable_cache,
                graph,
            }),
            output,
            enable_cache: None,
            store: StoreSource::Default,
            opened: Arc::new(Mutex::new(None)),
            max_parallelism: None,
            executor: None,
            worker_args: Vec::new(),
            run_name: None,
            step_cache: HashMap::new(),
            step_resources: HashMap::new(),
            step_policy: HashMap::new(),
            cancel: None,
            cache_expires: None,
            step_cache_expires: HashMap::new(),
        }
    }

    /// Turns caching on or off for every step of the runs of this pipeline value; it takes
    /// precedence over step and pipeline options. A step run with caching off still records
    /// its execution and outputs.
    pub fn enable_cache(mut self, enabled: bool) -> Self {
        self.enable_cache = Some(enabled);
        self
    }

    /// Turns caching on or off for one step in the runs of this pipeline value, by its call
    /// name (`normalizer`, `normalizer_2`) or its step name (every call of it). This is the
    /// strongest setting: it beats [`enable_cache`](Self::enable_cache) and the attributes.
    /// A name the pipeline does not have makes `run()` fail with
    /// [`Error::UnknownStep`](crate::Error::UnknownStep).
    pub fn step_enable_cache(mut self, step: impl Into<String>, enabled: bool) -> Self {
        self.step_cache.insert(step.into(), enabled);
        self
    }

    /// Sets what one step asks of the machine that runs it, by call name or step name,
    /// for the runs of this pipeline value: it replaces the step's own
    /// `#[step(resources(..))]`. Resources never enter a cache key.
    ///
    /// On the thread executor a step's `cpus` count against
    /// [`max_parallelism`](Self::max_parallelism) (a step asking for more than it runs
    /// alone); the other fields matter to the cluster backends, which pass them to the
    /// scheduler. A name the pipeline does not have makes `run()` fail with
    /// [`Error::UnknownStep`](crate::Error::UnknownStep).
    ///
    /// ```
    /// use pipeline::cluster::{Resources, TimeLimit};
    /// use pipeline::prelude::*;
    ///
    /// #[step(resources(cpus = 2))]
    /// fn train(n: u64) -> u64 {
    ///     n * 2
    /// }
    ///
    /// #[pipeline]
    /// fn fit(n: u64) -> Artifact<u64> {
    ///     train(n)
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let ten_minutes = TimeLimit::from_seconds(600);
    ///     let p = fit(3).step_resources("train", Resources::new().cpus(4).time(ten_minutes));
    ///     # let dir = tempfile::tempdir()?;
    ///     # let p = p.store_path(dir.path());
    ///     assert_eq!(p.run()?.output().load()?, 6);
    ///     Ok(())
    /// }
    /// ```
    pub fn step_resources(mut self, step: impl Into<String>, resources: Resources) -> Self {
        self.step_resources.insert(step.into(), resources);
        self
    }

    /// Reuses no execution older than `expires_after` in the runs of this pipeline value:
    /// an older one is a miss whose reason says `cached execution expired (produced 8d
    /// ago, expires after 7d)`, and the step executes again (under the same cache key: its
    /// new execution is the one later runs reuse). It replaces every step's own
    /// `#[step(cache_expires = "..")]`; [`step_cache_expires`](Self::step_cache_expires)
    /// beats it. Expiry never enters a cache key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipeline::prelude::*;
    ///
    /// #[step(cache_expires = "7d")]
    /// fn fetch(day: u32) -> u32 {
    ///     day + 1
    /// }
    ///
    /// #[pipeline]
    /// fn daily(day: u32) -> Artifact<u32> {
    ///     fetch(day)
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     # let dir = tempfile::tempdir()?;
    ///     let p = daily(3);
    ///     # let p = p.store_path(dir.path());
    ///     p.run()?;
    ///     let run = p.clone().cache_expires(Duration::from_secs(3600)).run()?;
    ///     assert_eq!(run.step("fetch").map(|s| s.status()), Some(StepStatus::Cached));
    ///     Ok(())
    /// }
    /// ```
    pub fn cache_expires(mut self, expires_after: Duration) -> Self {
        self.cache_expires = Some(expires_after);
        self
    }

    /// Sets the cache expiry of one step in the runs of this pipeline value, by its call
    /// name (`normalizer`, `normalizer_2`) or its step name (every call of it). This is the
    /// strongest setting: it beats [`cache_expires`](Self::cache_expires) and the step's
    /// own `cache_expires`. A name the pipeline does not have makes `run()` fail with
    /// [`Error::UnknownStep`](crate::Error::UnknownStep).
    pub fn step_cache_expires(mut self, step: impl Into<String>, expires_after: Duration) -> Self {
        self.step_cache_expires.insert(step.into(), expires_after);
        self
    }

    /// Sets how often one step is retried in the runs of this pipeline value, by its call
    /// name (`train`, `train_2`) or its step name (every call of it), replacing its
    /// `#[step(retries = N)]`; its `retry_delay` and `backoff` stay. `retries` attempts
    /// follow a first one that fails (with an `Err` or a panic); only the last one decides
    /// the step's status, and every attempt is recorded (see [`StepRecord::attempts`]).
    /// Retries never enter the cache key. A name the pipeline does not have makes `run()`
    /// fail with [`Error::UnknownStep`](crate::Error::UnknownStep).
    ///
    /// [`StepRecord::attempts`]: crate::StepRecord::attempts
    pub fn step_retries(mut self, step: impl Into<String>, retries: u32) -> Self {
        self.step_policy.entry(step.into()).or_default().retries = Some(retries);
        self
    }

    /// Sets the longest one attempt of a step may run, by call name or step name,
    /// replacing its `#[step(timeout = "..")]`. A step that runs longer fails with
    /// `timed out after <limit>` (and is retried if it has retries). On the process and
    /// Slurm backends its process is ended; on the thread backend a thread cannot be
    /// stopped safely, so the step is given up (its output is never used) and its thread
    /// runs on until it returns or the program ends: use the process backend
    /// (`PIPELINE_EXECUTOR=processes`) for a hard limit. Timeouts never enter the cache
    /// key. A name the pipeline does not have makes `run()` fail with
    /// [`Error::UnknownStep`](crate::Error::UnknownStep).
    ///
    /// # Panics
    ///
    /// When `timeout` is zero.
    pub fn step_timeout(mut self, step: impl Into<String>, timeout: std::time::Duration) -> Self {
        assert!(!timeout.is_zero(), "a step timeout must be more than 0");
        self.step_policy.entry(step.into()).or_default().timeout = Some(timeout);
        self
    }

    /// Records runs in `store`.
    pub fn store(mut self, store: Store) -> Self {
        self.store = StoreSource::Store(store);
        self.opened = Arc::new(Mutex::new(None));
        self
    }

    /// Records runs in the store directory `path` (created on first use).
    pub fn store_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = StoreSource::Path(path.into());
        self.opened = Arc::new(Mutex::new(None));
        self
    }

    /// Runs at most `n` steps at the same time (default: the number of cores).
    pub fn max_parallelism(mut self, n: usize) -> Self {
        self.max_parallelism = Some(n.max(1));
        self
    }

    /// Where steps that miss the cache run, instead of `PIPELINE_EXECUTOR` or
    /// `[executor] kind` of `pipeline.toml`: [`ExecutorKind::Threads`] (the default),
    /// [`ExecutorKind::Processes`], a child process of this binary per step, or Slurm
    /// ([`ExecutorKind::Slurm`] with `pipeline.toml`'s `[slurm]` options, or
    /// [`Slurm`](crate::cluster::Slurm)`::new().partition("gpu")`), a Slurm job per step.
    /// With processes or Slurm, `main` must call `pipeline::worker::enter()` first.
    /// Cached steps are decided here and never submitted.
    pub fn executor(mut self, executor: impl Into<Executor>) -> Self {
        self.executor = Some(executor.into());
        self
    }

    /// Arguments each worker process of [`ExecutorKind::Processes`] is started with
    /// (none by default: `pipeline::worker::enter()` finds its job in the environment).
    /// For binaries whose `main` is not yours, e.g. a test harness, where
    /// `["--exact", "worker_entry"]` selects a test that calls `enter()`.
    pub fn worker_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.worker_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Names the next runs `name` instead of `<pipeline>-<date>`.
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// Lets `token` cancel the next runs: each run checks it before starting a step (see
    /// [`CancelToken`]); a cancelled run ends with
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Number of step calls in the graph.
    pub fn len(&self) -> usize {
        self.def.graph.nodes.len()
    }

    /// Whether the graph has no steps.
    pub fn is_empty(&self) -> bool {
        self.def.graph.nodes.is_empty()
    }

    /// Names of the step calls in pipeline order.
    pub fn step_names(&self) -> Vec<&str> {
        self.def
            .graph
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The store this pipeline records into, opened on first use.
    ///
    /// # Errors
    ///
    /// As for [`Store::open`]: the path is not a store ([`Error::NotAStore`](crate::Error::NotAStore)),
    /// its schema is newer ([`Error::StoreTooNew`](crate::Error::StoreTooNew)), or it cannot be
    /// created or read ([`Error::Io`](crate::Error::Io), [`Error::Database`](crate::Error::Database)).
    pub fn open_store(&self) -> Result<Store> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = opened.as_ref() {
            return Ok(s.clone());
        }
        let store = match &self.store {
            StoreSource::Default => Store::from_env()?,
            StoreSource::Path(p) => Store::open(p)?,
            StoreSource::Store(s) => s.clone(),
        };
        *opened = Some(store.clone());
        Ok(store)
    }

    /// Runs the pipeline: each step executes unless a completed execution with the same
    /// cache key is in the store. Returns [`Error::StepFailed`](crate::Error::StepFailed)
    /// when a step fails; the other steps' outputs stay recorded, so a rerun resumes.
    ///
    /// # Errors
    ///
    /// - [`Error::StepFailed`](crate::Error::StepFailed) when a step returned `Err` or
    ///   panicked; its `source` is the step's error.
    /// - [`Error::Cancelled`](crate::Error::Cancelled) when the run's
    ///   [`CancelToken`] was cancelled before every step had started.
    /// - [`Error::Config`](crate::Error::Config) when no executor is chosen in code and
    ///   `PIPELINE_EXECUTOR` (or `[executor] kind` in `pipeline.toml`) names none.
    /// - [`Error::Parameter`](crate::Error::Parameter) when a parameter cannot be encoded,
    ///   [`Error::Graph`](crate::Error::Graph) when the body wired steps wrongly, and
    ///   [`Error::UnknownStep`](crate::Error::UnknownStep) when per-step caching names no
    ///   step of the pipeline: nothing runs.
    /// - As for [`open_store`](Self::open_store), and [`Error::ReadOnly`](crate::Error::ReadOnly),
    ///   [`Error::StoreLocked`](crate::Error::StoreLocked) or [`Error::Database`](crate::Error::Database)
    ///   when the run cannot be recorded.
    pub fn run(&self) -> Result<Run<O>> {
        if std::env::var_os(crate::worker::PIPELINE_WORKER_JOB).is_some() {
            return Err(crate::Error::NotAWorkerMain {
                pipeline: self.def.name.clone(),
            });
        }
        let store = self.open_store()?;
        let executor = match self.executor.clone() {
            Some(chosen) => chosen,
            None => configured_executor()?.into(),
        };
        let backend: Option<Arc<dyn crate::executor::backend::Backend>> = match executor {
            Executor::Processes => Some(Arc::new(crate::executor::backend::Processes::new(
                self.worker_args.clone(),
            )?)),
            Executor::Slurm(slurm) => {
                Some(Arc::new(crate::executor::slurm::SlurmBackend::for_store(
                    &slurm,
                    &store,
                    self.worker_args.clone(),
                )?))
            }
            Executor::Threads => None,
        };
        // Steps that run elsewhere are cancelled on Ctrl-C (`executor/interrupt.rs`), which
        // needs a token for the run even when none was given.
        let cancel = match (&backend, &self.cancel) {
            (Some(_), None) => Some(CancelToken::new()),
            _ => self.cancel.clone(),
        };
        let _watch = match (&backend, &cancel) {
            (Some(backend), Some(token)) => Some(crate::executor::interrupt::watch(
                token.clone(),
                Arc::clone(backend),
            )),
            _ => None,
        };
        let in_flight = match &backend {
            Some(b) if b.name() == "slurm" => crate::executor::slurm::DEFAULT_IN_FLIGHT,
            _ => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        let settings = RunSettings {
            enable_cache: self.enable_cache,
            pipeline_cache: self.def.enable_cache,
            step_cache: self.step_cache.clone(),
            step_resources: self.step_resources.clone(),
            cache_expires: self.cache_expires,
            step_cache_expires: self.step_cache_expires.clone(),
            step_policy: self.step_policy.clone(),
            max_parallelism: self.max_parallelism.unwrap_or(in_flight),
            run_name: self.run_name.clone(),
            cancel,
            backend,
        };
        let outcome = executor::execute(&self.def.name, &self.def.graph, &store, &settings)?;
        let binder = Binder {
            artifacts: &outcome.artifacts,
            seen: None,
        };
        let run = Run {
            id: outcome.id,
            name: outcome.name,
            pipeline: self.def.name.clone(),
            output: self.output.bind(&binder),
            steps: outcome.reports,
            duration: outcome.duration,
            store,
        };
        match outcome.failure {
            Some(e) => Err(e),
            None => Ok(run),
        }
    }
}

impl<O> std::fmt::Debug for Pipeline<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.def.name)
            .field("steps", &self.def.graph.nodes.len())
            .finish_non_exhaustive()
    }
}

/// The executor `PIPELINE_EXECUTOR` or `pipeline.toml` names, read once per process. A
/// value that names no executor (`PIPELINE_EXECUTOR=process`) is an error of each run
/// that does not choose its executor in code, not the thread executor in silence.
fn configured_executor() -> Result<ExecutorKind> {
    static KIND: std::sync::OnceLock<
        std::result::Result<ExecutorKind, crate::config::ConfigError>,
    > = std::sync::OnceLock::new();
    KIND.get_or_init(|| {
        let cwd = std::env::current_dir().unwrap_or_default();
        crate::config::Settings::resolve_executor(&|name| std::env::var(name).ok(), &cwd)
    })
    .clone()
    .map_err(crate::Error::from)
}
