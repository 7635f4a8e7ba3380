//! Typed dynamic fan-out: `list.map(|item| ...)` on an `Artifact<Vec<T>>` wires steps once
//! per item of a list whose length is known only when the run has it.
//!
//! When the pipeline body runs, [`Artifact::map`] adds three things to the graph:
//!
//! 1. a built-in **split** call (step `pipeline.split`), whose input is the list and whose outputs are its items,
//!    each stored as an artifact of its own (recorded as `item[0]`, `item[1]`, ...);
//! 2. the calls the closure makes, as **templates**: they never run themselves;
//! 3. one **gather** call (step `pipeline.gather`) per result of the closure (`gather.rs`), which will collect the
//!    per-item results in list order into one `Artifact<Vec<U>>`.
//!
//! When the run knows the split's outputs (it executed, or was reused from the cache, in
//! which case the items' hashes come from its record and no item is read), the executor
//! adds a copy of every template per item, named `<call>[i]`, whose inputs are that item,
//! the copies of the same item's other templates, and anything from outside the closure
//! (broadcast). The gather gets one input per item. From there on every copy is an
//! ordinary call with its own cache key, so:
//!
//! - appending an item runs only the new item's calls; editing one runs only that item's;
//! - reordering runs none of them (the keys hold content hashes, not positions), and the
//!   gathered result follows the new order;
//! - an empty list gathers to an empty `Vec`, and the calls after the map run;
//! - a failing item fails its own chain; the other items finish, and the calls after the
//!   map are skipped; a re-run executes only what failed.
//!
//! As Prefect's and ZenML's `map`, Flyte's `map_task` and Metaflow's `foreach`, but typed:
//! the closure's wiring is checked by the compiler like any other pipeline body.
//!
//! A map inside a map's closure works the same way, one level at a time: a copy of the
//! outer map's templates for item `i` holds a copy of the inner map (its split, its
//! templates, its gathers), which expands when item `i`'s inner list is known. Its calls
//! are named `<call>[i][j]`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::cacher::Bincode;
use crate::graph::{
    add_step, with_building, BuildProblem, Input, InputMode, InputSpec, NodeId, OutputSpec, Role,
    StepContext, StepDef, Value,
};
use crate::signature::StepDecl;

/// The built-in split's code. Its signature is fixed: bump it when the way a list is split
/// (and so its items' stored bytes) changes.
pub(crate) static SPLIT: StepDecl = StepDecl::new(
    SPLIT_PATH,
    0x7370_6c69_7400_0001,
    0x7370_6c69_7400_0001,
    &[],
    &[],
    None,
);

/// The step name of the built-in split (it enters the cache key).
pub(crate) const SPLIT_STEP: &str = "pipeline.split";

/// The built-in split's path, as a worker sees it as an input's producer.
pub(crate) const SPLIT_PATH: &str = "pipeline::split";

/// One `list.map(..)` of a graph.
#[derive(Clone, Debug)]
pub(crate) struct MapDef {
    /// The split call: its output `i` is item `i`.
    pub(crate) split: NodeId,
    /// The calls the closure made, in call order (so upstream first), with those of the
    /// maps nested in it.
    pub(crate) templates: Vec<NodeId>,
    /// Per result of the closure: the output it is (`(node, output)`), and the gather
    /// call that collects it.
    pub(crate) results: Vec<((NodeId, usize), NodeId)>,
    /// The map in whose closure this one was made, if any: then its split and gathers are
    /// that map's templates, and a run makes a copy of this map per item of that one.
    pub(crate) parent: Option<usize>,
    /// The maps made directly in this one's closure.
    pub(crate) children: Vec<usize>,
}

/// What `map` can iterate over: a list (`Vec<T>`). Only `Vec<T>` implements it; the
/// trait exists so that `map` on an artifact of another type is one error that says so,
/// instead of rustc's advice about iterators.
#[diagnostic::on_unimplemented(
    message = "`map` needs the handle of a list (`Artifact<Vec<T>>`); this artifact holds `{Self}`",
    label = "not a list",
    note = "`map` wires steps once per item of a list that a step returned; to map over `{Self}`, return a `Vec` of its parts from a step first, or call the steps on this artifact directly"
)]
pub trait MapList: Sized {
    /// The type of one item.
    type Item: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The same handle, typed as the list it is.
    #[doc(hidden)]
    fn as_list(list: &Artifact<Self>) -> &Artifact<Vec<Self::Item>>;
}

impl<T> MapList for Vec<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Item = T;
    fn as_list(list: &Artifact<Self>) -> &Artifact<Vec<T>> {
        list
    }
}

impl<L> Artifact<L> {
    /// Wires `f`'s steps once per item of this list, when the run has the list, and
    /// gathers their results in list order: `Artifact<Vec<U>>` for a closure that returns
    /// an `Artifact<U>`, a tuple of such lists for a tuple of handles.
    ///
    /// `f` runs once, while the pipeline body runs, with a handle to "the item"; its calls
    /// are repeated per item. It may use parameters and any artifact of the body from
    /// outside the closure (each item's calls share them). Each item is stored as an
    /// artifact of its own, so each per-item call has its own cache key: appending an item
    /// runs only the new item's calls, editing one runs only that item's, and reordering
    /// runs none (the gathered list follows the new order). An empty list maps to an empty
    /// `Vec`. Per-item calls are recorded as `<call>[i]`.
    ///
    /// The closure may itself call `map`, on the item (a list of lists), on a list it
    /// computes from the item, or on one from outside: the inner map expands per outer
    /// item, when that item's list is known, and its calls are recorded as `<call>[i][j]`
    /// (item `j` of outer item `i`'s list). `examples/grid_search.rs` maps over gamma
    /// values with a map over folds inside.
    ///
    /// Refused when the pipeline runs ([`Error::Graph`](crate::Error::Graph), before any
    /// step does): a handle made inside the closure used outside it (by a step, or as the
    /// pipeline's output), a closure returning a handle made in another map's closure,
    /// `.named(..)` on the item handle, and a label shaped like a per-item call's name
    /// (`score[1]` beside a map that calls `score`).
    ///
    /// `f` is a closure that calls the steps: `folds.map(|fold| score(fold))`. The step
    /// itself, `folds.map(score)`, does not compile (``implementation of `FnOnce` is not
    /// general enough``): a step function is generic over what it is given, and `map`
    /// needs one that takes the item handle whatever its lifetime.
    ///
    /// ```no_run
    /// use pipeline::prelude::*;
    ///
    /// #[step]
    /// fn make_folds(k: usize) -> Vec<Vec<u32>> {
    ///     (0..k as u32).map(|f| vec![f, f + 1]).collect()
    /// }
    ///
    /// #[step]
    /// fn score(fold: &[u32], gamma: f64) -> f64 {
    ///     fold.iter().sum::<u32>() as f64 * gamma
    /// }
    ///
    /// #[step]
    /// fn mean(scores: &[f64]) -> f64 {
    ///     scores.iter().sum::<f64>() / scores.len().max(1) as f64
    /// }
    ///
    /// #[pipeline]
    /// fn cv(k: usize, gamma: f64) -> Artifact<f64> {
    ///     let folds = make_folds(k);
    ///     let scores = folds.map(|fold| score(fold, gamma)); // Artifact<Vec<f64>>
    ///     mean(&scores)
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// A map inside a map: per group, per member, then a total per group.
    ///
    /// ```no_run
    /// use pipeline::prelude::*;
    ///
    /// #[step]
    /// fn groups() -> Vec<Vec<u32>> {
    ///     vec![vec![1, 2], vec![3]]
    /// }
    ///
    /// #[step]
    /// fn double(x: &u32) -> u32 {
    ///     2 * x
    /// }
    ///
    /// #[step]
    /// fn total(xs: &[u32]) -> u32 {
    ///     xs.iter().sum()
    /// }
    ///
    /// #[pipeline]
    /// fn per_group() -> Artifact<Vec<u32>> {
    ///     groups().map(|group| {
    ///         let doubled = group.map(|x| double(x)); // double[i][j]
    ///         total(&doubled)                           // total[i]
    ///     })
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// # Panics
    ///
    /// When no pipeline is being built on this thread: outside a `#[pipeline]` body, or on
    /// a thread the body started (as every step call).
    #[must_use = "the mapped list is what the map computes: pass it to a step or return it from the pipeline"]
    pub fn map<R: MapResult>(&self, f: impl FnOnce(&Artifact<L::Item>) -> R) -> R::Mapped
    where
        // On the method, not the impl: a non-list artifact then finds `map` and fails
        // this bound, whose message says what `map` needs (an impl bound would make rustc
        // suggest `Iterator` instead).
        L: MapList,
    {
        map_list(L::as_list(self), f)
    }
}

/// [`Artifact::map`] on the list's own type.
fn map_list<T, R: MapResult>(
    list: &Artifact<Vec<T>>,
    f: impl FnOnce(&Artifact<T>) -> R,
) -> R::Mapped
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    if with_building(|_| ()).is_none() {
        panic!(
            "`map` was called outside a `#[pipeline]` body, or on another thread than the \
             body's; `list.map(|item| ..)` wires steps per item of a list inside a pipeline \
             body, on its thread. To map over the values of a run's output, load it \
             (`run.output().load()`) and iterate over the `Vec`"
        );
    }
    let split = add_step(split_def::<T>(list.clone()));
    let (graph, split_node) = split;
    let map = with_building(|g| {
        let parent = g.mapping.last().copied();
        g.nodes[split_node].role = Role::Split(g.maps.len());
        g.maps.push(MapDef {
            split: split_node,
            templates: Vec::new(),
            results: Vec::new(),
            parent,
            children: Vec::new(),
        });
        let map = g.maps.len() - 1;
        if let Some(parent) = parent {
            g.maps[parent].children.push(map);
        }
        g.mapping.push(map);
        map
    })
    .unwrap_or(0);
    let item = Artifact::<T>::unbound(graph, split_node, 0);
    // Pops the template scope even when `f` panics, so the graph stays usable.
    struct EndScope;
    impl Drop for EndScope {
        fn drop(&mut self) {
            with_building(|g| g.mapping.pop());
        }
    }
    let scope = EndScope;
    let result = f(&item);
    drop(scope);
    let mut outputs = Vec::new();
    result.outputs(&mut outputs);
    with_building(|g| {
        // Every call made while the closure ran, a nested map's split, templates and
        // gathers too: a run copies them all per item.
        g.maps[map].templates = (split_node + 1..g.nodes.len()).collect();
    });
    let mapped = result.gather();
    with_building(|g| {
        // The gathers are the last calls added, one per result, in order.
        let first = g.nodes.len() - outputs.len();
        for (k, at) in outputs.iter().enumerate() {
            g.nodes[first + k].role = Role::MapGather(map, k);
            g.maps[map].results.push((*at, first + k));
        }
    });
    mapped
}

/// Whether calls of `step` are built-in bookkeeping of a map or a fan-in (the split
/// `pipeline.split`, the gather `pipeline.gather`), not a step the user wrote: `diff`
/// reads through them, and does not count them among the steps that differ.
pub(crate) fn builtin_step(step: &str) -> bool {
    step == SPLIT_STEP || step == crate::gather::GATHER_STEP
}

/// `("train_fold", 3)` for a name shaped like a map's per-item call, `train_fold[3]` (a
/// label may be shaped so too). The one parser of that shape: `pipeline show` groups by
/// it (and the dashboard stacks them), `diff` and `explain` pair by it, and a label is
/// refused if it takes such a name. Public as `pipeline::report::item_call`.
pub fn item_call(name: &str) -> Option<(&str, u64)> {
    let (base, index) = name.strip_suffix(']')?.rsplit_once('[')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, index.parse().ok()?))
}

/// `"train_at"` for `train_at[2][0]` (a call of a map nested in another map) and for
/// `train_at[2]`: the call of the pipeline body that all of a map's per-item calls were
/// copied from, whatever the depth. `None` for a name not shaped so. The dashboard draws
/// each one as one stacked node. Public as `pipeline::report::item_call_root`.
pub fn item_call_root(name: &str) -> Option<&str> {
    let (root, numbers) = item_path(name);
    (!numbers.is_empty()).then_some(root)
}

/// `("train_at", [2, 0])` for `train_at[2][0]`: the name without its item numbers, and
/// the numbers, outermost first (`(name, [])` for a name with none).
pub(crate) fn item_path(name: &str) -> (&str, Vec<u64>) {
    let mut root = name;
    let mut numbers = Vec::new();
    while let Some((up, n)) = item_call(root) {
        numbers.push(n);
        root = up;
    }
    numbers.reverse();
    (root, numbers)
}

/// The handles that escaped a map's closure: a call outside the closure that reads "the
/// item" or an output of a call made inside it, which exist only per item, and a closure
/// that returns such a handle of another map's closure. Each is a wiring problem that
/// names the fix (return the output from the closure that made it).
pub(crate) fn leaks(graph: &crate::graph::Graph) -> Vec<BuildProblem> {
    let mut problems = Vec::new();
    // Per-item calls are named `<template>[i]` (`[i][j]` in a nested map) when the run adds
    // them: no other call may be named so (a label), or lookups by name would find the
    // wrong call. Per template: how many maps enclose it.
    let templates: std::collections::HashMap<&str, usize> = graph
        .nodes
        .iter()
        .filter(|n| n.within.is_some())
        .map(|n| (n.name.as_str(), depth(graph, n.within)))
        .collect();
    if !templates.is_empty() {
        for node in &graph.nodes {
            let Some(base) = item_call_root(&node.name) else {
                continue;
            };
            if let Some(&depth) = templates.get(base) {
                let shape: String = ["[i]", "[j]", "[k]", "[l]"]
                    .iter()
                    .cycle()
                    .take(depth)
                    .copied()
                    .collect();
                problems.push(BuildProblem::Wiring(format!(
                    "the call named `{}` has the name of a per-item call of the map that \
                     calls `{base}` (named `{base}{shape}` per item); give it another label",
                    node.name
                )));
            }
        }
    }
    for node in &graph.nodes {
        // A map's gather reads what its closure returned: it is checked as a call inside
        // that closure.
        let (inside, returned) = match node.role {
            Role::MapGather(m, _) => (Some(m), true),
            _ => (node.within, false),
        };
        for input in &node.inputs {
            let crate::graph::InputSource::Artifact { node: up, .. } = input.source else {
                continue;
            };
            let Some(producer) = graph.nodes.get(up) else {
                continue;
            };
            let made_in = match (producer.role, producer.within) {
                (Role::Split(m), _) => m,
                (_, Some(m)) => m,
                (_, None) => continue,
            };
            // Inside the closure that made it, or a closure nested in that one.
            if encloses(graph, made_in, inside) {
                continue;
            }
            let what = describe(graph, up);
            problems.push(BuildProblem::Wiring(if returned {
                format!(
                    "a `map` closure returns {what}, made inside another `map` closure; a \
                     handle made inside a closure exists once per item of that closure's \
                     list: return it from the closure that made it (or use a handle from \
                     outside every closure)"
                )
            } else {
                format!(
                    "input `{}` of step `{}` is {what}, made inside a `map` closure, but `{}` \
                     is called outside it; a call inside the closure exists once per item: \
                     return its output from the closure, and the map gathers it into a list",
                    input.name, node.name, node.name
                )
            }));
        }
    }
    problems
}

/// Node `node` as a wiring message names what it gives: `the output of `score``, or, for
/// the built-in calls the user never wrote, `the item handle of the `map` over `folds``
/// and `the list gathered by the `map` over `folds``.
fn describe(graph: &crate::graph::Graph, node: NodeId) -> String {
    let Some(n) = graph.nodes.get(node) else {
        return "an unknown call".into();
    };
    let over = |map: usize| format!("the `map` over {}", list_name(graph, map, 0));
    match n.role {
        Role::Split(m) => format!("the item handle of {}", over(m)),
        Role::MapGather(m, _) => format!("the list gathered by {}", over(m)),
        Role::Call => format!("the output of `{}`", n.name),
    }
}

/// The list map `map` goes over, as a wiring message names it: `` `folds` ``, or, for a
/// map over the item of an enclosing map, `` an item of `groups` ``.
fn list_name(graph: &crate::graph::Graph, map: usize, hops: usize) -> String {
    let list = graph
        .maps
        .get(map)
        .and_then(|m| graph.nodes.get(m.split))
        .and_then(|split| split.inputs.first())
        .and_then(|input| match input.source {
            crate::graph::InputSource::Artifact { node, .. } => graph.nodes.get(node),
            crate::graph::InputSource::Param(_) => None,
        });
    match list {
        // `hops` bounds the walk, whatever the graph holds.
        Some(l) if hops < 16 => match l.role {
            Role::Split(outer) => format!("an item of {}", list_name(graph, outer, hops + 1)),
            _ => format!("`{}`", l.name),
        },
        _ => "a list".to_string(),
    }
}

/// How many maps' closures enclose a call whose innermost map is `inside`.
fn depth(graph: &crate::graph::Graph, mut inside: Option<usize>) -> usize {
    let mut depth = 0;
    while let Some(m) = inside {
        depth += 1;
        inside = graph.maps.get(m).and_then(|d| d.parent);
    }
    depth
}

/// Whether map `map`'s closure is `inside` (the innermost map of a call) or encloses it.
fn encloses(graph: &crate::graph::Graph, map: usize, mut inside: Option<usize>) -> bool {
    while let Some(m) = inside {
        if m == map {
            return true;
        }
        inside = graph.maps.get(m).and_then(|d| d.parent);
    }
    false
}

/// The pipeline's outputs (`outputs`: their nodes) that were made inside a map's closure:
/// each is a wiring problem that names the fix.
pub(crate) fn returned_from_closure(
    graph: &crate::graph::Graph,
    outputs: &[NodeId],
) -> Vec<BuildProblem> {
    outputs
        .iter()
        .filter(|&&n| {
            // Any handle of a split is "the item" (the closure's argument).
            graph
                .nodes
                .get(n)
                .is_some_and(|node| node.within.is_some() || matches!(node.role, Role::Split(_)))
        })
        .map(|&n| {
            let what = match graph.nodes[n].role {
                Role::Call => format!("an output of `{}`", graph.nodes[n].name),
                _ => describe(graph, n),
            };
            BuildProblem::Wiring(format!(
                "the pipeline returns {what}, made inside a `map` closure; a call \
                 inside the closure exists once per item: return its output from the closure, \
                 and return the list the map gathers"
            ))
        })
        .collect()
}

/// The split of `list`: one output per item (see `Role::Split`).
fn split_def<T>(list: Artifact<Vec<T>>) -> StepDef
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    StepDef {
        name: SPLIT_STEP,
        code: &SPLIT,
        enable_cache: None,
        resources: None,
        policy: None,
        is_async: false,
        inputs: vec![InputSpec::new(
            "list",
            InputMode::Owned,
            Input::Artifact(list),
        )],
        outputs: vec![OutputSpec::new::<T, _>("item", Bincode)],
        async_body: None,
        body: Box::new(|ctx: &mut StepContext| {
            let list = ctx.owned::<Vec<T>>(0)?;
            Ok(list
                .into_iter()
                .map(|item| Arc::new(item) as Value)
                .collect())
        }),
        entry: None,
    }
}

/// What a map's closure may return: a handle, or a tuple of handles (for a closure whose
/// last call has several outputs, return the fields you need).
#[diagnostic::on_unimplemented(
    message = "a `map` closure must return the handle of a step output, not `{Self}`",
    label = "the closure returns `{Self}`",
    note = "return the output to collect per item, e.g. `folds.map(|fold| score(fold))`, a tuple of up to 4 outputs `(a, b)` (nest tuples for more: `((a, b), (c, d), e)`), or one field of a step with several outputs (`out.model`); the map gathers it into an `Artifact<Vec<_>>`"
)]
pub trait MapResult {
    /// What the map returns: the per-item results gathered in list order.
    type Mapped;
    /// Appends the outputs this result is, in order.
    #[doc(hidden)]
    fn outputs(&self, out: &mut Vec<(NodeId, usize)>);
    /// Adds one gather per output (in the order of [`outputs`](Self::outputs)).
    #[doc(hidden)]
    fn gather(self) -> Self::Mapped;
}

impl<U> MapResult for Artifact<U>
where
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Mapped = Artifact<Vec<U>>;
    fn outputs(&self, out: &mut Vec<(NodeId, usize)>) {
        out.push((self.node, self.output));
    }
    fn gather(self) -> Artifact<Vec<U>> {
        crate::gather::gather([self])
    }
}

// `do_not_recommend`: a closure that returns no handle is told what to return by the
// trait's message, not shown a list of tuple impls.
macro_rules! tuple_result {
    ($($name:ident $i:tt),+) => {
        #[diagnostic::do_not_recommend]
        impl<$($name: MapResult),+> MapResult for ($($name,)+) {
            type Mapped = ($($name::Mapped,)+);
            fn outputs(&self, out: &mut Vec<(NodeId, usize)>) {
                $(self.$i.outputs(out);)+
            }
            fn gather(self) -> Self::Mapped {
                ($(self.$i.gather(),)+)
            }
        }
    };
}

tuple_result!(A 0, B 1);
tuple_result!(A 0, B 1, C 2);
tuple_result!(A 0, B 1, C 2, D 3);
