//! The worker protocol: how the user's own binary runs one recorded execution of a step in
//! another process (`PIPELINE_EXECUTOR=processes`, and cluster jobs), or replays one.
//!
//! Put [`enter`] first in `main`:
//!
//! ```text
//! fn main() {
//!     pipeline::worker::enter();
//!     // .. build and run pipelines as usual
//! }
//! ```
//!
//! Without `PIPELINE_WORKER_JOB` in the environment and `--pipeline-replay` as the first
//! argument, `enter` returns at once. With them, it does its one job and exits; it never
//! returns into `main`, so the rest of `main` (other pipelines in it) does not run.
//!
//! Each `#[step]` registers a [`StepEntry`] in [`STEPS`] (a `linkme` distributed slice,
//! gathered at link time): the step's full path and code signature, and a function that
//! rebuilds a call of the step from its stored inputs (parameters decoded from their
//! stored form, see `graph::encode_param`). Steps cannot be generic (`#[step]` refuses it),
//! so every step has an entry. Each call of a step in a pipeline refers to its entry, which
//! keeps the entry in the binary (a linker drops what nothing refers to): a binary holds
//! the entries of the steps its pipelines use.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::artifact::BoundArtifact;
use crate::config::StoreConfig;
use crate::error::BoxError;
use crate::executor::step::{execute_and_commit, Commit, Outcome};
use crate::graph::{InputMode, InputSource, Node, OutputSpec, Resolved, StepContext, StepDef};
use crate::key::{Hash128, KeyComponents};
use crate::policy::StepPolicy;
use crate::run::StepStatus;
use crate::store::{Completion, InputRow, LeaseToken, StepRecord, Store};
use crate::wire::StepInfo;

/// The environment variable holding a worker's [`Job`]: JSON, or the path of a file
/// holding it.
pub const PIPELINE_WORKER_JOB: &str = "PIPELINE_WORKER_JOB";

/// The environment variable holding the PostgreSQL password of a store the driver was
/// given in code (the job itself holds no password).
pub const PIPELINE_WORKER_PASSWORD: &str = "PIPELINE_WORKER_PASSWORD";

/// The exit code of a worker that refuses its job because its step's code differs from the
/// recorded one (a stale binary), or because it has no such step.
pub const EXIT_STALE: i32 = 3;

/// One `#[step]`, as a worker finds it.
pub struct StepEntry {
    /// The step's code (full path, signature), name and input and output names.
    pub info: StepInfo,
    /// Rebuilds a call of the step: parameter `i` decoded from `params[i]`, artifact inputs
    /// (`None`) left for the worker to bind (`wire::rebuild::<S>`).
    pub rebuild: Rebuild,
}

/// How a [`StepEntry`] rebuilds a call of its step from stored inputs.
pub type Rebuild = fn(&'static StepEntry, &[Option<Vec<u8>>]) -> Result<StepDef, BoxError>;

impl StepEntry {
    /// The step's full path: its module path and name (`my_crate::train::fit`).
    pub fn path(&self) -> &'static str {
        self.info.code.path
    }
}

/// Every `#[step]` linked into this binary.
#[linkme::distributed_slice]
pub static STEPS: [StepEntry];

/// Registers a step's entry in [`STEPS`] (for generated code). Through this macro rather
/// than `linkme`'s attributes in the step's expansion: a wrong `#[step(crate = ..)]` path
/// is then one error, not also an unknown `#[linkme]` attribute.
#[doc(hidden)]
#[macro_export]
macro_rules! __pl_register_step {
    ($(#[$meta:meta])* $vis:vis static $name:ident : $ty:ty = $init:expr ;) => {
        $(#[$meta])*
        #[$crate::__private::linkme::distributed_slice($crate::__private::STEPS)]
        #[linkme(crate = $crate::__private::linkme)]
        $vis static $name: $ty = $init;
    };
}

/// `&<step>::__PL_ENTRY`, the entry [`__pl_register_step`] declared in a step's module
/// (for generated code): through a macro, so that a wrong crate path leaves it unexpanded
/// instead of adding an error about the missing entry.
#[doc(hidden)]
#[macro_export]
macro_rules! __pl_step_entry {
    ($step:ident) => {
        &$step::__PL_ENTRY
    };
}

/// The step whose full path is `path`.
pub fn entry(path: &str) -> Option<&'static StepEntry> {
    STEPS.iter().find(|e| e.path() == path)
}

/// The step a recorded execution ran: its module and step name, as its key components
/// record them.
fn entry_of(components: &KeyComponents) -> Option<&'static StepEntry> {
    STEPS
        .iter()
        .find(|e| e.info.name == components.step && e.info.code.code().module == components.module)
}

/// Where a worker finds the store: locations as [`StoreConfig::new`] reads them, never
/// with a password (credentials come from the environment: `AWS_*`, and
/// [`PIPELINE_WORKER_PASSWORD`] or the driver's own `PIPELINE_METADATA`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStore {
    /// `sqlite:PATH/metadata.sqlite` or `postgres://USER@HOST/DB`.
    pub metadata: String,
    /// A folder or `s3://BUCKET/PREFIX`; `None` for a local store's own folder.
    pub artifacts: Option<String>,
    /// The driver's `StoreOptions::lease_ttl`, in milliseconds: the worker beats its lease
    /// within it.
    #[serde(default)]
    pub lease_ttl_ms: Option<u64>,
}

impl JobStore {
    /// Opens the store.
    ///
    /// # Errors
    ///
    /// As [`Store::connect`].
    pub fn open(&self) -> crate::Result<Store> {
        let mut config = StoreConfig::new(&self.metadata, self.artifacts.as_deref())?;
        if let Ok(password) = std::env::var(PIPELINE_WORKER_PASSWORD) {
            config = config.with_password(&password);
        }
        let mut options = crate::store::StoreOptions::default();
        if let Some(ms) = self.lease_ttl_ms {
            options.lease_ttl = Duration::from_millis(ms);
        }
        Store::connect_with(&config, options)
    }
}

/// One input of a job, as the worker finds it in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobInput {
    /// An upstream step's output.
    Artifact {
        /// The argument's name.
        name: String,
        /// Its content hash.
        hash: Hash128,
        /// Its size in bytes.
        size: u64,
        /// The execution that wrote it.
        producer: i64,
        /// The producing step's full path (whose cacher reads the bytes).
        producer_step: String,
        /// The producing call's name in the pipeline.
        producer_name: String,
        /// Which output of the producer.
        output: usize,
    },
    /// A parameter, decoded from its stored form.
    Parameter {
        /// The argument's name.
        name: String,
        /// The blob holding its stored form (bincode).
        blob: Hash128,
    },
}

/// What a worker is asked to do: run one claimed execution of a step and commit it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Where the store is.
    pub store: JobStore,
    /// The run the execution belongs to.
    pub run_id: String,
    /// The call's name in its pipeline (`train`, `train_2`).
    pub node: String,
    /// The call's position in the pipeline.
    pub position: usize,
    /// The step's full path (`my_crate::train::fit`).
    pub step: String,
    /// The complete code signature the run computed (16 hex digits); a worker whose step
    /// has another refuses the job.
    pub signature: String,
    /// The cache key claimed.
    pub cache_key: Hash128,
    /// What the key was computed from.
    pub components: KeyComponents,
    /// Why the step executes, as recorded.
    pub reason: String,
    /// Whether the step runs again over damaged stored outputs, which its outputs then
    /// replace.
    #[serde(default)]
    pub replace_outputs: bool,
    /// The earlier execution the miss was compared with (JSON), as recorded.
    pub compared: Option<String>,
    /// The claim, which the worker adopts, beats and commits.
    pub lease: LeaseToken,
    /// The inputs in declaration order.
    pub inputs: Vec<JobInput>,
    /// The outputs' names.
    pub outputs: Vec<String>,
    /// Retries and timeout as the driver resolved them (the step's own, or the run's
    /// override); the worker retries and times out the body itself, so a timed-out step's
    /// process ends with it.
    #[serde(default)]
    pub policy: StepPolicy,
}

/// Runs the worker's job or a replay when this process was started for one, and exits;
/// otherwise returns at once. Call it first in `main`.
///
/// * `PIPELINE_WORKER_JOB` set: runs that one execution (see [`Job`]) and exits with 0
///   (committed as executed), 1 (the step failed, or the job could not run), 2 (the job
///   cannot be read) or [`EXIT_STALE`] (this binary's step differs from the recorded one).
/// * `--pipeline-replay RUN STEP [--store DIR]` as the arguments: runs step call `STEP`
///   of run `RUN` again on its recorded inputs, prints whether its outputs equal the
///   recorded ones, and exits with 0 (equal), 1 (different) or 2 (it could not run). The
///   store is `DIR`, else the one the environment and `pipeline.toml` name.
pub fn enter() {
    if let Some(job) = std::env::var_os(PIPELINE_WORKER_JOB) {
        std::process::exit(run_worker(job));
    }
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "--pipeline-replay") {
        std::process::exit(replay(args.collect()));
    }
}

fn run_worker(text: OsString) -> i32 {
    let job = match read_job(&text) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("pipeline worker: cannot read the job in {PIPELINE_WORKER_JOB}: {e}");
            return 2;
        }
    };
    let store = match job.store.open() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("pipeline worker: cannot open the store: {e}");
            return 1;
        }
    };
    match work(&store, &job) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pipeline worker: step `{}`: {e}", job.node);
            1
        }
    }
}

fn read_job(text: &OsString) -> Result<Job, BoxError> {
    let text = text.to_string_lossy();
    if text.trim_start().starts_with('{') {
        return Ok(serde_json::from_str(&text)?);
    }
    let file = std::fs::read_to_string(text.as_ref())
        .map_err(|e| format!("`{text}` is neither JSON nor a readable file: {e}"))?;
    Ok(serde_json::from_str(&file)?)
}

/// Runs `job` in `store`; returns the exit code.
fn work(store: &Store, job: &Job) -> Result<i32, BoxError> {
    let found = entry(&job.step);
    let mine = found.map(|e| format!("{:016x}", e.info.code.signature()));
    if mine.as_deref() != Some(job.signature.as_str()) {
        let message = match mine {
            Some(mine) => format!(
                "stale worker: step `{}` in this binary ({}) has code signature {mine}, but the run expects {}; rebuild the binary the workers run",
                job.step,
                current_exe(),
                job.signature
            ),
            None => format!(
                "stale worker: this binary ({}) has no step `{}` (the run expects code signature {}); rebuild the binary the workers run",
                current_exe(),
                job.step,
                job.signature
            ),
        };
        eprintln!("pipeline worker: {message}");
        // Release the claim as failed with that message: nothing is recorded as done.
        let lease = store.adopt_lease(job.lease.clone())?;
        lease.commit(Completion {
            details: Default::default(),
            status: StepStatus::Failed,
            reason: Some(job.reason.clone()),
            error: Some(message),
            compared: job.compared.clone(),
            duration: Duration::ZERO,
            outputs: Vec::new(),
        })?;
        return Ok(EXIT_STALE);
    }
    let entry = found.ok_or("internal error: the step vanished")?;
    // From here on the store handle beats the lease until it is committed.
    let lease = store.adopt_lease(job.lease.clone())?;
    let params = job
        .inputs
        .iter()
        .map(|input| match input {
            JobInput::Parameter { blob, .. } => read_param(store, *blob).map(Some),
            JobInput::Artifact { .. } => Ok(None),
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let node = node_of(entry, &params, job.node.clone())?;
    let inputs = job
        .inputs
        .iter()
        .zip(&node.inputs)
        .map(|(input, spec)| match input {
            JobInput::Artifact {
                hash,
                size,
                producer,
                producer_step,
                producer_name,
                output,
                ..
            } => {
                let output_spec = producer_output(producer_step, *output, spec)?;
                let bound = bind(store, output_spec, *hash, *size, *producer, producer_name)?;
                Ok(Some(Resolved::Artifact {
                    value: None,
                    bound: Arc::new(bound),
                }))
            }
            JobInput::Parameter { .. } => Ok(param_input(spec)),
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let input_rows = job
        .inputs
        .iter()
        .map(|input| match input {
            JobInput::Artifact {
                name,
                hash,
                producer,
                ..
            } => InputRow {
                name: name.clone(),
                hash: Some(*hash),
                producer: Some(*producer),
                value: None,
            },
            JobInput::Parameter { name, blob } => InputRow {
                name: name.clone(),
                hash: None,
                producer: None,
                value: Some(*blob),
            },
        })
        .collect();
    let done = execute_and_commit(
        Commit {
            store,
            run_id: &job.run_id,
            position: job.position,
            key: job.cache_key,
            components: &job.components,
            reason: job.reason.clone(),
            replace_outputs: job.replace_outputs,
            compared: job.compared.clone(),
            lease: Some(lease),
            policy: job.policy,
            cancel: None,
        },
        &node,
        inputs,
        input_rows,
    );
    Ok(match done.result {
        Ok(Outcome::Executed { .. }) => 0,
        Err(failure) => {
            eprintln!(
                "pipeline worker: step `{}` failed: {}",
                job.node, failure.message
            );
            1
        }
    })
}

fn current_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<unknown path>".into())
}

/// The bytes of a parameter's stored form.
fn read_param(store: &Store, blob: Hash128) -> Result<Vec<u8>, BoxError> {
    Ok(store.read_blob(blob, "bincode", |r| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(r, &mut bytes)?;
        Ok(bytes)
    })?)
}

/// A call of `entry` as a node of its own, parameters decoded from `params`.
fn node_of(
    entry: &'static StepEntry,
    params: &[Option<Vec<u8>>],
    name: String,
) -> Result<Node, BoxError> {
    let def = (entry.rebuild)(entry, params).map_err(|e| {
        format!(
            "a parameter of step `{}` cannot be decoded: {e}",
            entry.path()
        )
    })?;
    Ok(Node::new(name, def))
}

/// A parameter input as a step body takes it (as `take_inputs` does on a thread).
fn param_input(spec: &crate::graph::InputSpec) -> Option<Resolved> {
    match &spec.source {
        InputSource::Param(p) => {
            let fresh = if spec.mode == InputMode::Owned {
                (p.fresh)().ok()
            } else {
                None
            };
            Some(Resolved::Param(Arc::clone(&p.value), fresh))
        }
        InputSource::Artifact { .. } => None,
    }
}

/// Output `output` of a call of `producer`, stored as `hash`, bound for loading.
/// How output `output` of step `producer` (its module path) is stored, for binding input
/// `input` of the step a worker runs: from the producer's registry entry, or, for a list
/// the built-in `gather` call wrote, from the input's own type (`gather.rs`).
fn producer_output(
    producer: &str,
    output: usize,
    input: &crate::graph::InputSpec,
) -> Result<OutputSpec, BoxError> {
    if producer == crate::gather::GATHER_PATH || producer == crate::map::SPLIT_PATH {
        let spec = input.bincode_spec.ok_or_else(|| {
            format!(
                "input `{}` was written by the built-in `{producer}`, but its step does not say how such a value is stored",
                input.name
            )
        })?;
        return Ok(spec("output", crate::cacher::Bincode));
    }
    let entry = self::entry(producer).ok_or_else(|| {
        format!(
            "this binary has no step `{producer}`, which wrote input `{}`",
            input.name
        )
    })?;
    let def = (entry.rebuild)(entry, &[])?;
    def.outputs
        .into_iter()
        .nth(output)
        .ok_or_else(|| format!("step `{producer}` has no output number {output}").into())
}

fn bind(
    store: &Store,
    spec: OutputSpec,
    hash: Hash128,
    size: u64,
    execution: i64,
    producer_name: &str,
) -> Result<BoundArtifact, BoxError> {
    Ok(BoundArtifact {
        store: store.clone(),
        hash,
        size,
        step: producer_name.to_string(),
        output_name: spec.decl.name.clone(),
        type_name: spec.decl.type_name.clone(),
        spec: Arc::new(spec),
        execution,
    })
}

/// `--pipeline-replay RUN STEP [--store DIR]`: returns the exit code.
fn replay(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let usage = "usage: <binary> --pipeline-replay RUN STEP [--store DIR]";
    let (run, step, dir) = match args.as_slice() {
        [run, step] => (run, step, None),
        [run, step, flag, dir] if flag == "--store" => (run, step, Some(dir)),
        _ => {
            eprintln!("{usage}");
            return 2;
        }
    };
    let store = match dir {
        Some(dir) => Store::open(dir),
        None => Store::from_env(),
    };
    let result = store
        .map_err(BoxError::from)
        .and_then(|store| replay_step(&store, run, step));
    match result {
        Ok(lines) => {
            for line in &lines.lines {
                println!("{line}");
            }
            if lines.equal {
                println!("Outputs equal the recorded ones.");
                0
            } else {
                println!("Outputs differ from the recorded ones.");
                1
            }
        }
        Err(e) => {
            eprintln!("error: cannot replay step `{step}` of run `{run}`: {e}");
            2
        }
    }
}

/// What a replay found.
struct Replayed {
    lines: Vec<String>,
    equal: bool,
}

fn replay_step(store: &Store, run: &str, step: &str) -> Result<Replayed, BoxError> {
    let steps = store.run_steps(run)?;
    let Some(record) = steps.iter().find(|s| s.name == step) else {
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "the run has no step call `{step}`; its steps are: {}",
            names.join(", ")
        )
        .into());
    };
    if !matches!(record.status, StepStatus::Executed | StepStatus::Cached) {
        return Err(format!(
            "its recorded status is {}: there are no outputs to compare with",
            record.status
        )
        .into());
    }
    let entry = entry_of(&record.components).ok_or_else(|| {
        format!(
            "this binary has no step `{}` in module `{}`",
            record.components.step, record.components.module
        )
    })?;
    let mut lines = Vec::new();
    let mine = format!("{:016x}", entry.info.code.signature());
    if mine != record.code_signature {
        lines.push(format!(
            "Note: the step's code changed since: recorded signature {}, this binary's {mine}.",
            record.code_signature
        ));
    }
    let params = record
        .inputs
        .iter()
        .map(|input| match (input.content_hash, input.value_blob) {
            (Some(_), _) => Ok(None),
            (None, Some(blob)) => read_param(store, blob).map(Some),
            (None, None)
                if record
                    .components
                    .inputs
                    .iter()
                    .any(|c| c.name() == input.name && c.is_secret()) =>
            {
                Err(format!(
                    "parameter `{}` is secret: its value is never stored, so the step cannot be replayed",
                    input.name
                )
                .into())
            }
            (None, None) => Err(format!(
                "parameter `{}` has no stored form (recorded before schema 8, or on a row that did not claim its key)",
                input.name
            )
            .into()),
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let node = node_of(entry, &params, record.name.clone())?;
    let inputs = record
        .inputs
        .iter()
        .zip(&node.inputs)
        .map(
            |(input, spec)| match (input.content_hash, input.producer_execution) {
                (Some(hash), Some(producer)) => {
                    let produced = store.execution(producer)?;
                    Ok(Some(Resolved::Artifact {
                        value: None,
                        bound: Arc::new(bind_recorded(store, &produced, hash, spec)?),
                    }))
                }
                (Some(_), None) => {
                    Err(format!("input `{}` has no recorded producer", input.name).into())
                }
                (None, _) => Ok(param_input(spec)),
            },
        )
        .collect::<Result<Vec<_>, BoxError>>()?;
    let values = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut ctx = StepContext { inputs };
        (node.body)(&mut ctx)
    }))
    .map_err(|_| "the step panicked")?
    .map_err(|e| format!("the step failed: {}", e.message))?;
    let mut equal = true;
    for ((value, spec), recorded) in values.iter().zip(&node.outputs).zip(&record.outputs) {
        let mut writer =
            crate::store::HashingWriter::with_hash(std::io::sink(), store.content_hash_algorithm());
        spec.save(value.as_ref(), &mut writer)?;
        let (_, hash, _) = writer.finish()?;
        if hash == recorded.content_hash {
            lines.push(format!("Output `{}`: equal ({hash}).", spec.decl.name));
        } else {
            equal = false;
            lines.push(format!(
                "Output `{}`: differs (recorded {}, replayed {hash}).",
                spec.decl.name, recorded.content_hash
            ));
        }
    }
    Ok(Replayed { lines, equal })
}

/// The output of execution `produced` stored as `hash`, bound for loading.
fn bind_recorded(
    store: &Store,
    produced: &StepRecord,
    hash: Hash128,
    input: &crate::graph::InputSpec,
) -> Result<BoundArtifact, BoxError> {
    let built_in = [
        (crate::gather::GATHER_STEP, &crate::gather::GATHER),
        (crate::map::SPLIT_STEP, &crate::map::SPLIT),
    ]
    .into_iter()
    .find(|(step, decl)| {
        produced.components.step == *step && produced.components.module == decl.code().module
    });
    let producer = if let Some((_, decl)) = built_in {
        decl.path
    } else {
        entry_of(&produced.components)
            .ok_or_else(|| {
                format!(
                    "this binary has no step `{}` in module `{}`",
                    produced.components.step, produced.components.module
                )
            })?
            .path()
    };
    let (output, record) = produced
        .outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.content_hash == hash)
        .ok_or_else(|| format!("execution {} has no output {hash}", produced.execution_id))?;
    bind(
        store,
        producer_output(producer, output, input)?,
        hash,
        record.size,
        produced.execution_id,
        &produced.name,
    )
}
