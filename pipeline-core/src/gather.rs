//! Fan-in: a list of upstream outputs built in a pipeline body, `Vec<Artifact<T>>`, taken by
//! a step as one `Vec<T>` (declared `all: &[T]`, `all: &Vec<T>` or `all: Vec<T>`).
//!
//! A sweep written as a loop over parameter values yields one handle per call. Passing the
//! list (`select_best(&all)`) adds a built-in `pipeline.gather` call to the graph: its inputs are the
//! items, in list order, and its one output is the `Vec<T>` of their values, stored like any
//! step output (bincode). So the list is an artifact of its own, and everything else follows
//! from the ordinary rules:
//!
//! - the `gather` call's cache key holds the items' content hashes in order (its inputs are
//!   named `item[0]`, `item[1]`, ...), so a run where no item changed reuses it without
//!   reading a byte, and a miss names the item that changed (`input `item[3]` changed`);
//! - the step that takes the list keys on the list's content hash (early cutoff: a re-run
//!   item that produced the same bytes changes nothing downstream);
//! - lineage records one edge per item, from its producer to the `gather` call.
//!
//! The gathered list is a copy of its items' bytes (one more blob): the price of keeping the
//! list an ordinary artifact that any backend, `pipeline show` and the dashboard know. The
//! `gather` call has no registry entry, so it runs on a thread of the driving process
//! whatever the executor (it only moves bytes).
//!
//! As Prefect's and ZenML's fan-in of mapped results, but typed: the compiler checks that
//! the items are `Artifact<T>` for the step's `T`.

use std::sync::{Arc, Mutex, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::cacher::Bincode;
use crate::graph::{
    add_step, artifact, with_building, Input, InputMode, InputSpec, OutputSpec, StepContext,
    StepDef, Value,
};
use crate::signature::StepDecl;

/// The built-in `gather` step's code. Its signature is fixed: bump it when the way a list
/// is gathered (and so its stored bytes) changes.
pub(crate) static GATHER: StepDecl = StepDecl::new(
    GATHER_PATH,
    0x6761_7468_6572_0001,
    0x6761_7468_6572_0001,
    &[],
    &[],
    None,
);

/// The step name of the built-in fan-in call (it enters the cache key).
pub(crate) const GATHER_STEP: &str = "pipeline.gather";

/// The built-in step's path, as a worker sees it as an input's producer.
pub(crate) const GATHER_PATH: &str = "pipeline::gather";

/// Gathers `items`, outputs of steps of the pipeline being built, into one artifact holding
/// their values in list order: what passing a `Vec<Artifact<T>>` (or `&[Artifact<T>]`) to a
/// step's `&[T]`, `&Vec<T>` or `Vec<T>` input does. Call it directly to return the list from
/// a pipeline, or to pass it to several steps through one handle.
///
/// ```no_run
/// use pipeline::prelude::*;
///
/// #[step]
/// fn fit(lambda: f64) -> f64 {
///     lambda * 2.0
/// }
///
/// #[step]
/// fn best(scores: &[f64]) -> f64 {
///     scores.iter().copied().fold(f64::MIN, f64::max)
/// }
///
/// #[pipeline]
/// fn sweep() -> (Artifact<Vec<f64>>, Artifact<f64>) {
///     let scores: Vec<Artifact<f64>> = [0.1, 1.0, 10.0].into_iter().map(fit).collect();
///     let best = best(&scores); // fan-in: the step gets `&[f64]`, in list order
///     (pipeline::gather(scores), best)
/// }
/// # fn main() {}
/// ```
///
/// `items` may be handles or references to them (`gather(&all)`, `gather(all.iter())`).
/// An empty list gathers to an empty `Vec`.
///
/// # Panics
///
/// When no pipeline is being built on this thread: outside a `#[pipeline]` body, or on a
/// thread the body started (as every step call, see [`add_step`]).
pub fn gather<T, I>(items: impl IntoIterator<Item = I>) -> Artifact<Vec<T>>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    // Handles or references to them: `gather(&all)` works as `select_best(&all)` does.
    I: std::borrow::Borrow<Artifact<T>>,
{
    // Said here: `add_step`'s own message names the built-in step `pipeline.gather` and
    // its `::call(..)`, which do not exist for a user.
    if with_building(|_| ()).is_none() {
        panic!(
            "`pipeline::gather` was called outside a `#[pipeline]` body, or on another \
             thread than the body's; it gathers step outputs of the pipeline being built \
             into one list. To collect the values of a run's outputs, load each one \
             (`.load()`) into a `Vec`"
        );
    }
    let inputs: Vec<InputSpec> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let item = item.borrow().clone();
            InputSpec::new(item_name(i), InputMode::Owned, Input::Artifact(item))
        })
        .collect();
    let def = StepDef {
        name: GATHER_STEP,
        code: &GATHER,
        enable_cache: None,
        resources: None,
        policy: None,
        is_async: false,
        inputs,
        outputs: vec![OutputSpec::new::<Vec<T>, _>("output", Bincode)],
        async_body: None,
        body: Box::new(|ctx: &mut StepContext| {
            // As many items as the call has inputs: a map's gather gets one per item when
            // the run splits the list (`map.rs`).
            let n = ctx.inputs.len();
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                // Moved out of memory when this is the item's last consumer, else loaded.
                values.push(ctx.owned::<T>(i)?);
            }
            Ok(vec![Arc::new(values) as Value])
        }),
        entry: None,
    };
    artifact(add_step(def), 0)
}

/// `item[i]`, interned: input names are `&'static str` (they are compared and stored by
/// every run), and a list's positions repeat from run to run, so each name is leaked once
/// per process, up to the longest list gathered.
pub(crate) fn item_name(i: usize) -> &'static str {
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while names.len() <= i {
        let next = format!("item[{}]", names.len());
        names.push(Box::leak(next.into_boxed_str()));
    }
    names[i]
}

#[cfg(test)]
mod tests {
    use super::item_name;

    #[test]
    fn item_names_are_interned_in_order() {
        assert_eq!(item_name(3), "item[3]");
        assert_eq!(item_name(0), "item[0]");
        assert!(std::ptr::eq(item_name(3), item_name(3)));
    }
}
