//! The step graph, built once when a `#[pipeline]` constructor runs its body.
//!
//! Step functions called in a pipeline body do not run: each call adds a [`Node`] to the
//! graph of the pipeline being built (held in a thread-local) and returns unbound handles.
//! Handles refer only to earlier nodes, so node order is a topological order.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifact::{Artifact, BoundArtifact};
use crate::cluster::Resources;
use crate::error::{BoxError, Error, Result};
use crate::key::Hash128;
use crate::signature::StepDecl;

pub use crate::output::{NodeId, OutputSpec};

/// A value held in memory during a run, type-erased.
pub type Value = Arc<dyn Any + Send + Sync>;

/// The type-erased body of a step.
pub type StepBody = Box<BodyFn>;

/// The type-erased body's function type.
pub type BodyFn = dyn Fn(&mut StepContext) -> Result<Vec<Value>, StepError> + Send + Sync;

/// What an `async fn` step's body returns once its arguments are fetched: the future of
/// its output values (it owns the arguments, so it is `'static`).
pub type StepFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Value>, StepError>> + Send>>;

/// The type-erased start of an `async fn` step: fetches the arguments and creates the
/// future, without polling it (the executor drives it on its runtime: `executor/async_steps.rs`).
pub type AsyncBodyFn = dyn Fn(&mut StepContext) -> Result<StepFuture, StepError> + Send + Sync;

/// How a step argument is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// `x: &T`
    Ref,
    /// `x: T`
    Owned,
    /// `x: Artifact<T>`: the unresolved handle.
    Handle,
}

/// What a pipeline body passed for one input: an upstream handle or a plain value.
pub enum Input<T> {
    /// An upstream step's output.
    Artifact(Artifact<T>),
    /// A parameter.
    Value(T),
}

/// One parameter: its canonical hash for the key, JSON for people, and the value itself.
/// Cloned for each item of a map that uses it (a broadcast input); the value is shared.
#[derive(Clone)]
pub struct Param {
    pub(crate) type_name: &'static str,
    /// Fingerprint of the type's serde shape (see [`crate::shape`]).
    pub(crate) shape: String,
    pub(crate) hash: Hash128,
    pub(crate) json: serde_json::Value,
    /// The value as text when JSON cannot show it (NaN or infinite floats).
    pub(crate) text: Option<String>,
    pub(crate) value: Value,
    /// A fresh owned copy for `x: T` arguments (decoded from bincode bytes taken at build time).
    pub(crate) fresh: Arc<dyn Fn() -> Result<Box<dyn Any + Send>, BoxError> + Send + Sync>,
    /// The parameter's stored form (bincode, standard config), written as a blob when its
    /// step executes under a claim, so a worker or a replay can decode it.
    pub(crate) encode: fn(&Value) -> Result<Vec<u8>, BoxError>,
}

/// A parameter's stored form: bincode with the standard config.
pub(crate) fn encode_param<T: Serialize + Send + Sync + 'static>(
    v: &Value,
) -> Result<Vec<u8>, BoxError> {
    let v = v.downcast_ref::<T>().ok_or_else(|| {
        format!(
            "internal error: parameter is not a `{}`",
            std::any::type_name::<T>()
        )
    })?;
    Ok(bincode::serde::encode_to_vec(
        v,
        bincode::config::standard(),
    )?)
}

/// Decodes a parameter's stored form (see [`encode_param`]).
///
/// # Errors
///
/// The bytes are not a bincode encoding of a `T` (or have bytes left over).
pub fn decode_param<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    let (v, read): (T, usize) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    if read != bytes.len() {
        return Err(format!(
            "{} bytes left over after decoding a `{}`",
            bytes.len() - read,
            std::any::type_name::<T>()
        )
        .into());
    }
    Ok(v)
}

/// Where an input comes from.
#[derive(Clone)]
pub enum InputSource {
    /// Output `output` of node `node`.
    Artifact {
        /// Producer node.
        node: NodeId,
        /// Output index.
        output: usize,
    },
    /// A parameter.
    Param(Param),
}

/// One declared input of a node.
#[derive(Clone)]
pub struct InputSpec {
    pub(crate) name: &'static str,
    pub(crate) mode: InputMode,
    pub(crate) source: InputSource,
    pub(crate) graph: Option<u64>,
    pub(crate) error: Option<ParamError>,
    /// Named in the step's `cache_ignore`: a parameter left out of the cache key.
    pub(crate) ignored: bool,
    /// Named in the step's `secret`: a parameter whose value is never stored or shown.
    pub(crate) secret: bool,
    /// How a built-in call (`gather.rs`, `map.rs`) stores a value of this input's type
    /// (bincode), so a worker process can load such an input without knowing the
    /// built-in step. Set for `#[step]` inputs (`wire.rs`).
    pub(crate) bincode_spec: Option<fn(&'static str, crate::cacher::Bincode) -> OutputSpec>,
}

/// Why a parameter could not be encoded. Kept as a value (not a message) so that every run
/// of the pipeline can hand the cause to [`Error::Parameter`] as its `source`.
#[derive(Debug, Clone)]
pub(crate) enum ParamError {
    /// Canonical encoding for the cache key failed.
    Canonical(crate::canonical::CanonicalError),
    /// The bincode copy taken for a by-value (`x: T`) argument failed.
    Copy(String),
}

impl ParamError {
    pub(crate) fn to_source(&self) -> BoxError {
        match self {
            ParamError::Canonical(e) => Box::new(e.clone()),
            ParamError::Copy(message) => message.clone().into(),
        }
    }
}

/// A problem found while a pipeline body was built; reported when the pipeline runs.
#[derive(Debug, Clone)]
pub(crate) enum BuildProblem {
    /// A parameter could not be encoded ([`Error::Parameter`]).
    Parameter {
        step: String,
        name: &'static str,
        cause: ParamError,
    },
    /// The steps are wired wrongly ([`Error::Graph`]); the text names the fix.
    Wiring(String),
}

impl BuildProblem {
    /// The error a run of pipeline `pipeline` returns for this problem.
    pub(crate) fn to_error(&self, pipeline: &str) -> Error {
        match self {
            BuildProblem::Parameter { step, name, cause } => Error::Parameter {
                step: step.clone(),
                name: (*name).to_string(),
                source: cause.to_source(),
            },
            BuildProblem::Wiring(problem) => Error::Graph {
                pipeline: pipeline.to_string(),
                problem: problem.clone(),
            },
        }
    }
}

impl InputSpec {
    /// Builds an input from what the pipeline body passed.
    pub fn new<T>(name: &'static str, mode: InputMode, input: Input<T>) -> Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        // Only what needs `T` is done here: this function is compiled once per value type
        // in every crate that declares steps (BENCHMARKS.md, figure 7); `param` is not.
        match input {
            Input::Artifact(a) => InputSpec {
                name,
                mode,
                source: InputSource::Artifact {
                    node: a.node,
                    output: a.output,
                },
                graph: Some(a.graph),
                error: None,
                ignored: false,
                secret: false,
                bincode_spec: None,
            },
            Input::Value(v) => {
                let canonical = crate::canonical::to_canonical_bytes(&v);
                // JSON for people and scripts; text where JSON cannot show the value.
                let (json, text) = match serde_json::to_value(&v) {
                    Ok(json) => (json, crate::value_text::non_finite_text(&v)),
                    Err(_) => (serde_json::Value::Null, crate::value_text::text(&v)),
                };
                let copy = (mode == InputMode::Owned).then(|| {
                    bincode::serde::encode_to_vec(&v, bincode::config::standard())
                        .map_err(|e| e.to_string())
                });
                InputSpec::param(
                    name,
                    mode,
                    ParamParts {
                        canonical,
                        json,
                        text,
                        copy,
                        type_name: std::any::type_name::<T>(),
                        shape: crate::shape::shape_of::<T>().fingerprint().to_owned(),
                        value: Arc::new(v),
                        decode: decode_copy::<T>,
                        encode: encode_param::<T>,
                    },
                )
            }
        }
    }

    /// A parameter input from its parts (see [`InputSpec::new`]).
    fn param(name: &'static str, mode: InputMode, parts: ParamParts) -> Self {
        let mut error = None;
        let hash = match parts.canonical {
            Ok(bytes) => Hash128::of(&bytes),
            Err(e) => {
                error = Some(ParamError::Canonical(e));
                Hash128(0)
            }
        };
        let decode = parts.decode;
        let fresh: Arc<dyn Fn() -> Result<Box<dyn Any + Send>, BoxError> + Send + Sync> =
            match parts.copy {
                Some(Ok(bytes)) => Arc::new(move || decode(&bytes)),
                Some(Err(e)) => {
                    error = error.or(Some(ParamError::Copy(e)));
                    Arc::new(|| Err("parameter could not be encoded".into()))
                }
                None => Arc::new(|| Err("parameter is passed by reference".into())),
            };
        InputSpec {
            name,
            mode,
            source: InputSource::Param(Param {
                type_name: parts.type_name,
                shape: parts.shape,
                hash,
                json: parts.json,
                text: parts.text,
                value: parts.value,
                fresh,
                encode: parts.encode,
            }),
            graph: None,
            error,
            ignored: false,
            secret: false,
            bincode_spec: None,
        }
    }
}

/// What [`InputSpec::new`] computes from a parameter's value.
struct ParamParts {
    /// Its canonical bytes, for the cache key.
    canonical: std::result::Result<Vec<u8>, crate::canonical::CanonicalError>,
    json: serde_json::Value,
    text: Option<String>,
    /// For `x: T` arguments: its bincode copy, or why it could not be taken.
    copy: Option<std::result::Result<Vec<u8>, String>>,
    type_name: &'static str,
    shape: String,
    value: Value,
    /// Decodes `copy` as a fresh value.
    decode: DecodeCopy,
    encode: fn(&Value) -> std::result::Result<Vec<u8>, BoxError>,
}

/// Decodes a by-value parameter's bincode copy (`decode_copy::<T>`).
type DecodeCopy = fn(&[u8]) -> std::result::Result<Box<dyn Any + Send>, BoxError>;

/// A fresh `T` from the bincode copy of a by-value parameter.
fn decode_copy<T: DeserializeOwned + Send + 'static>(
    bytes: &[u8],
) -> std::result::Result<Box<dyn Any + Send>, BoxError> {
    let (v, _): (T, usize) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    Ok(Box::new(v))
}

impl InputSpec {
    /// Applies the step's `cache_ignore` and `secret` lists to this input. A secret
    /// parameter's JSON and text are replaced by `<secret>` here, when the graph is built,
    /// so nothing later (key components, records, reports) can show its value.
    pub(crate) fn mark(&mut self, ignored: bool, secret: bool) {
        self.ignored = ignored;
        self.secret = secret;
        if let (true, InputSource::Param(p)) = (secret, &mut self.source) {
            p.json = serde_json::Value::String(crate::key::SECRET.to_string());
            p.text = Some(crate::key::SECRET.to_string());
        }
    }
}

/// What the `#[step]` macro hands over for one call in a pipeline body.
pub struct StepDef {
    /// Step name (enters the cache key).
    pub name: &'static str,
    /// The step's code: its module, signature and the parts it is made of.
    pub code: &'static StepDecl,
    /// The step's own `enable_cache` option, if given.
    pub enable_cache: Option<bool>,
    /// The step's own `resources(..)` option, if given: what it asks of the machine that
    /// runs it (never part of its cache key).
    pub resources: Option<&'static Resources>,
    /// Retries and timeout from `#[step(retries, timeout, ..)]`.
    pub policy: Option<&'static crate::policy::StepPolicy>,
    /// An `async fn` step (see `async_step.rs`).
    pub is_async: bool,
    /// Inputs in declaration order.
    pub inputs: Vec<InputSpec>,
    /// Outputs in order.
    pub outputs: Vec<OutputSpec>,
    /// The body. For an `async fn` step it blocks on the future (a worker process runs
    /// it so, on a runtime of its own).
    pub body: StepBody,
    /// For an `async fn` step: its start, which creates the future without waiting for
    /// it. A run's own threads drive the step through it.
    pub async_body: Option<Box<AsyncBodyFn>>,
    /// The step's registry entry (`worker.rs`). Held by every call of the step, which
    /// also keeps the entry in the binary: a linker drops an entry nothing refers to.
    pub entry: Option<&'static crate::worker::StepEntry>,
}

/// A step invocation in a graph. Cloned for each item of a map (`map.rs`).
#[derive(Clone)]
pub struct Node {
    /// Unique name within the pipeline: the label given with `.named(..)`, else generated
    /// (`name`, `name_2`, ... when a step is used twice).
    pub(crate) name: String,
    pub(crate) step: &'static str,
    pub(crate) code: &'static StepDecl,
    pub(crate) enable_cache: Option<bool>,
    pub(crate) resources: Option<&'static Resources>,
    pub(crate) policy: Option<&'static crate::policy::StepPolicy>,
    pub(crate) is_async: bool,
    pub(crate) inputs: Vec<InputSpec>,
    pub(crate) outputs: Vec<Arc<OutputSpec>>,
    /// Shared, so a step with a timeout can run its body on a thread of its own.
    pub(crate) body: Arc<BodyFn>,
    /// For an `async fn` step: its start (see [`StepDef::async_body`]).
    pub(crate) async_body: Option<Arc<AsyncBodyFn>>,
    /// The step's registry entry: what a worker process runs.
    pub(crate) entry: Option<&'static crate::worker::StepEntry>,
    /// Its part in a map (`map.rs`).
    pub(crate) role: Role,
    /// The innermost map whose closure made this call, if one did: then it is a template
    /// that never runs itself (a run copies it per item of that map's list).
    pub(crate) within: Option<usize>,
    /// Where its row sorts among the run's calls (the `position` of its execution): its
    /// index in the graph; a map's per-item calls take their split's, so they are listed
    /// right after it.
    pub(crate) position: usize,
}

/// What a node is to the maps of its graph (`map.rs`). Whether it is inside a map's
/// closure is [`Node::within`]: a map nested in another's closure has a split and gathers
/// that are templates of the outer map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// An ordinary call.
    Call,
    /// The split of map `.0`: its outputs are the list's items, as many as the list has,
    /// each stored by its one declared output (named `item[i]` in the records).
    Split(usize),
    /// The gather of map `.0`'s result `.1`: the run gives it one input per item.
    MapGather(usize, usize),
}

impl Node {
    /// The declaration of output `i` (a split's items all share its one declaration).
    pub(crate) fn output(&self, i: usize) -> Option<&Arc<OutputSpec>> {
        match self.role {
            Role::Split(_) => self.outputs.first(),
            _ => self.outputs.get(i),
        }
    }

    /// The name output `i` is recorded under: its declared name, `item[i]` for a split.
    pub(crate) fn output_name(&self, i: usize) -> Option<String> {
        match self.role {
            Role::Split(_) => Some(format!("item[{i}]")),
            _ => self.outputs.get(i).map(|o| o.decl.name.clone()),
        }
    }

    /// The call `name` of the step `def` describes (in a graph, or alone in a worker).
    pub(crate) fn new(name: String, def: StepDef) -> Node {
        Node {
            name,
            step: def.name,
            code: def.code,
            enable_cache: def.enable_cache,
            resources: def.resources,
            policy: def.policy,
            is_async: def.is_async,
            inputs: def.inputs,
            outputs: def.outputs.into_iter().map(Arc::new).collect(),
            body: Arc::from(def.body),
            async_body: def.async_body.map(Arc::from),
            entry: def.entry,
            role: Role::Call,
            within: None,
            position: 0,
        }
    }
}

/// A built pipeline graph.
pub struct Graph {
    pub(crate) id: u64,
    pub(crate) nodes: Vec<Node>,
    /// Problems found while building (bad parameter, handle from another pipeline).
    pub(crate) errors: Vec<BuildProblem>,
    /// Node names given so far, and per step name the next `_k` suffix to try, so that naming
    /// the n-th call of a step does not scan the graph (10,000-step sweeps).
    names: HashSet<String>,
    next_suffix: HashMap<&'static str, usize>,
    /// The maps of this graph (`map.rs`).
    pub(crate) maps: Vec<crate::map::MapDef>,
    /// The maps whose closure is running now, innermost last: a call added then is a
    /// template of the innermost.
    pub(crate) mapping: Vec<usize>,
}

static NEXT_GRAPH_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static BUILDING: RefCell<Vec<Graph>> = const { RefCell::new(Vec::new()) };
}

/// Runs `body` with a fresh graph being built on this thread, and returns both.
pub(crate) fn build<O>(body: impl FnOnce() -> O) -> (Graph, O) {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            BUILDING.with(|b| b.borrow_mut().pop());
        }
    }
    BUILDING.with(|b| {
        b.borrow_mut().push(Graph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            errors: Vec::new(),
            names: HashSet::new(),
            next_suffix: HashMap::new(),
            maps: Vec::new(),
            mapping: Vec::new(),
        })
    });
    let pop = Pop;
    let out = body();
    let graph = BUILDING.with(|b| b.borrow_mut().pop());
    std::mem::forget(pop);
    let graph = graph.map(|mut g| {
        let problems = crate::map::leaks(&g);
        g.errors.extend(problems);
        g
    });
    // `build` pushed one graph and nothing else pops it, so it is there.
    let graph = graph.unwrap_or_else(|| Graph {
        id: 0,
        nodes: Vec::new(),
        errors: vec![BuildProblem::Wiring(
            "internal error: pipeline graph vanished while building".into(),
        )],
        names: HashSet::new(),
        next_suffix: HashMap::new(),
        maps: Vec::new(),
        mapping: Vec::new(),
    });
    (graph, out)
}

/// Adds a step call to the graph being built and returns its node id and graph id.
///
/// # Panics
/// When no pipeline is being built: step functions only wire steps inside a `#[pipeline]`
/// body. Run the function itself with `<step>::call(..)`.
pub fn add_step(def: StepDef) -> (u64, NodeId) {
    BUILDING.with(|b| {
        let mut stack = b.borrow_mut();
        let Some(graph) = stack.last_mut() else {
            drop(stack);
            panic!(
                "step `{0}` was called outside a `#[pipeline]` body, or on another thread \
                 than the body's (a pipeline is built on the thread that runs its body); step \
                 functions only wire a pipeline together. To run the function itself (e.g. in \
                 a unit test), call `{0}::call(..)`",
                def.name
            );
        };
        let id = graph.nodes.len();
        for input in &def.inputs {
            if let Some(e) = &input.error {
                graph.errors.push(BuildProblem::Parameter {
                    step: def.name.to_string(),
                    name: input.name,
                    cause: e.clone(),
                });
            }
            if input.graph.is_some_and(|g| g != graph.id) {
                graph.errors.push(BuildProblem::Wiring(format!(
                    "input `{}` of step `{}` is an artifact of another pipeline; pass artifacts \
                     only between steps of the same pipeline body",
                    input.name, def.name
                )));
            }
        }
        // `name`, else the first free `name_k` for k = 2, 3, ...; the search resumes where the
        // previous one for this step stopped (only `name_call` frees a name, and it steps the
        // counter back when it frees the last one given).
        let mut name = def.name.to_string();
        if graph.names.contains(&name) {
            let k = graph.next_suffix.entry(def.name).or_insert(2);
            loop {
                name = format!("{}_{k}", def.name);
                *k += 1;
                if !graph.names.contains(&name) {
                    break;
                }
            }
        }
        graph.names.insert(name.clone());
        let mut node = Node::new(name, def);
        node.position = id;
        node.within = graph.mapping.last().copied();
        graph.nodes.push(node);
        (graph.id, id)
    })
}

impl Graph {
    /// How many calls a run of this graph starts with: every node but the templates
    /// inside a map's closure (a map adds its per-item calls as the run goes).
    pub(crate) fn calls(&self) -> usize {
        self.nodes.iter().filter(|n| n.within.is_none()).count()
    }
}

/// Runs `f` on the graph being built on this thread, if one is.
pub(crate) fn with_building<R>(f: impl FnOnce(&mut Graph) -> R) -> Option<R> {
    BUILDING.with(|b| b.borrow_mut().last_mut().map(f))
}

/// The longest label [`Artifact::named`] accepts, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Why `label` cannot name a call, if it cannot.
fn label_problem(label: &str) -> Option<String> {
    let chars = label.chars().count();
    if label.is_empty() {
        Some("is empty".into())
    } else if chars > MAX_LABEL_CHARS {
        Some(format!(
            "is {chars} characters long; a label has at most {MAX_LABEL_CHARS}"
        ))
    } else if label.contains('/') {
        Some("contains `/`, which would make the name a path in `pipeline show` and URLs".into())
    } else {
        label
            .chars()
            .find(|c| c.is_control())
            .map(|c| format!("contains the control character U+{:04X}", u32::from(c)))
    }
}

/// Names the call at `at` (a node of the graph being built) `label` in place of its
/// generated name (`Artifact::named`). A label that is not valid or already names another
/// call is a build problem ([`Error::Graph`] when the pipeline runs); the call then keeps
/// its generated name.
///
/// # Panics
/// When no pipeline is being built (outside a `#[pipeline]` body).
pub(crate) fn name_call(at: (u64, NodeId), label: String) {
    BUILDING.with(|b| {
        let mut stack = b.borrow_mut();
        let Some(graph) = stack.last_mut() else {
            drop(stack);
            panic!(
                "`.named({label:?})` was called outside a `#[pipeline]` body; a label names \
                 the step call that returned the handle, so call it in the pipeline body, \
                 on what the step call returns"
            );
        };
        if at.0 != graph.id {
            graph.errors.push(BuildProblem::Wiring(format!(
                "`.named({label:?})` was called on an artifact of another pipeline; label \
                 only the step calls of the pipeline body being built"
            )));
            return;
        }
        let Some(node) = graph.nodes.get(at.1) else {
            graph.errors.push(BuildProblem::Wiring(format!(
                "internal error: `.named({label:?})` on an unknown step call"
            )));
            return;
        };
        if matches!(node.role, Role::Split(_)) {
            graph.errors.push(BuildProblem::Wiring(format!(
                "`.named({label:?})` was called on the item handle of a `map` closure, which \
                 is no step call; label the calls inside the closure instead (each is named \
                 `<label>[i]` per item)"
            )));
            return;
        }
        if let Some(problem) = label_problem(&label) {
            graph.errors.push(BuildProblem::Wiring(format!(
                "the label {label:?} given to call {} (step `{}`) with `.named(..)` {problem}",
                call_number(graph, at.1),
                node.step
            )));
            return;
        }
        if node.name == label {
            return;
        }
        if graph.names.contains(&label) {
            // Only on this error path: find the other call by scanning.
            let (i, other) = graph
                .nodes
                .iter()
                .enumerate()
                .find(|(_, n)| n.name == label)
                .map_or((0, "?"), |(i, n)| (call_number(graph, i), n.step));
            let problem = format!(
                "two calls are named `{label}`: call {i} (step `{other}`) and call {} (step \
                 `{}`), labelled with `.named(..)`; labels must be unique within a pipeline \
                 (e.g. put the loop's parameter in it: `.named(format!(\"{}[{{x}}]\"))`)",
                call_number(graph, at.1),
                node.step,
                node.step
            );
            graph.errors.push(BuildProblem::Wiring(problem));
            return;
        }
        let step = node.step;
        let old = std::mem::replace(&mut graph.nodes[at.1].name, label.clone());
        graph.names.remove(&old);
        graph.names.insert(label);
        // The generated name is free again: when it was the last `step_k` given, the next
        // unlabelled call takes it, so numbering stays dense around labelled calls.
        if let Some(k) = graph.next_suffix.get_mut(step) {
            if old == format!("{step}_{}", *k - 1) {
                *k -= 1;
            }
        }
    })
}

/// Node `index`'s number among the calls the body made, from 1, as a person counts them:
/// the built-in split and gather calls of maps and fan-ins do not count.
fn call_number(graph: &Graph, index: NodeId) -> usize {
    graph
        .nodes
        .iter()
        .take(index + 1)
        .filter(|n| !crate::map::builtin_step(n.step))
        .count()
}

/// An unbound handle to output `output` of node `node` (for generated code).
pub fn artifact<T>(at: (u64, NodeId), output: usize) -> Artifact<T> {
    Artifact::unbound(at.0, at.1, output)
}

/// Error returned by a step body: the message that `StepReport::error` and the logs show,
/// and the error value itself when it is one (it becomes the `source` of
/// [`Error::StepFailed`]).
#[derive(Debug)]
pub struct StepError {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

impl StepError {
    /// From a step's `Err` value that only implements `Display`: the message, no source.
    pub fn from_display(e: &dyn std::fmt::Display) -> Self {
        StepError {
            message: e.to_string(),
            source: None,
        }
    }

    /// From a step's `Err` value that is an error: the message, and the value kept as the
    /// source of [`Error::StepFailed`].
    pub fn from_error(e: impl Into<BoxError>) -> Self {
        let source = e.into();
        StepError {
            message: source.to_string(),
            source: Some(source),
        }
    }
}

/// Turns a step's `Err` value into a [`StepError`], keeping it as a source when it converts
/// into a [`BoxError`] and as its message otherwise (for generated code).
///
/// Generated code calls `StepErrorValue(e).into_step_error()` with both
/// [`IntoStepErrorSource`] and [`IntoStepErrorDisplay`] in scope: method lookup tries the
/// by-value impl first, which exists only for errors, then the by-reference impl for any
/// `Display` type (autoref specialization, resolved at compile time per step).
pub struct StepErrorValue<E>(pub E);

/// The preferred conversion: the error is kept as the source (see [`StepErrorValue`]).
pub trait IntoStepErrorSource {
    /// The converted error.
    fn into_step_error(self) -> StepError;
}

impl<E: Into<BoxError>> IntoStepErrorSource for StepErrorValue<E> {
    fn into_step_error(self) -> StepError {
        StepError::from_error(self.0)
    }
}

/// The fallback conversion: only the error's text is kept (see [`StepErrorValue`]).
pub trait IntoStepErrorDisplay {
    /// The converted error.
    fn into_step_error(self) -> StepError;
}

impl<E: std::fmt::Display> IntoStepErrorDisplay for &StepErrorValue<E> {
    fn into_step_error(self) -> StepError {
        StepError::from_display(&self.0)
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::from_error(e)
    }
}

/// A resolved input handed to a step body.
pub(crate) enum Resolved {
    /// A parameter.
    Param(Value, Option<Box<dyn Any + Send>>),
    /// An upstream artifact: maybe in memory, always in the store.
    Artifact {
        value: Option<Value>,
        bound: Arc<BoundArtifact>,
    },
}

impl Resolved {
    /// The same input for another attempt of the step (a retry): a parameter as a fresh
    /// copy, an artifact loaded again from the store (the first attempt may have moved
    /// its in-memory value into the body).
    pub(crate) fn again(&self, spec: &InputSpec) -> Resolved {
        match self {
            Resolved::Param(value, _) => {
                let fresh = match (&spec.source, spec.mode) {
                    (InputSource::Param(p), InputMode::Owned) => (p.fresh)().ok(),
                    _ => None,
                };
                Resolved::Param(Arc::clone(value), fresh)
            }
            Resolved::Artifact { bound, .. } => Resolved::Artifact {
                value: None,
                bound: Arc::clone(bound),
            },
        }
    }
}

/// Gives a step body its arguments (for generated code).
pub struct StepContext {
    pub(crate) inputs: Vec<Option<Resolved>>,
}

impl StepContext {
    fn take(&mut self, i: usize) -> Result<Resolved, StepError> {
        self.inputs
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| StepError {
                message: format!("internal error: input {i} resolved twice or missing"),
                source: None,
            })
    }

    /// Argument `i` for a `&T` parameter: shared, from memory or loaded from the store.
    ///
    /// # Errors
    ///
    /// An internal error when the argument was already taken or has another type (a bug in
    /// generated code); the load's error (see [`Artifact::load`]) when it is read from the store.
    pub fn shared<T: Send + Sync + 'static>(&mut self, i: usize) -> Result<Arc<T>, StepError> {
        match self.take(i)? {
            Resolved::Param(v, _) => downcast_arc(v),
            Resolved::Artifact { value: Some(v), .. } => downcast_arc(v),
            Resolved::Artifact { value: None, bound } => Ok(Arc::new(load_bound::<T>(&bound)?)),
        }
    }

    /// Argument `i` for a `T` parameter: moved out of memory when this step is its last
    /// consumer, otherwise a fresh copy loaded from the store.
    ///
    /// # Errors
    ///
    /// An internal error when the argument was already taken or has another type (a bug in
    /// generated code); the load's error (see [`Artifact::load`]) when it is read from the store.
    pub fn owned<T: Send + Sync + 'static>(&mut self, i: usize) -> Result<T, StepError> {
        match self.take(i)? {
            Resolved::Param(_, Some(fresh)) => fresh
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|_| type_error::<T>()),
            Resolved::Param(v, None) => {
                // Only reachable if a by-value parameter could not be prepared.
                drop(v);
                Err(StepError {
                    message: "internal error: parameter copy missing".into(),
                    source: None,
                })
            }
            Resolved::Artifact { value, bound } => {
                if let Some(v) = value {
                    let arc = downcast_arc::<T>(v)?;
                    match Arc::try_unwrap(arc) {
                        Ok(v) => return Ok(v),
                        Err(shared) => drop(shared),
                    }
                }
                load_bound::<T>(&bound)
            }
        }
    }

    /// Argument `i` for an `Artifact<T>` parameter: the bound handle, not loaded.
    ///
    /// # Errors
    ///
    /// An internal error when the argument was already taken or has another type (a bug in
    /// generated code).
    pub fn handle<T: 'static>(&mut self, i: usize) -> Result<Artifact<T>, StepError> {
        match self.take(i)? {
            Resolved::Artifact { bound, .. } => Ok(Artifact::unbound(0, 0, 0).with_binding(bound)),
            Resolved::Param(..) => Err(StepError {
                message: "internal error: a parameter was given for an `Artifact<T>` argument"
                    .into(),
                source: None,
            }),
        }
    }
}

fn type_error<T>() -> StepError {
    StepError {
        message: format!(
            "internal error: input is not a `{}`",
            std::any::type_name::<T>()
        ),
        source: None,
    }
}

fn downcast_arc<T: Send + Sync + 'static>(v: Value) -> Result<Arc<T>, StepError> {
    v.downcast::<T>().map_err(|_| type_error::<T>())
}

fn load_bound<T: 'static>(bound: &Arc<BoundArtifact>) -> Result<T, StepError> {
    let handle: Artifact<T> = Artifact::unbound(0, 0, 0).with_binding(Arc::clone(bound));
    Ok(handle.load()?)
}
