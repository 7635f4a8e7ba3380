//! `pipeline lineage RUN`: a run's DAG, from the producer edges the store recorded.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use super::text::{duration, size};
use super::{run_status, RunView, StepView};
use crate::error::Result;
use crate::key::{Hash128, InputComponent};
use crate::map::item_call;
use crate::status::StepStatus;
use crate::store::{RunRecord, StepRecord, Store};

/// A run's DAG: its steps as nodes, in pipeline order, and an edge for each artifact one
/// step of the run consumed from another.
///
/// Edges come from the producer the store recorded with each input
/// ([`InputRecord::producer_execution`](crate::InputRecord::producer_execution)): the step
/// of this run with that execution, or that reused it when cached. When several steps of
/// the run reused the same execution, the one the key components name as the input's
/// producer is chosen; when no step of the run has that execution (a store that records a
/// cached step by pointing at the execution it reused may report the inputs of the earlier
/// run), the step the key components name is used. Content hashes never decide an edge.
///
/// Serializes as `{run, nodes, edges}`; prints as Graphviz DOT text.
#[derive(Debug, Clone, Serialize)]
pub struct RunGraph {
    /// The run.
    pub run: RunView,
    /// Its steps in pipeline order.
    pub nodes: Vec<GraphNode>,
    /// Artifacts flowing from one step of the run into another.
    pub edges: Vec<GraphEdge>,
}

/// One step of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    /// The step's record.
    #[serde(flatten)]
    pub step: StepView,
    /// Topological depth: 0 for a step with no producer in the run, else one more than its
    /// deepest producer.
    pub layer: usize,
}

/// An artifact flowing from one step of the run into another.
#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    /// Name of the producing step within the run.
    pub from: String,
    /// Name of the consuming step within the run.
    pub to: String,
    /// Output name at the producer (`None` when the producer recorded no output with the
    /// consumed content).
    pub output: Option<String>,
    /// Argument name at the consumer.
    pub input: String,
    /// Content hash of the artifact (hex).
    pub content_hash: Option<Hash128>,
    /// Size of the artifact in bytes, when the producer recorded it.
    pub size: Option<u64>,
    /// Index of the producer in [`RunGraph::nodes`].
    #[serde(skip)]
    pub producer: usize,
    /// Index of the consumer in [`RunGraph::nodes`].
    #[serde(skip)]
    pub consumer: usize,
    /// Index of the output in the producer's outputs.
    #[serde(skip)]
    pub output_index: Option<usize>,
}

impl RunGraph {
    /// The graph of run `run` (id, name, or a unique prefix of either).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) or
    /// [`Error::AmbiguousRun`](crate::Error::AmbiguousRun) when `run` names no run or
    /// several; otherwise what [`Store::run_steps`] returns.
    pub fn new(store: &Store, run: &str) -> Result<RunGraph> {
        let run = store.run(run)?;
        let steps = store.run_steps(&run.id)?;
        Ok(RunGraph::from_records(run, steps))
    }

    /// The graph of records already read: `steps` are the run's steps in pipeline order.
    pub fn from_records(run: RunRecord, steps: Vec<StepRecord>) -> RunGraph {
        let edges = edges(&steps);
        let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.producer, e.consumer)).collect();
        let layer = depths(steps.len(), &pairs);
        RunGraph {
            run: RunView(run),
            nodes: steps
                .into_iter()
                .zip(layer)
                .map(|(step, layer)| GraphNode {
                    step: StepView(step),
                    layer,
                })
                .collect(),
            edges,
        }
    }

    /// The step record of node `i`.
    pub fn step(&self, i: usize) -> &StepRecord {
        &self.nodes[i].step.0
    }

    /// The label of an edge: the argument it feeds, and the output name when the producer
    /// has several outputs and the names differ (`low → xs`).
    pub fn edge_label(&self, e: &GraphEdge) -> String {
        let producer = self.step(e.producer);
        // A split's outputs are items: named even when the list has one.
        let named = producer.outputs.len() > 1 || producer.step == crate::map::SPLIT_STEP;
        match &e.output {
            Some(out) if *out != e.input && named => format!("{out} → {}", e.input),
            _ => e.input.clone(),
        }
    }
}

/// Edges from each artifact input's recorded producer execution (see [`RunGraph`]).
fn edges(steps: &[StepRecord]) -> Vec<GraphEdge> {
    let mut edges = Vec::new();
    // The steps holding each execution (as theirs, or reused), in pipeline order, and the
    // first step of each name: a run of a 10,000-item map looks each input up in these
    // rather than in every step.
    let mut holding: HashMap<i64, Vec<usize>> = HashMap::new();
    let mut first_named: HashMap<&str, usize> = HashMap::new();
    for (p, s) in steps.iter().enumerate() {
        holding.entry(s.execution_id).or_default().push(p);
        if let Some(r) = s.reused_execution.filter(|&r| r != s.execution_id) {
            holding.entry(r).or_default().push(p);
        }
        first_named.entry(s.name.as_str()).or_insert(p);
    }
    // The first output of each step holding each content (a split has one per item).
    let mut output_at: HashMap<(usize, Hash128), usize> = HashMap::new();
    for (p, s) in steps.iter().enumerate() {
        for (k, o) in s.outputs.iter().enumerate() {
            output_at.entry((p, o.content_hash)).or_insert(k);
        }
    }
    for (to, s) in steps.iter().enumerate() {
        for input in &s.components.inputs {
            let InputComponent::Artifact {
                name,
                content_hash,
                producer,
            } = input
            else {
                continue;
            };
            let record = s.inputs.iter().find(|i| &i.name == name);
            let named = |p: &StepRecord| &p.name == producer;
            let by_name = first_named.get(producer.as_str()).copied();
            let from = match record.and_then(|r| r.producer_execution) {
                Some(id) => {
                    let candidates: Vec<usize> = holding
                        .get(&id)
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&p| p != to)
                        .collect();
                    match candidates.as_slice() {
                        [] => by_name,
                        [one] => Some(*one),
                        many => many
                            .iter()
                            .copied()
                            .find(|&p| named(&steps[p]))
                            .or(many.first().copied()),
                    }
                }
                None => by_name,
            };
            let Some(from) = from.filter(|&f| f != to) else {
                continue;
            };
            let hash = record
                .and_then(|r| r.content_hash)
                .or_else(|| content_hash.parse::<Hash128>().ok());
            // The output with that content; for a per-item call `x[i]` reading a split
            // whose list holds equal items, item i itself, not the first equal one.
            let own_item = item_call(&s.name).and_then(|(_, i)| {
                let k = usize::try_from(i).ok()?;
                let o = steps[from].outputs.get(k)?;
                (o.name == format!("item[{i}]") && Some(o.content_hash) == hash).then_some(k)
            });
            let output_index =
                own_item.or_else(|| hash.and_then(|h| output_at.get(&(from, h)).copied()));
            let output = output_index.map(|o| &steps[from].outputs[o]);
            edges.push(GraphEdge {
                from: steps[from].name.clone(),
                to: s.name.clone(),
                output: output.map(|o| o.name.clone()),
                input: name.clone(),
                content_hash: hash,
                size: output.map(|o| o.size),
                producer: from,
                consumer: to,
                output_index,
            });
        }
    }
    edges
}

/// Topological depth of each of `n` nodes joined by `edges` (producer, consumer): 0 for a
/// node with no producer, else one more than its deepest producer. A cycle (which a damaged
/// store could hold) stops deepening after `n` rounds instead of looping. The layers of
/// [`RunGraph`], and of the lineage page's drawing.
pub fn depths(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut layer = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for &(producer, consumer) in edges {
            if layer[consumer] < layer[producer] + 1 && layer[producer] < n {
                layer[consumer] = layer[producer] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

/// Stroke and fill colors of a status, shared by the DOT text and the HTML page.
pub fn status_colors(status: StepStatus) -> (&'static str, &'static str) {
    match status {
        StepStatus::Executed => ("#2e7d32", "#e8f5e9"),
        StepStatus::Cached => ("#1565c0", "#e3f2fd"),
        StepStatus::Failed => ("#c62828", "#ffebee"),
        StepStatus::Skipped => ("#757575", "#f3f3f3"),
        // `running`, and statuses newer than this version.
        _ => ("#f9a825", "#fffde7"),
    }
}

/// Graphviz DOT text: one node per step (name, status, duration, output sizes), one
/// labelled edge per artifact.
impl fmt::Display for RunGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.run.0;
        writeln!(f, "digraph {} {{", dot_str(&run.name))?;
        writeln!(f, "  rankdir=LR;")?;
        writeln!(
            f,
            "  label={}; labelloc=t;",
            dot_str(&format!(
                "run {} of pipeline {} ({})",
                run.name,
                run.pipeline,
                run_status(run)
            ))
        )?;
        writeln!(
            f,
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];"
        )?;
        writeln!(f, "  edge [fontname=\"Helvetica\", fontsize=9];")?;
        for (i, node) in self.nodes.iter().enumerate() {
            let s = &node.step.0;
            let (stroke, fill) = status_colors(s.status);
            let mut label = format!("{}\n{} · {}", s.name, s.status, duration(s.duration));
            for o in &s.outputs {
                let _ = write!(label, "\n{}: {}", o.name, size(o.size));
            }
            writeln!(
                f,
                "  n{i} [label={}, color=\"{stroke}\", fillcolor=\"{fill}\", tooltip={}];",
                dot_str(&label),
                dot_str(s.reason.as_deref().unwrap_or(""))
            )?;
        }
        for e in &self.edges {
            let mut label = self.edge_label(e);
            if let Some(bytes) = e.size {
                let _ = write!(label, "\n{}", size(bytes));
            }
            writeln!(
                f,
                "  n{} -> n{} [label={}];",
                e.producer,
                e.consumer,
                dot_str(&label)
            )?;
        }
        f.write_str("}\n")
    }
}

/// A quoted DOT string.
fn dot_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::key::{KeyComponents, OutputDecl};
    use crate::store::{ArtifactRecord, InputRecord, RunStatus};

    fn run() -> RunRecord {
        RunRecord {
            id: "0123456789abcdef".into(),
            pipeline: "p".into(),
            name: "p-run".into(),
            status: RunStatus::Completed,
            started_at_us: 1_795_435_554_573_248,
            duration: Some(Duration::from_millis(1500)),
            executed: 0,
            cached: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// The hash a test names by a short label.
    fn h(label: &str) -> Hash128 {
        Hash128::of(label.as_bytes())
    }

    /// An input of a step: argument `name`, consuming `hash`, produced (the key components
    /// say) by `producer`, by execution `execution` (the input record says).
    struct In(&'static str, &'static str, &'static str, Option<i64>);

    /// Step `name` recorded as execution `id` (reusing `reused` when cached), with one
    /// output holding `out_hash`, and `inputs`.
    fn step(name: &str, id: i64, reused: Option<i64>, out_hash: &str, inputs: &[In]) -> StepRecord {
        StepRecord {
            execution_id: id,
            name: name.into(),
            step: name
                .trim_end_matches(|c: char| c == '_' || c.is_ascii_digit())
                .into(),
            status: if reused.is_some() {
                StepStatus::Cached
            } else {
                StepStatus::Executed
            },
            cache_key: Some(Hash128::of(&id.to_le_bytes())),
            code_signature: "00".into(),
            started_at_us: 0,
            duration: Duration::from_millis(3),
            reason: None,
            error: None,
            reused_execution: reused,
            attempts: Vec::new(),
            metadata: Default::default(),
            metrics: Default::default(),
            components: KeyComponents {
                format: 3,
                step: name.into(),
                module: "m".into(),
                code_signature: "00".into(),
                code_parts: Vec::new(),
                outputs: vec![OutputDecl {
                    name: "output".into(),
                    type_name: "u32".into(),
                    shape: String::new(),
                    cacher: "bincode".into(),
                    cacher_version: 1,
                }],
                inputs: inputs
                    .iter()
                    .map(|In(arg, hash, producer, _)| InputComponent::Artifact {
                        name: (*arg).into(),
                        content_hash: h(hash).to_hex(),
                        producer: (*producer).into(),
                    })
                    .collect(),
            },
            parameters: serde_json::Map::new(),
            inputs: inputs
                .iter()
                .map(|In(arg, hash, _, execution)| InputRecord {
                    name: (*arg).into(),
                    content_hash: Some(h(hash)),
                    producer_execution: *execution,
                    value_blob: None,
                })
                .collect(),
            outputs: vec![ArtifactRecord {
                name: "output".into(),
                content_hash: h(out_hash),
                size: 4,
                type_name: "u32".into(),
                cacher: "bincode".into(),
                cacher_version: 1,
                metadata: None,
            }],
        }
    }

    /// (producer, consumer, input) of each edge.
    fn edge_list(g: &RunGraph) -> Vec<(String, String, String)> {
        g.edges
            .iter()
            .map(|e| (e.from.clone(), e.to.clone(), e.input.clone()))
            .collect()
    }

    fn e(from: &str, to: &str, input: &str) -> (String, String, String) {
        (from.into(), to.into(), input.into())
    }

    #[test]
    fn edges_follow_the_recorded_producer_execution() {
        // `c`'s key components name `b` as the producer of `x`, but the input record says
        // execution 1 (`a`) produced it: the recorded edge wins.
        let g = RunGraph::from_records(
            run(),
            vec![
                step("a", 1, None, "aa", &[]),
                step("b", 2, None, "bb", &[]),
                step("c", 3, None, "cc", &[In("x", "aa", "b", Some(1))]),
            ],
        );
        assert_eq!(edge_list(&g), vec![e("a", "c", "x")]);
        assert_eq!(g.edges[0].output.as_deref(), Some("output"));
        assert_eq!(g.edges[0].size, Some(4));
        assert_eq!(
            g.nodes.iter().map(|n| n.layer).collect::<Vec<_>>(),
            [0, 0, 1]
        );
    }

    #[test]
    fn equal_items_of_a_split_each_feed_their_own_per_item_call() {
        // A list of two equal items: the split's outputs `item[0]` and `item[1]` have one
        // hash, and `double[1]` read `item[1]`, not the first output with that hash.
        let mut split = step("pipeline.split", 1, None, "aa", &[]);
        let item = split.outputs[0].clone();
        split.outputs = vec![
            ArtifactRecord {
                name: "item[0]".into(),
                ..item.clone()
            },
            ArtifactRecord {
                name: "item[1]".into(),
                ..item
            },
        ];
        let g = RunGraph::from_records(
            run(),
            vec![
                split,
                step(
                    "double[0]",
                    2,
                    None,
                    "bb",
                    &[In("x", "aa", "pipeline.split", Some(1))],
                ),
                step(
                    "double[1]",
                    3,
                    None,
                    "bb",
                    &[In("x", "aa", "pipeline.split", Some(1))],
                ),
            ],
        );
        let read: Vec<(&str, Option<&str>)> = g
            .edges
            .iter()
            .map(|e| (e.to.as_str(), e.output.as_deref()))
            .collect();
        assert_eq!(
            read,
            [
                ("double[0]", Some("item[0]")),
                ("double[1]", Some("item[1]"))
            ]
        );
    }

    #[test]
    fn an_edge_from_a_split_names_its_item_even_when_the_list_has_one() {
        let mut split = step("pipeline.split", 1, None, "aa", &[]);
        split.outputs[0].name = "item[0]".into();
        let g = RunGraph::from_records(
            run(),
            vec![
                split,
                step(
                    "double[0]",
                    2,
                    None,
                    "bb",
                    &[In("x", "aa", "pipeline.split", Some(1))],
                ),
            ],
        );
        assert_eq!(g.edge_label(&g.edges[0]), "item[0] → x");
    }

    #[test]
    fn a_cached_producer_is_found_by_the_execution_it_reused() {
        let g = RunGraph::from_records(
            run(),
            vec![
                step("load", 10, Some(4), "aa", &[]),
                step("fit", 11, None, "bb", &[In("data", "aa", "load", Some(4))]),
                step(
                    "score",
                    12,
                    None,
                    "cc",
                    &[In("model", "bb", "fit", Some(11))],
                ),
            ],
        );
        assert_eq!(
            edge_list(&g),
            vec![e("load", "fit", "data"), e("fit", "score", "model")]
        );
        assert_eq!(
            g.nodes.iter().map(|n| n.layer).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn two_calls_reusing_one_execution_are_told_apart_by_the_recorded_producer() {
        // `source` executed as 1 and `source_2` reused it: both hold execution 1.
        let g = RunGraph::from_records(
            run(),
            vec![
                step("source", 1, None, "aa", &[]),
                step("source_2", 2, Some(1), "aa", &[]),
                step("use", 3, None, "cc", &[In("xs", "aa", "source_2", Some(1))]),
            ],
        );
        assert_eq!(edge_list(&g), vec![e("source_2", "use", "xs")]);
    }

    #[test]
    fn content_hashes_never_make_an_edge() {
        // `other` wrote the same bytes as `a`, and `b`'s recorded producer is `a`.
        let g = RunGraph::from_records(
            run(),
            vec![
                step("other", 1, None, "aa", &[]),
                step("a", 2, None, "aa", &[]),
                step("b", 3, None, "bb", &[In("x", "aa", "a", Some(2))]),
            ],
        );
        assert_eq!(edge_list(&g), vec![e("a", "b", "x")]);
        // A producer recorded outside the run and named by no step of it: no edge, though
        // a step of the run holds the same content.
        let g = RunGraph::from_records(
            run(),
            vec![
                step("a", 2, None, "aa", &[]),
                step("b", 3, None, "bb", &[In("x", "aa", "gone", Some(99))]),
            ],
        );
        assert_eq!(edge_list(&g), vec![]);
    }

    #[test]
    fn a_producer_outside_the_run_falls_back_to_the_recorded_producer_name() {
        // As a cached consumer may report the inputs of the execution it reused.
        let g = RunGraph::from_records(
            run(),
            vec![
                step("a", 5, None, "aa", &[]),
                step("b", 6, Some(3), "bb", &[In("x", "aa", "a", Some(1))]),
            ],
        );
        assert_eq!(edge_list(&g), vec![e("a", "b", "x")]);
    }

    #[test]
    fn a_cycle_in_damaged_records_ends() {
        let g = RunGraph::from_records(
            run(),
            vec![
                step("a", 1, None, "aa", &[In("x", "bb", "b", Some(2))]),
                step("b", 2, None, "bb", &[In("y", "aa", "a", Some(1))]),
            ],
        );
        assert_eq!(g.edges.len(), 2);
        assert!(g.nodes.iter().all(|n| n.layer <= 2));
    }

    #[test]
    fn json_and_dot() {
        let g = RunGraph::from_records(
            run(),
            vec![
                step("a", 1, None, "aa", &[]),
                step("b", 2, None, "bb", &[In("x", "aa", "a", Some(1))]),
            ],
        );
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["run"]["started"], "2026-11-23T12:05:54Z");
        assert_eq!(v["run"]["duration_s"], 1.5);
        assert!(v["run"].get("duration").is_none());
        assert_eq!(v["nodes"][1]["name"], "b");
        assert_eq!(v["nodes"][1]["layer"], 1);
        assert_eq!(v["nodes"][1]["duration_s"], 0.003);
        assert!(v["nodes"][1].get("duration").is_none());
        assert_eq!(
            v["edges"][0],
            serde_json::json!({
                "from": "a", "to": "b", "output": "output", "input": "x",
                "content_hash": h("aa").to_hex(), "size": 4,
            })
        );
        let dot = g.to_string();
        assert!(dot.starts_with("digraph \"p-run\" {\n"), "{dot}");
        assert!(dot.contains("  n0 -> n1 [label=\"x\\n4 B\"];\n"), "{dot}");
        assert!(dot.ends_with("}\n"), "{dot}");
    }
}
