//! Compile-time checks for code that `#[step]` and `#[pipeline]` generate.
//!
//! A step's value types need `Serialize + DeserializeOwned + Send + Sync + 'static`. If the
//! generated code called bounded functions directly, one missing bound would be reported
//! at every call site (four or ten errors for one mistake). Instead the generated code asks
//! a [`Probe`] once per type, at the type's span: autoref specialisation picks the most
//! capable impl whose bounds hold, and the result is an [`Ops`] table of plain function
//! pointers that the rest of the generated code uses without repeating any bound. When a
//! bound is missing the probe falls back to a level whose `verify_*` method requires a
//! trait carrying `#[diagnostic::on_unimplemented]`, so the one error names the missing
//! bound and the fix.
//!
//! Probe levels (most capable first; the call site is `(&&&&&Probe::<T, C>::NEW).__pl_probe()`):
//!
//! | impl on          | bounds that hold                                  | verdict          |
//! |------------------|---------------------------------------------------|------------------|
//! | `&&&&Probe<T,C>` | all, and `C: Cacher<T>`                           | [`Pass`]         |
//! | `&&&Probe<T,C>`  | `T: Serialize + DeserializeOwned + Send + Sync`   | [`NoCacher`]     |
//! | `&&Probe<T,C>`   | `T: Serialize + DeserializeOwned`                 | [`NotThreadSafe`]|
//! | `&Probe<T,C>`    | `T: Serialize`                                    | [`NoDeserialize`]|
//! | `Probe<T,C>`     | none                                              | [`NoSerialize`]  |

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::cacher::Cacher;
use crate::graph::{Input, InputMode, InputSpec, OutputSpec, StepContext, StepError, Value};
use crate::pipeline::{Binder, Pipeline, PipelineOutput};

/// Asks which bounds `T` (a step value) and `C` (its cacher) satisfy.
pub struct Probe<T, C>(PhantomData<fn() -> (T, C)>);

impl<T, C> Probe<T, C> {
    /// The probe value; the generated code takes `&&&&&Probe::<T, C>::NEW`.
    pub const NEW: Self = Probe(PhantomData);
}

/// The outcome of a probe: the operations on `T`, and a verdict `V` that `verify_*` checks.
pub struct Checked<T, C, V> {
    ops: Ops<T, C>,
    _verdict: PhantomData<V>,
}

/// Every bound holds.
pub struct Pass;
/// `C` does not implement `Cacher<T>`.
pub struct NoCacher;
/// `T` is not `Send + Sync`.
pub struct NotThreadSafe;
/// `T` is not `DeserializeOwned`.
pub struct NoDeserialize;
/// `T` is not `Serialize`.
pub struct NoSerialize;

/// Everything generated code does with a step value type, as bound-free function pointers.
pub struct Ops<T, C> {
    /// `InputSpec::new::<T>`.
    pub input: fn(&'static str, InputMode, Input<T>) -> InputSpec,
    /// `OutputSpec::new::<T, C>`.
    pub output: fn(&'static str, C) -> OutputSpec,
    /// Wraps an output value.
    pub value: fn(T) -> Value,
    /// `StepContext::shared::<T>`.
    pub shared: fn(&mut StepContext, usize) -> Result<Arc<T>, StepError>,
    /// `StepContext::owned::<T>`.
    pub owned: fn(&mut StepContext, usize) -> Result<T, StepError>,
    /// `StepContext::handle::<T>`.
    pub handle: fn(&mut StepContext, usize) -> Result<Artifact<T>, StepError>,
    /// Decodes a parameter's stored form (`graph::decode_param::<T>`), for workers and replay.
    pub decode: fn(&[u8]) -> Result<T, crate::error::BoxError>,
}

impl<T, C> Clone for Ops<T, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, C> Copy for Ops<T, C> {}

impl<T, C> Ops<T, C>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Cacher<T>,
{
    fn real() -> Self {
        Ops {
            input: InputSpec::new::<T>,
            output: OutputSpec::new::<T, C>,
            value: |v| Arc::new(v),
            shared: StepContext::shared::<T>,
            owned: StepContext::owned::<T>,
            handle: StepContext::handle::<T>,
            decode: crate::graph::decode_param::<T>,
        }
    }
}

impl<T, C> Ops<T, C> {
    /// Placeholders for a type that failed its check: the build fails, so they never run.
    fn unusable() -> Self {
        Ops {
            input: |_, _, _| unreachable!("a step value type failed its compile-time check"),
            output: |_, _| unreachable!("a step value type failed its compile-time check"),
            value: |_| unreachable!("a step value type failed its compile-time check"),
            shared: |_, _| unreachable!("a step value type failed its compile-time check"),
            owned: |_, _| unreachable!("a step value type failed its compile-time check"),
            handle: |_, _| unreachable!("a step value type failed its compile-time check"),
            decode: |_| unreachable!("a step value type failed its compile-time check"),
        }
    }
}

macro_rules! probe_level {
    ($(#[$doc:meta])* $trait:ident) => {
        $(#[$doc])*
        pub trait $trait {
            /// The `Checked` type this level yields.
            type Out;
            /// Probes the bounds (called through autoref specialisation).
            fn __pl_probe(&self) -> Self::Out;
        }
    };
}

probe_level!(
    /// Level 0: every bound holds.
    ProbeL0
);
probe_level!(
    /// Level 1: `C` is not a cacher of `T`.
    ProbeL1
);
probe_level!(
    /// Level 2: `T` has serde but not `Send + Sync`.
    ProbeL2
);
probe_level!(
    /// Level 3: `T` is `Serialize` only.
    ProbeL3
);
probe_level!(
    /// Level 4: nothing holds.
    ProbeL4
);

impl<T, C> ProbeL0 for &&&&Probe<T, C>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    C: Cacher<T>,
{
    type Out = Checked<T, C, Pass>;
    fn __pl_probe(&self) -> Self::Out {
        Checked {
            ops: Ops::real(),
            _verdict: PhantomData,
        }
    }
}

impl<T, C> ProbeL1 for &&&Probe<T, C>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Out = Checked<T, C, NoCacher>;
    fn __pl_probe(&self) -> Self::Out {
        Checked {
            ops: Ops::unusable(),
            _verdict: PhantomData,
        }
    }
}

impl<T, C> ProbeL2 for &&Probe<T, C>
where
    T: Serialize + DeserializeOwned,
{
    type Out = Checked<T, C, NotThreadSafe>;
    fn __pl_probe(&self) -> Self::Out {
        Checked {
            ops: Ops::unusable(),
            _verdict: PhantomData,
        }
    }
}

impl<T, C> ProbeL3 for &Probe<T, C>
where
    T: Serialize,
{
    type Out = Checked<T, C, NoDeserialize>;
    fn __pl_probe(&self) -> Self::Out {
        Checked {
            ops: Ops::unusable(),
            _verdict: PhantomData,
        }
    }
}

impl<T, C> ProbeL4 for Probe<T, C> {
    type Out = Checked<T, C, NoSerialize>;
    fn __pl_probe(&self) -> Self::Out {
        Checked {
            ops: Ops::unusable(),
            _verdict: PhantomData,
        }
    }
}

/// Never implemented (except for an uninhabited type, so rustc does not suggest adding an
/// impl): requiring one of these traits is how a failed check reports its message.
pub enum Never {}

macro_rules! failed_check {
    ($trait:ident, $message:literal, $label:literal, $note:literal) => {
        #[doc = $message]
        #[diagnostic::on_unimplemented(message = $message, label = $label, note = $note)]
        pub trait $trait {}
        #[diagnostic::do_not_recommend]
        impl $trait for Never {}
    };
}

failed_check!(
    OutputNotSerialize,
    "`{Self}` cannot be a step output: it does not implement `serde::Serialize`",
    "outputs are stored, so this type must implement `Serialize`",
    "step outputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; for your own type add `#[derive(serde::Serialize, serde::Deserialize)]`"
);
failed_check!(
    OutputNotDeserialize,
    "`{Self}` cannot be a step output: it does not implement `serde::de::DeserializeOwned`",
    "outputs are loaded back from the store, so this type must implement `DeserializeOwned`",
    "step outputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; add `#[derive(serde::Deserialize)]`, and replace borrowed fields (`&str`) by owned ones (`String`)"
);
failed_check!(
    OutputNotThreadSafe,
    "`{Self}` cannot be a step output: it is not `Send + Sync`",
    "outputs are shared between steps running on worker threads",
    "step outputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; use `Arc` instead of `Rc` and `Mutex` instead of `RefCell`, or return plain data"
);
failed_check!(
    InputNotSerialize,
    "`{Self}` cannot be a step input: it does not implement `serde::Serialize`",
    "inputs are hashed into the cache key and stored, so this type must implement `Serialize`",
    "step inputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; for your own type add `#[derive(serde::Serialize, serde::Deserialize)]`"
);
failed_check!(
    InputNotDeserialize,
    "`{Self}` cannot be a step input: it does not implement `serde::de::DeserializeOwned`",
    "inputs are loaded from the store, so this type must implement `DeserializeOwned`",
    "step inputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; add `#[derive(serde::Deserialize)]`, and take borrowed data as `&T` of an owned `T` (`&str` is fine, `&&str` is not)"
);
failed_check!(
    InputNotThreadSafe,
    "`{Self}` cannot be a step input: it is not `Send + Sync`",
    "inputs are shared between steps running on worker threads",
    "step inputs need `Serialize + DeserializeOwned + Send + Sync + 'static`; use `Arc` instead of `Rc` and `Mutex` instead of `RefCell`"
);

/// `C` cannot store `T`.
#[diagnostic::on_unimplemented(
    message = "cacher `{Self}` cannot store step output `{T}`: it does not implement `Cacher<{T}>`",
    label = "chosen here for an output of type `{T}`",
    note = "choose a cacher that implements `Cacher<{T}>` (`Bincode` and `Json` store any serde type), or implement it for `{Self}`"
)]
pub trait CannotStore<T> {}
#[diagnostic::do_not_recommend]
impl<T> CannotStore<T> for Never {}

// `verify_*::<T, C>()` repeats `T` and `C` as explicit generic arguments: rustc then points
// a failed bound at the argument it concerns, which the macro spans at the user's type or
// at the cacher's path. The bounds are written
// inline so the note rustc adds shows one short line.
impl<T, C> Checked<T, C, Pass> {
    /// The operations on an input type.
    pub fn verify_input<U, D>(self) -> Ops<T, C> {
        self.ops
    }
    /// The operations on an output type.
    pub fn verify_output<U, D>(self) -> Ops<T, C> {
        self.ops
    }
}

impl<T, C> Checked<T, C, NoCacher> {
    /// Inputs are checked with the default cacher, which stores every serde type.
    pub fn verify_input<U, D>(self) -> Ops<T, C> {
        self.ops
    }
    /// Fails to compile: the chosen cacher cannot store the output type.
    pub fn verify_output<U, D>(self) -> Ops<T, C>
    where
        D: CannotStore<U>,
    {
        self.ops
    }
}

impl<T, C> Checked<T, C, NotThreadSafe> {
    /// Fails to compile with the input message.
    pub fn verify_input<U: InputNotThreadSafe, D>(self) -> Ops<T, C> {
        self.ops
    }
    /// Fails to compile with the output message.
    pub fn verify_output<U: OutputNotThreadSafe, D>(self) -> Ops<T, C> {
        self.ops
    }
}

impl<T, C> Checked<T, C, NoDeserialize> {
    /// Fails to compile with the input message.
    pub fn verify_input<U: InputNotDeserialize, D>(self) -> Ops<T, C> {
        self.ops
    }
    /// Fails to compile with the output message.
    pub fn verify_output<U: OutputNotDeserialize, D>(self) -> Ops<T, C> {
        self.ops
    }
}

impl<T, C> Checked<T, C, NoSerialize> {
    /// Fails to compile with the input message.
    pub fn verify_input<U: InputNotSerialize, D>(self) -> Ops<T, C> {
        self.ops
    }
    /// Fails to compile with the output message.
    pub fn verify_output<U: OutputNotSerialize, D>(self) -> Ops<T, C> {
        self.ops
    }
}

/// How one argument of a step call in a pipeline body becomes the step's input `T`, for
/// generated code. `M` tells the impls apart (it is inferred, never written): an upstream
/// handle ([`ByArtifact`], [`ByArtifactRef`]), a plain value ([`ByValue`]), or the output of
/// a step that failed to compile ([`Stub`], [`StubRef`]), which wires anywhere so that one
/// mistake adds no errors to the pipelines using it.
///
/// `#[step]` declares one trait per input, `<step>::__Input_<arg><M>`, carrying the message
/// that names the step, the input and both types, with one blanket impl over this trait
/// marked `#[diagnostic::do_not_recommend]`: a mis-wired argument is reported through the
/// per-input trait's message, and no step emits impls or bodies of its own.
pub trait WireInput<T, M> {
    /// The input.
    fn into_input(self) -> Input<T>;
}

/// An upstream step's output passed by value, `Artifact<T>`.
pub struct ByArtifact;
/// An upstream step's output passed by reference, `&Artifact<T>`.
pub struct ByArtifactRef;
/// A plain value (a parameter).
pub struct ByValue;
/// A list of upstream outputs, `Vec<Artifact<T>>`, for a `Vec<T>` input (fan-in, see
/// [`gather`](crate::gather::gather)).
pub struct ByList;
/// A borrowed list of upstream outputs, `&Vec<Artifact<T>>` or `&[Artifact<T>]`.
pub struct ByListRef;
/// The output of a step that failed to compile.
pub struct Stub;
/// A reference to the output of a step that failed to compile.
pub struct StubRef;

/// The ways an `x: Artifact<T>` input may be given: every [`WireInput`] mode except
/// [`ByValue`].
pub trait HandleMode {}
impl HandleMode for ByArtifact {}
impl HandleMode for ByArtifactRef {}
impl HandleMode for ByList {}
impl HandleMode for ByListRef {}
impl HandleMode for Stub {}
impl HandleMode for StubRef {}

/// The ways a `cache_ignore` or `secret` input may be given: every [`WireInput`] mode
/// except the upstream handles ([`ByArtifact`], [`ByArtifactRef`]).
pub trait ValueMode {}
impl ValueMode for ByValue {}
impl ValueMode for Stub {}
impl ValueMode for StubRef {}

impl<T> WireInput<T, ByArtifact> for Artifact<T> {
    #[inline]
    fn into_input(self) -> Input<T> {
        Input::Artifact(self)
    }
}

impl<T> WireInput<T, ByArtifactRef> for &Artifact<T> {
    #[inline]
    fn into_input(self) -> Input<T> {
        Input::Artifact(self.clone())
    }
}

// Fan-in: a list of handles becomes the handle of their gathered list (`gather.rs`).
impl<T> WireInput<Vec<T>, ByList> for Vec<Artifact<T>>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn into_input(self) -> Input<Vec<T>> {
        Input::Artifact(crate::gather::gather(self))
    }
}

impl<T> WireInput<Vec<T>, ByListRef> for &Vec<Artifact<T>>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn into_input(self) -> Input<Vec<T>> {
        Input::Artifact(crate::gather::gather(self.iter().cloned()))
    }
}

impl<T> WireInput<Vec<T>, ByListRef> for &[Artifact<T>]
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn into_input(self) -> Input<Vec<T>> {
        Input::Artifact(crate::gather::gather(self.iter().cloned()))
    }
}

impl<T> WireInput<T, ByValue> for T {
    #[inline]
    fn into_input(self) -> Input<T> {
        Input::Value(self)
    }
}

impl<T> WireInput<T, Stub> for Unwired {
    fn into_input(self) -> Input<T> {
        unwired()
    }
}

impl<T> WireInput<T, StubRef> for &Unwired {
    fn into_input(self) -> Input<T> {
        unwired()
    }
}

/// Builds a pipeline; the bound on `O` is checked here, at the pipeline's return type.
pub fn build_pipeline<O: PipelineOutput>(
    name: &str,
    enable_cache: Option<bool>,
    body: impl FnOnce() -> O,
) -> Pipeline<O> {
    Pipeline::build(name, enable_cache, body)
}

/// What the stub of a step that failed to compile returns: it wires anywhere, so a
/// mistake in a step's definition adds no errors to the pipelines that use it.
#[derive(Clone, Copy, Debug)]
pub struct Unwired;

impl PipelineOutput for Unwired {
    fn bind(&self, _: &Binder<'_>) -> Self {
        Unwired
    }
}

/// The body of a stub: never runs, because the crate that contains it fails to compile.
pub fn unwired<T>() -> T {
    unreachable!("a `#[step]` with a compile error was called")
}

/// Where a `#[step]` or `#[helper]` was defined, as the generated code finds out (see
/// `pipeline-macros/src/expand/scope.rs`): its generated module reaches the function
/// through `super::`, which inside a function body names the enclosing module instead, so
/// such items must be module items. At module level, a trait defined beside the function
/// and glob-imported by the module answers [`AtModuleLevel`]; inside a function body that
/// trait is out of the module's reach, and [`ScopeFallback`] answers [`InFunctionBody`].
pub struct AtModuleLevel;

/// The answer for an item defined inside a function body; it implements neither
/// [`StepAtModuleLevel`] nor [`HelperAtModuleLevel`], whose messages then explain.
pub struct InFunctionBody;

/// The lower-priority answer (its `&self` is `&&Tag`, one autoref further than the
/// module-level trait's): used only when the module-level trait is not in scope.
pub trait ScopeFallback {
    /// Says "inside a function body".
    fn __pl_scope(&self) -> InFunctionBody {
        InFunctionBody
    }
}

impl<T> ScopeFallback for &T {}

/// Holds for a `#[step]` defined at module level.
#[diagnostic::on_unimplemented(
    message = "a `#[step]` must be an item of a module, not of a function body",
    label = "this step is defined inside a function",
    note = "the step's generated module (`<step>::call`, `<step>::SIGNATURE`, the wiring) cannot reach items declared inside a function",
    note = "move the step, with any types and helpers it uses, out of the function body to module level (e.g. beside `fn main`); a `#[pipeline]` may stay where it is",
    note = "in a doctest, add `fn main() {{}}` (or `# fn main() {{}}`) so the example's items are not wrapped in a generated `main`"
)]
pub trait StepAtModuleLevel {}

impl StepAtModuleLevel for AtModuleLevel {}

/// Holds for a `#[helper]` defined at module level.
#[diagnostic::on_unimplemented(
    message = "a `#[helper]` must be an item of a module, not of a function body",
    label = "this helper is defined inside a function",
    note = "steps name helpers in `uses = [..]` from their generated modules, which cannot reach items declared inside a function",
    note = "move the helper out of the function body to module level (e.g. beside `fn main`)",
    note = "in a doctest, add `fn main() {{}}` (or `# fn main() {{}}`) so the example's items are not wrapped in a generated `main`"
)]
pub trait HelperAtModuleLevel {}

impl HelperAtModuleLevel for AtModuleLevel {}

/// Asserts that a `#[step]` is a module item; called with the answer of the scope probe.
pub fn step_at_module_level<S: StepAtModuleLevel>(_: S) {}

/// Asserts that a `#[helper]` is a module item; called with the answer of the scope probe.
pub fn helper_at_module_level<S: HelperAtModuleLevel>(_: S) {}
