//! The generic half of a `#[step]`'s wiring function, for generated code.
//!
//! `#[step]` used to emit, per step, a wiring function that built the input and output
//! specs, a `StepDef` and a boxed closure (fetch the arguments, call, wrap the outputs).
//! Type checking, borrow checking and encoding all that per step was most of the compile
//! time of a crate of steps (BENCHMARKS.md, figure 7). Now a step describes itself once, as
//! an impl of [`StepFn`] (its input modes and value types as a list of [`Ref`], [`Owned`]
//! and [`Handle`], its outputs as a list of [`Out`], the bound checks and the call), and
//! its wiring function is one call to [`wire`], which does the rest once for every step.
//!
//! The lists are nested pairs ending in `()`, `(Ref<A>, (Owned<B>, ()))`, so every arity
//! is one impl. Nothing here repeats a bound on the value types: the step's own checks
//! (the `Probe`s in [`StepFn::parts`], see `checks.rs`) report a missing bound once, at the
//! user's type, and hand over the [`Ops`] tables this code uses.
//!
//! Each step's registry entry (`worker.rs`) points at [`rebuild`]`::<S>`, so the step's
//! methods and the runtime code they reach are compiled in the crate that defines the steps
//! (BENCHMARKS.md, figure 7). To keep that small, what is compiled per step is only
//! `rebuild::<S>` and the step's `parts` and `invoke`; the rest (`def`, the step's body)
//! is generic over the input and output lists alone, so it is compiled once for all the
//! steps of one shape, and the per-type code behind the [`Ops`] tables keeps to what needs
//! the type. In a debug build the crate that wires a pipeline reuses these instantiations
//! (rustc shares generic code with downstream crates there).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::artifact::Artifact;
use crate::cacher::Bincode;
use crate::checks::Ops;
use crate::cluster::Resources;
use crate::error::BoxError;
use crate::graph::{
    add_step, artifact, AsyncBodyFn, Input, InputMode, InputSpec, NodeId, OutputSpec, StepContext,
    StepDef, StepError, StepFuture, Value,
};
use crate::signature::StepDecl;
use crate::worker::StepEntry;

/// A step as `#[step]` describes it (implemented for `<step>::__PlScope`).
pub trait StepFn: 'static {
    /// The inputs in declaration order: `(Ref<A>, (Owned<B>, ()))`.
    type Inputs: InputList;
    /// The outputs in order: `(Out<A, Bincode>, ())`.
    type Outputs: OutputList;
    /// What the wiring function returns: `Artifact<T>` or `<step>::Outputs`.
    type Handles: StepHandles;
    /// The bound checks of every input and output type; yields their operations, and the
    /// outputs' cachers.
    fn parts() -> (InOps<Self>, OutOps<Self>, Cachers<Self>);
    /// Calls the step with its fetched arguments.
    ///
    /// # Errors
    ///
    /// The step's own error, for a step that returns `Result`.
    fn invoke(args: Fetched<Self>) -> Result<OutValues<Self>, StepError>;
    /// For an `async fn` step: its start (fetch the arguments, create the future, unpolled:
    /// the executor drives it on its runtime), made with [`async_body`] from the step's
    /// operations. `None` for a plain step, which so never instantiates an async body.
    fn async_body(
        in_ops: Arc<InOps<Self>>,
        out_ops: Arc<OutOps<Self>>,
    ) -> Option<Box<AsyncBodyFn>> {
        drop((in_ops, out_ops));
        None
    }
}

/// The start of `async fn` step `S`, type-erased: fetches its arguments, has `start` make
/// its future, and wraps the future's output values (for generated code, in
/// `StepFn::async_body`).
pub fn async_body<S: StepFn>(
    in_ops: Arc<InOps<S>>,
    out_ops: Arc<OutOps<S>>,
    start: fn(Fetched<S>) -> AsyncOutValues<S>,
) -> Box<AsyncBodyFn> {
    Box::new(move |ctx: &mut StepContext| {
        let args = S::Inputs::fetch(&in_ops, ctx, 0)?;
        let future = start(args);
        let out_ops = Arc::clone(&out_ops);
        let values: StepFuture = Box::pin(async move {
            let values = future.await?;
            let mut out = Vec::with_capacity(S::Outputs::LEN);
            S::Outputs::values(&out_ops, values, &mut out);
            Ok(out)
        });
        Ok(values)
    })
}

/// The future of an `async fn` step's output values (see [`async_body`]).
pub type AsyncOutValues<S> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<OutValues<S>, StepError>> + Send + 'static>,
>;

/// What a wiring function returns: the handles to the outputs of a node.
#[diagnostic::on_unimplemented(
    message = "`.named(..)` labels one step call, but `{Self}` is not what a step call returns",
    label = "not the handle of one step call",
    note = "label each step call where it is made, e.g. inside the loop: `fit(&x, lambda).named(label)`"
)]
pub trait StepHandles {
    /// The handles to the outputs of the node at `at`.
    fn at(at: (u64, NodeId)) -> Self;
}

/// The one output of a step without `outputs(..)`.
impl<T> StepHandles for Artifact<T> {
    #[inline]
    fn at(at: (u64, NodeId)) -> Self {
        artifact(at, 0)
    }
}

/// The input operations of step `S`.
pub type InOps<S> = <<S as StepFn>::Inputs as InputList>::Ops;
/// The output operations of step `S`.
pub type OutOps<S> = <<S as StepFn>::Outputs as OutputList>::Ops;
/// The output cachers of step `S`.
pub type Cachers<S> = <<S as StepFn>::Outputs as OutputList>::Cachers;
/// The arguments of step `S` as its body fetches them.
pub type Fetched<S> = <<S as StepFn>::Inputs as InputList>::Fetched;
/// What the wiring function of step `S` was given, one [`Input`] per argument.
pub type Given<S> = <<S as StepFn>::Inputs as InputList>::Given;
/// The output values of step `S`.
pub type OutValues<S> = <<S as StepFn>::Outputs as OutputList>::Values;

/// What the wiring function passes to [`wire`] besides the inputs: constants, given by
/// value rather than as associated constants so that they add no bodies of their own to
/// the step's crate. The step's registry entry (`worker.rs`) holds the same value.
#[derive(Clone, Copy)]
pub struct StepInfo {
    /// The step's code: its module, signature and the parts it is made of.
    pub code: &'static StepDecl,
    /// The step's name.
    pub name: &'static str,
    /// The inputs' names, in declaration order.
    pub inputs: &'static [&'static str],
    /// The outputs' names, in order.
    pub outputs: &'static [&'static str],
    /// The step's own `enable_cache` option, if given.
    pub enable_cache: Option<bool>,
    /// The step's own `resources(..)` option, if given.
    pub resources: Option<&'static Resources>,
    /// The step's `cache_ignore = [..]`: parameters left out of its cache key.
    pub cache_ignore: &'static [&'static str],
    /// The step's `secret = [..]`: parameters stored and shown only as a hash.
    pub secret: &'static [&'static str],
    /// The step's own `cache_expires = ".."`, if given.
    pub cache_expires: Option<std::time::Duration>,
    /// The step's own retries and timeout (`retries = 3`, `timeout = "10m"`), if given.
    pub policy: Option<&'static crate::policy::StepPolicy>,
    /// An `async fn` step: it waits without taking a `max_parallelism` slot.
    pub is_async: bool,
}

/// `x: &T`: the body gets a shared `Arc<T>`.
pub struct Ref<T>(PhantomData<fn() -> T>);
/// `x: T`: the body gets its own copy.
pub struct Owned<T>(PhantomData<fn() -> T>);
/// `x: Artifact<T>`: the body gets the handle.
pub struct Handle<T>(PhantomData<fn() -> T>);

/// One input: how the body fetches it.
pub trait Slot {
    /// The value type.
    type Value;
    /// What the body gets.
    type Fetched;
    /// How the argument is declared.
    const MODE: InputMode;
    /// Fetches input `i`.
    ///
    /// # Errors
    ///
    /// What the step context returns when the value cannot be had.
    fn fetch(
        ops: &Ops<Self::Value, Bincode>,
        ctx: &mut StepContext,
        i: usize,
    ) -> Result<Self::Fetched, StepError>;
}

impl<T> Slot for Ref<T> {
    type Value = T;
    type Fetched = Arc<T>;
    const MODE: InputMode = InputMode::Ref;
    #[inline]
    fn fetch(ops: &Ops<T, Bincode>, ctx: &mut StepContext, i: usize) -> Result<Arc<T>, StepError> {
        (ops.shared)(ctx, i)
    }
}

impl<T> Slot for Owned<T> {
    type Value = T;
    type Fetched = T;
    const MODE: InputMode = InputMode::Owned;
    #[inline]
    fn fetch(ops: &Ops<T, Bincode>, ctx: &mut StepContext, i: usize) -> Result<T, StepError> {
        (ops.owned)(ctx, i)
    }
}

impl<T> Slot for Handle<T> {
    type Value = T;
    type Fetched = Artifact<T>;
    const MODE: InputMode = InputMode::Handle;
    #[inline]
    fn fetch(
        ops: &Ops<T, Bincode>,
        ctx: &mut StepContext,
        i: usize,
    ) -> Result<Artifact<T>, StepError> {
        (ops.handle)(ctx, i)
    }
}

/// A list of inputs: `()` or `(Slot, InputList)`.
pub trait InputList: 'static {
    /// The operations on each value type (function pointers: the step's body keeps them).
    type Ops: Send + Sync;
    /// What the pipeline body passed.
    type Given;
    /// What the body gets.
    type Fetched;
    /// Appends the inputs' specs to `specs`, named from `names` by position.
    fn specs(
        ops: &Self::Ops,
        given: Self::Given,
        names: &[&'static str],
        specs: &mut Vec<InputSpec>,
    );
    /// Fetches the inputs from number `i` on.
    ///
    /// # Errors
    ///
    /// The first input that cannot be had.
    fn fetch(ops: &Self::Ops, ctx: &mut StepContext, i: usize) -> Result<Self::Fetched, StepError>;
    /// The inputs from number `i` on as a worker has them: parameter `j` decoded from
    /// `params[j]`, artifacts (`None`) as placeholder handles that the worker binds.
    ///
    /// # Errors
    ///
    /// A parameter's bytes do not decode as its type.
    fn stored(
        ops: &Self::Ops,
        params: &[Option<Vec<u8>>],
        i: usize,
    ) -> Result<Self::Given, BoxError>;
}

impl InputList for () {
    type Ops = ();
    type Given = ();
    type Fetched = ();
    #[inline]
    fn specs(_: &(), _: (), _: &[&'static str], _: &mut Vec<InputSpec>) {}
    #[inline]
    fn fetch(_: &(), _: &mut StepContext, _: usize) -> Result<(), StepError> {
        Ok(())
    }
    #[inline]
    fn stored(_: &(), _: &[Option<Vec<u8>>], _: usize) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<H: Slot + 'static, R: InputList> InputList for (H, R) {
    type Ops = (Ops<H::Value, Bincode>, R::Ops);
    type Given = (Input<H::Value>, R::Given);
    type Fetched = (H::Fetched, R::Fetched);
    fn specs(
        ops: &Self::Ops,
        given: Self::Given,
        names: &[&'static str],
        specs: &mut Vec<InputSpec>,
    ) {
        let mut spec = (ops.0.input)(names[specs.len()], H::MODE, given.0);
        spec.bincode_spec = Some(ops.0.output);
        specs.push(spec);
        R::specs(&ops.1, given.1, names, specs);
    }
    fn fetch(ops: &Self::Ops, ctx: &mut StepContext, i: usize) -> Result<Self::Fetched, StepError> {
        let head = H::fetch(&ops.0, ctx, i)?;
        Ok((head, R::fetch(&ops.1, ctx, i + 1)?))
    }
    fn stored(
        ops: &Self::Ops,
        params: &[Option<Vec<u8>>],
        i: usize,
    ) -> Result<Self::Given, BoxError> {
        let head = match params.get(i).and_then(Option::as_ref) {
            Some(bytes) => Input::Value((ops.0.decode)(bytes)?),
            None => Input::Artifact(Artifact::unbound(0, 0, 0)),
        };
        Ok((head, R::stored(&ops.1, params, i + 1)?))
    }
}

/// An output of value type `T` stored by cacher `C`.
pub struct Out<T, C>(PhantomData<fn() -> (T, C)>);

/// A list of outputs: `()` or `(Out<T, C>, OutputList)`.
pub trait OutputList: 'static {
    /// How many outputs.
    const LEN: usize;
    /// The operations on each value type (function pointers: the step's body keeps them).
    type Ops: Send + Sync;
    /// The cachers.
    type Cachers;
    /// The values the step returned.
    type Values;
    /// Appends the outputs' specs to `specs`, named from `names` by position.
    fn specs(
        ops: &Self::Ops,
        cachers: Self::Cachers,
        names: &[&'static str],
        specs: &mut Vec<OutputSpec>,
    );
    /// Appends the values, type-erased, to `out`.
    fn values(ops: &Self::Ops, values: Self::Values, out: &mut Vec<Value>);
}

impl OutputList for () {
    const LEN: usize = 0;
    type Ops = ();
    type Cachers = ();
    type Values = ();
    #[inline]
    fn specs(_: &(), _: (), _: &[&'static str], _: &mut Vec<OutputSpec>) {}
    #[inline]
    fn values(_: &(), _: (), _: &mut Vec<Value>) {}
}

impl<T: 'static, C: 'static, R: OutputList> OutputList for (Out<T, C>, R) {
    const LEN: usize = 1 + R::LEN;
    type Ops = (Ops<T, C>, R::Ops);
    type Cachers = (C, R::Cachers);
    type Values = (T, R::Values);
    fn specs(
        ops: &Self::Ops,
        cachers: Self::Cachers,
        names: &[&'static str],
        specs: &mut Vec<OutputSpec>,
    ) {
        specs.push((ops.0.output)(names[specs.len()], cachers.0));
        R::specs(&ops.1, cachers.1, names, specs);
    }
    fn values(ops: &Self::Ops, values: Self::Values, out: &mut Vec<Value>) {
        out.push((ops.0.value)(values.0));
        R::values(&ops.1, values.1, out);
    }
}

/// Adds a call of step `S` to the pipeline being built, with the inputs `given` (what the
/// wiring function `<step>(..)` does).
///
/// # Panics
///
/// When no pipeline is being built (see [`add_step`]).
pub fn wire<S: StepFn>(entry: &'static StepEntry, given: Given<S>) -> S::Handles {
    let (in_ops, out_ops, cachers) = S::parts();
    let def = def::<S::Inputs, S::Outputs>(
        entry,
        given,
        in_ops,
        out_ops,
        cachers,
        S::invoke,
        S::async_body,
    );
    S::Handles::at(add_step(def))
}

/// A call of step `S` as a worker or a replay runs it (the registry entry's `rebuild`,
/// see `worker.rs`): parameter `i` decoded from `params[i]`, each artifact input (`None`)
/// a placeholder the worker binds to its stored bytes.
///
/// Every `#[step]` names this function in its registry entry, so it is compiled in the
/// crate that defines the steps (BENCHMARKS.md, figure 7): it only gathers the step's own
/// parts (its operations, cachers and call) and hands them to `def`, which is generic
/// over the step's input and output lists only and so compiled once for every step of
/// the same shape, not once per step.
///
/// # Errors
///
/// A parameter's stored bytes do not decode as its type.
pub fn rebuild<S: StepFn>(
    entry: &'static StepEntry,
    params: &[Option<Vec<u8>>],
) -> Result<StepDef, BoxError> {
    let (in_ops, out_ops, cachers) = S::parts();
    let given = S::Inputs::stored(&in_ops, params, 0)?;
    Ok(def::<S::Inputs, S::Outputs>(
        entry,
        given,
        in_ops,
        out_ops,
        cachers,
        S::invoke,
        S::async_body,
    ))
}

/// How a step is called with its fetched arguments (`StepFn::invoke`).
type Invoke<I, O> = fn(<I as InputList>::Fetched) -> Result<<O as OutputList>::Values, StepError>;

/// How an `async fn` step's start is made from its operations (`StepFn::async_body`).
type MakeAsyncBody<I, O> =
    fn(Arc<<I as InputList>::Ops>, Arc<<O as OutputList>::Ops>) -> Option<Box<AsyncBodyFn>>;

/// The call of a step with inputs `I` and outputs `O`: its specs and its type-erased body
/// (fetch the arguments, `invoke`, wrap the outputs). Generic over the lists only.
fn def<I: InputList, O: OutputList>(
    entry: &'static StepEntry,
    given: I::Given,
    in_ops: I::Ops,
    out_ops: O::Ops,
    cachers: O::Cachers,
    invoke: Invoke<I, O>,
    make_async_body: MakeAsyncBody<I, O>,
) -> StepDef {
    let info = &entry.info;
    let mut inputs = Vec::with_capacity(info.inputs.len());
    I::specs(&in_ops, given, info.inputs, &mut inputs);
    if !info.cache_ignore.is_empty() || !info.secret.is_empty() {
        for input in &mut inputs {
            input.mark(
                info.cache_ignore.contains(&input.name),
                info.secret.contains(&input.name),
            );
        }
    }
    let mut outputs = Vec::with_capacity(info.outputs.len());
    O::specs(&out_ops, cachers, info.outputs, &mut outputs);
    // Shared by the body and, for an async step, its start.
    let (in_ops, out_ops) = (Arc::new(in_ops), Arc::new(out_ops));
    StepDef {
        name: info.name,
        code: info.code,
        enable_cache: info.enable_cache,
        resources: info.resources,
        policy: info.policy,
        is_async: info.is_async,
        inputs,
        outputs,
        async_body: if info.is_async {
            make_async_body(Arc::clone(&in_ops), Arc::clone(&out_ops))
        } else {
            None
        },
        body: Box::new(move |ctx: &mut StepContext| {
            let args = I::fetch(&in_ops, ctx, 0)?;
            let values = invoke(args)?;
            let mut out = Vec::with_capacity(O::LEN);
            O::values(&out_ops, values, &mut out);
            Ok(out)
        }),
        entry: Some(entry),
    }
}
