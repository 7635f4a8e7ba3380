//! Procedural macros of the `pipeline` crate: `#[step]`, `#[pipeline]` and `#[helper]`.
//!
//! Use them through the `pipeline` facade (`use pipeline::prelude::*;`); generated code
//! refers to `::pipeline::__private`, or to `crate = path` for re-exporting crates.
//!
//! ```
//! use pipeline::prelude::*;
//!
//! #[helper]
//! fn clip(x: f64) -> f64 {
//!     x.clamp(0.0, 1.0)
//! }
//!
//! #[step(outputs(train, test), uses = [clip])]
//! fn split(xs: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
//!     xs.into_iter().map(clip).partition(|&x| x < 0.5)
//! }
//!
//! #[step]
//! fn mean(xs: &[f64]) -> f64 {
//!     xs.iter().sum::<f64>() / xs.len().max(1) as f64
//! }
//!
//! #[pipeline]
//! fn stats(xs: Vec<f64>) -> Artifact<f64> {
//!     let data = split(xs);
//!     mean(&data.train)
//! }
//!
//! fn main() {
//!     let _: Pipeline<Artifact<f64>> = stats(vec![0.1, 0.7]);
//!     assert_eq!(mean::call(&[1.0, 3.0]), 2.0);
//! }
//! ```
//!
//! Define steps and helpers at module level, not inside a function body: `<step>::call`
//! and `<step>::Outputs` live in a generated module, and a module cannot see items local
//! to a function. One inside a function body is a compile error at its name that says
//! so (see `expand/scope.rs`); a `#[pipeline]` may be defined anywhere.
//!
//! Every mistake in an attribute or a signature is a compile error at the offending token,
//! and the function still expands (with placeholder items if needed), so one mistake gives
//! its own errors and no others; `tests/ui/` pins each message.

mod ast;
mod attr;
mod errors;
mod expand;
mod manifest;
mod signature;
mod values;

use proc_macro::TokenStream;

/// Makes a function a pipeline step.
///
/// Each argument is an input, given in a pipeline body either an upstream handle
/// (`&Artifact<T>` or `Artifact<T>`) or a plain `T` value (a parameter). Inside the step
/// it arrives as declared: `x: &T` (also `&str` and `&[T]`, stored as `String` and
/// `Vec<T>`), `x: T`, or `x: Artifact<T>` (the handle, for its path or metadata). The return
/// type is the output; `Result<T, E>` marks a fallible step. Input and output types need
/// `Serialize + DeserializeOwned + Send + Sync + 'static`, checked at the type.
///
/// Options, all optional:
///
/// | option | meaning |
/// |---|---|
/// | `outputs(a, b, ..)` | names the elements of a tuple return; generates `<step>::Outputs` |
/// | `enable_cache = false` | re-execute on every run (a run-level override still wins) |
/// | `name = "trainer"` | the step's name in logs, the store and its cache key |
/// | `version = "2"` | a salt folded into the code signature; bump it by hand |
/// | `uses = [clip, util::scale, factor!]` | `#[helper]` items whose signatures fold into this one |
/// | `deps = [smartcore, "tracing-subscriber"]` | crates whose versions in `Cargo.lock` fold in |
/// | `build_profile = true` | debug and release builds keep separate cache entries |
/// | `source_file = true` | any edit to the step's source file re-executes it |
/// | `cacher = Json` / `cacher(metrics = Json)` | how the output (or a named one) is stored |
/// | `crate = ::my::pipeline` | the path of the `pipeline` crate, for re-exporting crates |
///
/// The code signature also covers, without being asked, the files the step includes
/// (`include_str!`, `include_bytes!`, `include!`), the build-time variables it reads
/// (`env!`, `option_env!`), its `cfg!(..)` and `#[cfg(..)]` predicates, and the values of the
/// constants and statics its body names (when their type is `Serialize`). The defaults for
/// `deps`, `build_profile` and `source_file` can be set for a whole crate in its
/// `Cargo.toml`, under `[package.metadata.pipeline]`.
///
/// Generated next to the function: `<step>::SIGNATURE` (`u64`, the compile-time code
/// signature), `<step>::signature()` (the complete one the cache key uses: `SIGNATURE` with
/// included files over 4 KiB and constant values folded in at run time, once per process),
/// `<step>::call(..)` (the function itself, for unit tests), and `<step>::Outputs` for
/// multi-output steps. The function `<step>` itself only wires a pipeline: called outside a
/// `#[pipeline]` body it panics and points to `<step>::call`.
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    // The file the step is written in, for `source_file = true` (`None` for generated code).
    let file = proc_macro::Span::call_site().local_file();
    expand::step::expand(attr.into(), item.into(), file.as_deref()).into()
}

/// Makes a function a pipeline constructor that wires steps together.
///
/// `#[pipeline] fn name(params..) -> Outs` becomes `fn name(params..) -> Pipeline<Outs>`;
/// its body runs once, when the pipeline is constructed, to record the step graph. `Outs`
/// is `()`, an `Artifact<T>`, a tuple or `Vec` of them, or a step's `Outputs`. Handles
/// cannot be dereferenced or compared, so branching on an artifact's value is a compile
/// error (branch inside a step); branching and looping on parameters is fine.
///
/// Options: `enable_cache = bool` (default for its steps), `name = "..."` (the pipeline's
/// name in the store), `crate = path`.
#[proc_macro_attribute]
pub fn pipeline(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::pipeline::expand(attr.into(), item.into()).into()
}

/// Publishes an item's code signature so steps can name it in `uses = [..]`.
///
/// The item is kept as written. Its signature hashes its tokens (with the files, `env!`
/// variables and `cfg`s they read), with the signatures of the helpers it names in its own
/// `uses = [..]` folded in, so editing a helper changes the signature of every step that
/// uses it, directly or through other helpers. It goes on:
///
/// * a free function (`const`, `async` and generic ones too): `<helper>::SIGNATURE`;
/// * a `const` or `static`: `<NAME>::SIGNATURE`; its value is also hashed at run time when
///   its type is `Serialize`;
/// * a `macro_rules!` macro: named with `!` where a step can call it, `uses = [factor!]`;
/// * an `impl` block, inherent or of a trait, named by `#[helper(name = point_methods)]`
///   (a type's name would clash with the generated module): `point_methods::SIGNATURE`.
///
/// Options: `uses = [..]`, `name = ident` (`impl` blocks only), `crate = path`.
#[proc_macro_attribute]
pub fn helper(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::helper::expand(attr.into(), item.into()).into()
}
