//! The page of `pipeline lineage --html`: a run's DAG ([`RunGraph`], from core), laid out
//! in layers by topological depth and drawn as a self-contained HTML page with inline SVG.
//! A view only: what the graph holds is decided in `pipeline::report`.
//!
//! The per-item calls of a map (`train_fold[0]`, `train_fold[1]`, ..., see
//! [`item_call`]) are drawn as one stacked node per template (`train_fold ×5`, with their
//! counts by status), their edges folded the same way, and a split's item outputs as one
//! line: a map over 10,000 items draws as many nodes as it has templates. The dashboard
//! expands a group on request ([`dag_svg`]'s `expanded`).

use std::collections::HashMap;
use std::fmt::Write as _;

use pipeline::report::text::{duration, short_hash, size, timestamp};
use pipeline::report::{
    depths, item_call, item_call_root, list_calls, status_counts, Listed, RunGraph, GROUP_LIMIT,
};
use pipeline::{RunRecord, StepRecord, StepStatus};
use serde_json::{json, Value};

/// Node box width and the gaps between layers and between nodes of one layer.
const NODE_W: f64 = 230.0;
const LAYER_GAP: f64 = 110.0;
const ROW_GAP: f64 = 36.0;
const MARGIN: f64 = 24.0;
const HEADER_H: f64 = 46.0;
const LINE_H: f64 = 17.0;
/// Spacing of the lanes below the nodes that carry edges skipping a layer.
const LANE_H: f64 = 20.0;
/// How far each card behind a stacked node is offset.
const STACK_OFFSET: f64 = 4.0;

/// The addresses the dashboard's drawing links to.
pub struct Links<'a> {
    /// A step's page.
    pub step: &'a dyn Fn(&StepRecord) -> String,
    /// The same page with group `base` expanded.
    pub expand: &'a dyn Fn(&str) -> String,
    /// The same page with group `base` collapsed again.
    pub collapse: &'a dyn Fn(&str) -> String,
}

/// What a drawn node is.
enum Kind<'g> {
    /// One call: its index in the graph's nodes. `folded`: its outputs are a split's items,
    /// drawn as one line.
    Step { index: usize, folded: bool },
    /// The per-item calls of one template (`base`), drawn as one stacked node.
    Stack {
        base: String,
        members: Vec<&'g StepRecord>,
    },
}

/// A drawn node: what it is, its lines below the header (left and right text, and a CSS
/// class), its layer.
struct Drawn<'g> {
    kind: Kind<'g>,
    lines: Vec<(String, String, &'static str)>,
    layer: usize,
}

/// A drawn edge: one artifact, or the edges of a group folded into one (`count` > 1).
struct DrawnEdge {
    producer: usize,
    consumer: usize,
    /// Line of the producer it leaves from.
    output_index: Option<usize>,
    label: String,
    count: usize,
}

/// The layout of a [`RunGraph`] on the page.
struct Layout<'g> {
    run: &'g RunRecord,
    graph: &'g RunGraph,
    nodes: Vec<Drawn<'g>>,
    edges: Vec<DrawnEdge>,
    /// Position of each node: x, y (top left) and height.
    boxes: Vec<(f64, f64, f64)>,
    /// Drawing of each edge: SVG path and label position.
    paths: Vec<EdgePath>,
    width: f64,
    height: f64,
}

/// Where an edge is drawn.
struct EdgePath {
    d: String,
    label_x: f64,
    label_y: f64,
}

/// The self-contained page of `graph`: header, legend, the SVG drawing (each map's
/// per-item calls stacked; clicking a stack lists its calls), and a table of the steps.
pub fn page(graph: &RunGraph) -> String {
    Layout::new(graph, &|_| false).html()
}

/// The SVG drawing of `graph` alone, for `pipeline ui`: the same layout as the lineage
/// page, with each node a link to its step's page and each stacked node a link that
/// expands it (the groups for which `expanded` is true are drawn call by call, in a frame
/// that links back), and sized by `width`/`height` attributes instead of an inline style
/// (the UI's pages allow no inline styles).
pub fn dag_svg(graph: &RunGraph, expanded: &dyn Fn(&str) -> bool, links: &Links<'_>) -> String {
    let mut out = String::new();
    Layout::new(graph, expanded).svg(&mut out, Some(links));
    out
}

impl<'g> Layout<'g> {
    fn new(graph: &'g RunGraph, expanded: &dyn Fn(&str) -> bool) -> Layout<'g> {
        let steps: Vec<&StepRecord> = graph.nodes.iter().map(|n| &n.step.0).collect();
        // Drawn nodes in pipeline order, a stack where its first call is.
        let mut nodes: Vec<Drawn> = Vec::new();
        let mut drawn_as = vec![0usize; steps.len()];
        let mut stacks: HashMap<&str, usize> = HashMap::new();
        // Per-item calls in item order (`train_at[0][0]`, `train_at[0][1]`, ...), as
        // `pipeline show` lists them: the run records them in the order they ended.
        let order = list_calls(steps.iter().map(|s| s.name.as_str()), |_| true)
            .into_iter()
            .filter_map(|listed| match listed {
                Listed::Step(i) => Some(i),
                Listed::More { .. } => None,
            });
        for i in order {
            let s = steps[i];
            // A nested map's calls (`train_at[2][0]`) join their root's stack.
            match item_call_root(&s.name).filter(|base| !expanded(base)) {
                Some(base) => {
                    let at = *stacks.entry(base).or_insert_with(|| {
                        nodes.push(Drawn {
                            kind: Kind::Stack {
                                base: base.to_string(),
                                members: Vec::new(),
                            },
                            lines: Vec::new(),
                            layer: 0,
                        });
                        nodes.len() - 1
                    });
                    if let Kind::Stack { members, .. } = &mut nodes[at].kind {
                        members.push(s);
                    }
                    drawn_as[i] = at;
                }
                None => {
                    nodes.push(Drawn {
                        kind: Kind::Step {
                            index: i,
                            folded: false,
                        },
                        lines: Vec::new(),
                        layer: 0,
                    });
                    drawn_as[i] = nodes.len() - 1;
                }
            }
        }
        // A split's items are one line, unless calls of an expanded group consume them
        // (each of their edges leaves from its item's line).
        for node in &mut nodes {
            if let Kind::Step { index, folded } = &mut node.kind {
                let outputs = &steps[*index].outputs;
                let items =
                    !outputs.is_empty() && outputs.iter().all(|o| item_call(&o.name).is_some());
                let feeds_expanded = graph.edges.iter().any(|e| {
                    e.producer == *index
                        && item_call_root(&steps[e.consumer].name).is_some_and(expanded)
                });
                *folded = items && !feeds_expanded;
            }
        }
        for node in &mut nodes {
            node.lines = lines(&node.kind, &steps);
        }
        // Edges between drawn nodes; those of a group fold into one, counted.
        let mut edges: Vec<DrawnEdge> = Vec::new();
        let mut folded_edges: HashMap<(usize, usize, Option<usize>, String), usize> =
            HashMap::new();
        for e in &graph.edges {
            let (p, c) = (drawn_as[e.producer], drawn_as[e.consumer]);
            if p == c {
                continue;
            }
            let exact = e.output_index;
            let (line, label) = match &nodes[p].kind {
                // A split's items into a stack, beside an expanded group: from the first.
                Kind::Step { folded: false, .. }
                    if matches!(nodes[c].kind, Kind::Stack { .. })
                        && exact.is_some_and(|k| {
                            item_call(&steps[e.producer].outputs[k].name).is_some()
                        }) =>
                {
                    (Some(0), e.input.clone())
                }
                Kind::Step { folded: false, .. } => (exact, graph.edge_label(e)),
                Kind::Step { folded: true, .. } => (Some(0), e.input.clone()),
                Kind::Stack { members, .. } => {
                    let name = exact.map(|k| steps[e.producer].outputs[k].name.as_str());
                    // From the template's output line; a call that failed has none, and its
                    // edge joins the others (from the first line).
                    let line = name
                        .and_then(|n| template(members).outputs.iter().position(|o| o.name == n))
                        .or(Some(0));
                    (line, e.input.clone())
                }
            };
            let grouped = matches!(nodes[p].kind, Kind::Stack { .. })
                || matches!(nodes[c].kind, Kind::Stack { .. })
                || matches!(nodes[p].kind, Kind::Step { folded: true, .. });
            // `item[3]` (a gather's input) reads as `item[i]` once folded.
            let label = match item_call(&label).filter(|_| grouped) {
                Some((b, _)) => format!("{b}[i]"),
                None => label,
            };
            if grouped {
                let key = (p, c, line, label.clone());
                if let Some(&k) = folded_edges.get(&key) {
                    edges[k].count += 1;
                    continue;
                }
                folded_edges.insert(key, edges.len());
            }
            edges.push(DrawnEdge {
                producer: p,
                consumer: c,
                output_index: line,
                label,
                count: 1,
            });
        }
        for e in &mut edges {
            if e.count > 1 {
                let _ = write!(e.label, " ×{}", e.count);
            }
        }
        let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.producer, e.consumer)).collect();
        let layer = depths(nodes.len(), &pairs);
        for (node, l) in nodes.iter_mut().zip(&layer) {
            node.layer = *l;
        }
        let n = nodes.len();
        let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
        // Order within a layer: by the mean row of the producers (barycenter), then position.
        let mut consumed: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &edges {
            consumed[e.consumer].push(e.producer);
        }
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
        let mut row_of = vec![0.0f64; n];
        for (l, row) in rows.iter_mut().enumerate() {
            let mut members: Vec<(f64, usize)> = (0..n)
                .filter(|&i| layer[i] == l)
                .map(|i| {
                    let ups = &consumed[i];
                    let key = if ups.is_empty() {
                        i as f64
                    } else {
                        ups.iter().map(|&p| row_of[p]).sum::<f64>() / ups.len() as f64
                    };
                    (key, i)
                })
                .collect();
            members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (r, &(_, i)) in members.iter().enumerate() {
                row_of[i] = r as f64;
            }
            *row = members.into_iter().map(|(_, i)| i).collect();
        }
        let heights: Vec<f64> = nodes.iter().map(node_height).collect();
        let column_h = |row: &Vec<usize>| {
            row.iter().map(|&i| heights[i]).sum::<f64>()
                + ROW_GAP * row.len().saturating_sub(1) as f64
        };
        let tallest = rows.iter().map(column_h).fold(0.0, f64::max);
        let mut boxes = vec![(0.0, 0.0, 0.0); n];
        for (l, row) in rows.iter().enumerate() {
            let x = MARGIN + l as f64 * (NODE_W + LAYER_GAP);
            let mut y = MARGIN + (tallest - column_h(row)) / 2.0;
            for &i in row {
                boxes[i] = (x, y, heights[i]);
                y += heights[i] + ROW_GAP;
            }
        }
        let width =
            MARGIN * 2.0 + layers as f64 * NODE_W + layers.saturating_sub(1) as f64 * LAYER_GAP;
        let (paths, lanes) = route(&edges, &layer, &boxes, MARGIN + tallest);
        let height = MARGIN * 2.0 + tallest + lanes as f64 * LANE_H;
        Layout {
            run: &graph.run.0,
            graph,
            nodes,
            edges,
            boxes,
            paths,
            width: width.max(200.0),
            height: height.max(80.0),
        }
    }

    /// The step records of the run, in pipeline order.
    fn steps(&self) -> impl Iterator<Item = &'g StepRecord> {
        self.graph.nodes.iter().map(|n| &n.step.0)
    }

    /// The name a drawn node is known by: its call's, or its group's.
    fn name(&self, i: usize) -> &str {
        match &self.nodes[i].kind {
            Kind::Step { index, .. } => &self.graph.step(*index).name,
            Kind::Stack { base, .. } => base,
        }
    }

    fn html(&self) -> String {
        let run = self.run;
        let title = format!("Lineage of run {}", run.name);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{name}</h1>
<p class="meta">pipeline <b>{pipeline}</b> · <span class="run-status {status}">{status}</span> · started {started} UTC · took {took} · {executed} executed, {cached} cached, {failed} failed, {skipped} skipped · id <code>{id}</code></p>
<p class="legend"><span class="key executed">executed</span><span class="key cached">cached</span><span class="key failed">failed</span><span class="key skipped">skipped</span></p>
</header>
"#,
            title = esc(&title),
            name = esc(&run.name),
            pipeline = esc(&run.pipeline),
            status = run_status(run),
            started = timestamp(run.started_at_us),
            took = run.duration.map(duration).unwrap_or_else(|| "-".into()),
            executed = run.executed,
            cached = run.cached,
            failed = run.failed,
            skipped = run.skipped,
            id = esc(&run.id),
        );
        out.push_str("<main>\n<div class=\"canvas\">\n");
        self.svg(&mut out, None);
        out.push_str("</div>\n<section id=\"details\" class=\"details\" hidden></section>\n");
        self.table(&mut out);
        out.push_str("</main>\n");
        let data: Vec<Value> = self
            .steps()
            .map(|s| {
                json!({
                    "name": s.name,
                    "step": s.step,
                    "status": s.status,
                    "duration": duration(s.duration),
                    "cache_key": s.cache_key,
                    "code_signature": s.code_signature,
                    "reason": s.reason,
                    "error": s.error,
                    "execution_id": s.execution_id,
                    "reused_execution": s.reused_execution,
                    "parameters": s.parameters,
                    "metrics": s.metrics,
                    "metadata": s.metadata,
                    "attempts": s.attempts,
                    "outputs": s.outputs.iter().map(|o| json!({
                        "name": o.name,
                        "size": size(o.size),
                        "type": o.type_name,
                        "cacher": o.cacher,
                        "content_hash": o.content_hash,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        // `<` escaped so that no string in the data can close the script element.
        let data = serde_json::to_string(&data)
            .unwrap_or_else(|_| "[]".into())
            .replace('<', "\\u003c");
        let _ = write!(
            out,
            "<script id=\"steps-data\" type=\"application/json\">{data}</script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
        );
        out
    }

    /// The SVG drawing; with `links`, each node is a link to its step's page and each
    /// stacked node one that expands it.
    fn svg(&self, out: &mut String, links: Option<&Links<'_>>) {
        let dimensions = if links.is_some() {
            format!(r#"width="{}" height="{}""#, self.width, self.height)
        } else {
            format!(r#"style="max-width: {}px""#, self.width)
        };
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="dag" viewBox="0 0 {w} {h}" {dimensions} role="img" aria-label="{label}">"#,
            w = self.width,
            h = self.height,
            label = esc(&format!("DAG of run {}", self.run.name)),
        );
        out.push_str(
            r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a94a6"/></marker></defs>
"##,
        );
        // Fan-out frames behind everything, then edges, so nodes paint over their ends.
        self.fanout_groups(out, links);
        out.push_str("<g class=\"edges\">\n");
        for (k, e) in self.edges.iter().enumerate() {
            let p = &self.paths[k];
            let calls = if e.count > 1 {
                format!(r#" data-calls="{}""#, e.count)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                r#"<g class="edge" data-from="{from}" data-to="{to}"{calls}><path d="{d}" marker-end="url(#arrow)"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="middle">{label}</text></g>"#,
                d = p.d,
                lx = p.label_x,
                ly = p.label_y,
                from = esc(self.name(e.producer)),
                to = esc(self.name(e.consumer)),
                label = esc(&e.label),
            );
        }
        out.push_str("</g>\n<g class=\"nodes\">\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let (x, y, h) = self.boxes[i];
            let href = match (&node.kind, links) {
                (Kind::Step { index, .. }, Some(l)) => Some((l.step)(self.graph.step(*index))),
                (Kind::Stack { base, .. }, Some(l)) => Some((l.expand)(base)),
                (_, None) => None,
            };
            if let Some(href) = &href {
                let _ = writeln!(out, r#"<a href="{}">"#, esc(href));
            }
            let status_line = match &node.kind {
                Kind::Step { index, .. } => {
                    let s = self.graph.step(*index);
                    let status = s.status.to_string();
                    let _ = writeln!(
                        out,
                        r#"<g class="node {status}" id="node-{index}" data-index="{index}" data-step="{name}" data-status="{status}" tabindex="0">"#,
                        name = esc(&s.name),
                    );
                    let _ = writeln!(
                        out,
                        "<title>{}</title>",
                        esc(&format!(
                            "{}: {}{}",
                            s.name,
                            status,
                            s.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        ))
                    );
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{h:.1}" rx="8"/>"#
                    );
                    let _ = writeln!(
                        out,
                        r#"<text class="name" x="{:.1}" y="{:.1}">{}</text>"#,
                        x + 12.0,
                        y + 20.0,
                        esc(&ellipsis(&s.name, 26))
                    );
                    format!(
                        r#"<tspan class="badge">{status}</tspan> · <tspan class="duration">{}</tspan>"#,
                        duration(s.duration)
                    )
                }
                Kind::Stack { base, members } => {
                    let counts = status_counts(members.iter().copied());
                    let status = stack_status(&counts);
                    let text: Vec<String> =
                        counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
                    let what = if links.is_some() {
                        "click to show each call"
                    } else {
                        "click to list them"
                    };
                    let _ = writeln!(
                        out,
                        r#"<g class="node stack {status}" id="stack-{i}" data-group="{b}" data-status="{status}" data-calls="{n}" data-counts="{c}" tabindex="0">"#,
                        b = esc(base),
                        n = members.len(),
                        c = esc(&text.join(", ")),
                    );
                    let _ = writeln!(
                        out,
                        "<title>{}</title>",
                        esc(&format!(
                            "{base}: {} per-item calls of a map ({}); {what}",
                            members.len(),
                            text.join(", ")
                        ))
                    );
                    // Two cards behind the node: a stack.
                    for k in [2.0, 1.0] {
                        let _ = writeln!(
                            out,
                            r#"<rect class="card" x="{:.1}" y="{:.1}" width="{NODE_W}" height="{h:.1}" rx="8"/>"#,
                            x + k * STACK_OFFSET,
                            y - k * STACK_OFFSET
                        );
                    }
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{h:.1}" rx="8"/>"#
                    );
                    let _ = writeln!(
                        out,
                        r#"<text class="name" x="{:.1}" y="{:.1}">{} <tspan class="calls">×{}</tspan></text>"#,
                        x + 12.0,
                        y + 20.0,
                        esc(&ellipsis(base, 19)),
                        members.len()
                    );
                    if counts_fit(&text) {
                        counts
                            .iter()
                            .map(|(s, n)| {
                                format!(r#"<tspan class="count {s}">{n} {s}</tspan>"#, s = esc(s))
                            })
                            .collect::<Vec<_>>()
                            .join(" · ")
                    } else {
                        format!(r#"<tspan class="badge">{} calls</tspan>"#, members.len())
                    }
                }
            };
            let _ = writeln!(
                out,
                r#"<text class="status" x="{:.1}" y="{:.1}">{status_line}</text>"#,
                x + 12.0,
                y + 37.0,
            );
            for (k, (left, right, class)) in node.lines.iter().enumerate() {
                let ly = y + HEADER_H + LINE_H * (k as f64 + 0.5) + 4.0;
                let _ = writeln!(
                    out,
                    r#"<text class="{class}" x="{:.1}" y="{ly:.1}">{}</text><text class="size" x="{:.1}" y="{ly:.1}" text-anchor="end">{}</text>"#,
                    x + 12.0,
                    esc(&ellipsis(left, if right.is_empty() { 32 } else { 22 })),
                    x + NODE_W - 12.0,
                    esc(right)
                );
            }
            out.push_str("</g>\n");
            if href.is_some() {
                out.push_str("</a>\n");
            }
        }
        out.push_str("</g>\n</svg>\n");
    }

    /// A frame behind each fan-out group: two or more calls of one step side by side in
    /// a layer (`shift`, `shift_2`, .. called in a loop, or a map's calls shown one by
    /// one), labelled `shift ×3`; in the dashboard, an expanded map's frame links back to
    /// the stacked node.
    fn fanout_groups(&self, out: &mut String, links: Option<&Links<'_>>) {
        let step_of = |i: usize| match self.nodes[i].kind {
            Kind::Step { index, .. } => Some(self.graph.step(index)),
            Kind::Stack { .. } => None,
        };
        let mut groups: HashMap<(usize, &str), Vec<usize>> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(s) = step_of(i) {
                groups.entry((node.layer, &s.step)).or_default().push(i);
            }
        }
        out.push_str("<g class=\"fanouts\">\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(s) = step_of(i) else { continue };
            let layer = node.layer;
            // Each group once, at its first node.
            let members = &groups[&(layer, s.step.as_str())];
            if members.len() < 2 || members[0] != i {
                continue;
            }
            let (x, _, _) = self.boxes[i];
            let top = members
                .iter()
                .map(|&j| self.boxes[j].1)
                .fold(f64::MAX, f64::min);
            let bottom = members
                .iter()
                .map(|&j| self.boxes[j].1 + self.boxes[j].2)
                .fold(f64::MIN, f64::max);
            // Only a contiguous group gets a frame: one that would enclose another step's
            // node would say that node is a call too.
            let encloses_other = (0..self.nodes.len()).any(|j| {
                !members.contains(&j)
                    && self.nodes[j].layer == layer
                    && self.boxes[j].1 > top
                    && self.boxes[j].1 < bottom
            });
            if encloses_other {
                continue;
            }
            // The map whose calls these all are, if any: its name is their `base`.
            let bases: Vec<Option<&str>> = members
                .iter()
                .map(|&j| item_call_root(self.name(j)))
                .collect();
            let map = bases[0].filter(|b| bases.iter().all(|o| *o == Some(*b)));
            let pad = 8.0;
            let collapse = match (map, links) {
                (Some(base), Some(l)) => format!(
                    r#"<a href="{}"><text class="collapse" x="{:.1}" y="{:.1}" text-anchor="end">collapse ▴</text></a>"#,
                    esc(&(l.collapse)(base)),
                    x + NODE_W,
                    top - pad - 3.0,
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                r#"<g class="fanout" data-step="{name}" data-calls="{n}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="12"/><text x="{:.1}" y="{:.1}">{name} ×{n}</text>{collapse}</g>"#,
                x - pad,
                top - pad - 14.0,
                NODE_W + 2.0 * pad,
                bottom - top + 2.0 * pad + 14.0,
                x,
                top - pad - 3.0,
                name = esc(map.unwrap_or(&s.step)),
                n = members.len(),
            );
        }
        out.push_str("</g>\n");
    }

    /// The table of the steps: a large group of per-item calls by its first calls and a
    /// summary row, as `pipeline show` lists them.
    fn table(&self, out: &mut String) {
        out.push_str(
            "<table class=\"steps\">\n<thead><tr><th>Step</th><th>Status</th><th>Duration</th><th>Cache key</th><th>Outputs</th><th>Why</th></tr></thead>\n<tbody>\n",
        );
        let steps: Vec<&StepRecord> = self.steps().collect();
        for entry in list_calls(steps.iter().map(|s| s.name.as_str()), |_| false) {
            let i = match entry {
                Listed::Step(i) => i,
                Listed::More { base, steps: more } => {
                    let calls: Vec<&StepRecord> = more.iter().map(|&k| steps[k]).collect();
                    let (range, counts, took) = summary(&calls);
                    let _ = writeln!(
                        out,
                        "<tr class=\"more\" data-group=\"{b}\"><td>{b}{range}</td><td>{n} more: {counts}</td><td>{took}</td><td>-</td><td></td><td>the stacked node <b>{b}</b> lists them</td></tr>",
                        b = esc(&base),
                        n = calls.len(),
                        counts = esc(&counts),
                    );
                    continue;
                }
            };
            let s = steps[i];
            let described: Vec<String> = s
                .outputs
                .iter()
                .map(|o| {
                    format!(
                        "{} ({}, {}, <code>{}</code>)",
                        esc(&o.name),
                        size(o.size),
                        esc(&o.cacher),
                        esc(&short_hash(o.content_hash))
                    )
                })
                .collect();
            let outputs = if described.len() > GROUP_LIMIT {
                format!(
                    "{}<br>... {} more items",
                    described[..3].join("<br>"),
                    described.len() - 3
                )
            } else {
                described.join("<br>")
            };
            let why = match s.status {
                StepStatus::Failed => s.error.clone().unwrap_or_default(),
                _ => s.reason.clone().unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                "<tr id=\"row-{i}\" data-step=\"{name}\" data-status=\"{status}\"><td>{name}</td><td><span class=\"key {status}\">{status}</span></td><td>{dur}</td><td><code>{key}</code></td><td>{outputs}</td><td>{why}</td></tr>",
                name = esc(&s.name),
                status = s.status,
                dur = duration(s.duration),
                key = esc(&s.cache_key.map(short_hash).unwrap_or_else(|| "-".into())),
                why = esc(&why),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
}

/// The summary of calls of one group: the range of their items (`[3..=11]`), their counts
/// by status (`8 cached, 1 failed`), their total duration.
pub fn summary(calls: &[&StepRecord]) -> (String, String, String) {
    let counts: Vec<String> = status_counts(calls.iter().copied())
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let took: std::time::Duration = calls.iter().map(|s| s.duration).sum();
    (
        item_range(calls.iter().map(|s| s.name.as_str())),
        counts.join(", "),
        duration(took),
    )
}

/// `[3..=11]`: the range of the items of per-item call names.
pub fn item_range<'a>(names: impl Iterator<Item = &'a str>) -> String {
    pipeline::report::range_name("", names.filter_map(|n| item_call(n).map(|(_, i)| i)))
}

/// The call of a stack whose outputs are its lines: the first that has outputs (a failed
/// call has none).
fn template<'a>(members: &[&'a StepRecord]) -> &'a StepRecord {
    members
        .iter()
        .find(|m| !m.outputs.is_empty())
        .unwrap_or(&members[0])
}

/// The status a stacked node is drawn with: failed when any call failed, else running,
/// executed, cached, skipped in that order.
fn stack_status(counts: &[(String, usize)]) -> &'static str {
    ["failed", "running", "executed", "cached", "skipped"]
        .into_iter()
        .find(|s| counts.iter().any(|(c, _)| c == s))
        .unwrap_or("skipped")
}

/// Whether a stack's counts (`4 cached`, `1 executed`) fit on its status line.
fn counts_fit(text: &[String]) -> bool {
    text.iter().map(|t| t.chars().count() + 3).sum::<usize>() <= 33
}

/// The lines of a node below its header: left text, right text, CSS class.
fn lines(kind: &Kind<'_>, steps: &[&StepRecord]) -> Vec<(String, String, &'static str)> {
    match kind {
        Kind::Step { index, folded } => {
            let s = steps[*index];
            if *folded {
                let total: u64 = s.outputs.iter().map(|o| o.size).sum();
                return vec![(format!("{} items", s.outputs.len()), size(total), "output")];
            }
            if s.outputs.is_empty() {
                let note = match s.status {
                    StepStatus::Failed => s.error.clone().unwrap_or_else(|| "failed".into()),
                    StepStatus::Skipped => s.reason.clone().unwrap_or_else(|| "skipped".into()),
                    _ => "no outputs".into(),
                };
                return vec![(note, String::new(), "output")];
            }
            s.outputs
                .iter()
                .map(|o| (o.name.clone(), size(o.size), "output"))
                .collect()
        }
        Kind::Stack { members, .. } => {
            let mut out = Vec::new();
            let counts: Vec<String> = status_counts(members.iter().copied())
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            if !counts_fit(&counts) {
                for c in counts {
                    out.push((c, String::new(), "output counts"));
                }
            }
            for o in &template(members).outputs {
                let total: u64 = members
                    .iter()
                    .flat_map(|m| m.outputs.iter().filter(|p| p.name == o.name))
                    .map(|p| p.size)
                    .sum();
                out.push((o.name.clone(), size(total), "output"));
            }
            let failed: Vec<&str> = members
                .iter()
                .filter(|m| m.status == StepStatus::Failed)
                .map(|m| m.name.as_str())
                .collect();
            if !failed.is_empty() {
                let mut text = format!("failed: {}", failed[..failed.len().min(2)].join(", "));
                if failed.len() > 2 {
                    let _ = write!(text, " +{}", failed.len() - 2);
                }
                out.push((text, String::new(), "output failed-calls"));
            }
            if out.is_empty() {
                out.push(("no outputs".into(), String::new(), "output"));
            }
            out
        }
    }
}

fn route(
    edges: &[DrawnEdge],
    layer: &[usize],
    boxes: &[(f64, f64, f64)],
    bottom: f64,
) -> (Vec<EdgePath>, usize) {
    let mut lane = vec![None; edges.len()];
    let mut lanes = 0;
    for (k, e) in edges.iter().enumerate() {
        if layer[e.consumer] > layer[e.producer] + 1 {
            lane[k] = Some(lanes);
            lanes += 1;
        }
    }
    let start = |e: &DrawnEdge| {
        let (fx, fy, _) = boxes[e.producer];
        let row = e.output_index.unwrap_or(0) as f64;
        (fx + NODE_W, fy + HEADER_H + LINE_H * (row + 0.5))
    };
    // Arrival slots on each consumer's side, top to bottom in the order the edges come
    // in: direct edges by height, then lanes from the top one down.
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); boxes.len()];
    for (k, e) in edges.iter().enumerate() {
        into[e.consumer].push(k);
    }
    let mut slot = vec![(0.0f64, 1.0f64); edges.len()];
    for incoming in &mut into {
        let mut keyed: Vec<(f64, usize)> = incoming
            .iter()
            .map(|&j| (lane[j].map_or(start(&edges[j]).1, |l| 1e9 + l as f64), j))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (s, &(_, j)) in keyed.iter().enumerate() {
            slot[j] = (s as f64, keyed.len() as f64);
        }
    }
    let lane_y = |l: usize| bottom + LANE_H * (l as f64 + 0.6);
    let paths = edges
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let (slot, count) = slot[k];
            let (tx, ty, th) = boxes[e.consumer];
            let (x1, y1) = start(e);
            let (x2, y2) = (tx, ty + th * (slot + 1.0) / (count + 1.0));
            match lane[k] {
                None => {
                    let bend = ((x2 - x1) / 2.0).max(40.0);
                    EdgePath {
                        d: format!(
                            "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                            x1 + bend,
                            x2 - bend
                        ),
                        label_x: (x1 + x2) / 2.0,
                        label_y: (y1 + y2) / 2.0 - 4.0,
                    }
                }
                Some(l) => {
                    let ly = lane_y(l);
                    let r = LAYER_GAP * 0.35;
                    EdgePath {
                        d: format!(
                            "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{ly:.1} {:.1},{ly:.1} \
                             L{:.1},{ly:.1} C{:.1},{ly:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                            x1 + r,
                            x1 + r,
                            x1 + 2.0 * r,
                            x2 - 2.0 * r,
                            x2 - r,
                            x2 - r
                        ),
                        label_x: (x1 + x2) / 2.0,
                        label_y: ly - 4.0,
                    }
                }
            }
        })
        .collect();
    (paths, lanes)
}

fn node_height(node: &Drawn<'_>) -> f64 {
    HEADER_H + LINE_H * node.lines.len().max(1) as f64 + 8.0
}

fn run_status(r: &RunRecord) -> String {
    serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Escapes text for HTML and SVG content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --executed: #2e7d32; --cached: #1565c0; --failed: #c62828; --skipped: #757575; --running: #f9a825; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2430; background: #fafbfc; }
header { padding: 14px 24px 6px; border-bottom: 1px solid #e3e6eb; background: #fff; }
h1 { margin: 0 0 4px; font-size: 18px; font-weight: 600; word-break: break-all; }
.meta { margin: 0 0 6px; color: #4a5161; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.legend { margin: 0; }
.key { display: inline-block; padding: 0 8px; margin-right: 8px; border-radius: 9px; font-size: 12px; color: #fff; }
.key.executed, .run-status.completed { background: var(--executed); }
.key.cached { background: var(--cached); }
.key.failed, .run-status.failed { background: var(--failed); }
.key.skipped, .run-status.running { background: var(--skipped); }
.run-status { padding: 0 8px; border-radius: 9px; color: #fff; font-size: 12px; }
main { padding: 12px 24px 24px; }
.canvas { overflow: auto; background: #fff; border: 1px solid #e3e6eb; border-radius: 8px; }
.canvas svg { display: block; width: 100%; height: auto; margin: 0 auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #2b3140; }
svg text.name { font-size: 14px; font-weight: 600; }
svg text.size, svg text.status .duration { fill: #5b6375; }
.edge path { fill: none; stroke: #8a94a6; stroke-width: 1.6; }
.edge text { font-size: 11px; fill: #5b6375; paint-order: stroke; stroke: #fff; stroke-width: 4px; }
.node { cursor: pointer; }
.node rect { stroke-width: 2; }
.node.executed rect { fill: #e8f5e9; stroke: var(--executed); }
.node.cached rect { fill: #e3f2fd; stroke: var(--cached); }
.node.failed rect { fill: #ffebee; stroke: var(--failed); }
.node.skipped rect { fill: #f3f3f3; stroke: var(--skipped); stroke-dasharray: 5 3; }
.node.running rect { fill: #fffde7; stroke: var(--running); }
.node.running .badge { fill: #b26a00; font-weight: 600; }
.key.running { background: var(--running); color: #1f2430; }
.fanout rect { fill: #f5f7fa; stroke: #b8c0cc; stroke-dasharray: 4 3; }
.fanout text { font-size: 11px; fill: #5b6375; }
.node.stack .card { fill: #fff; stroke-width: 1.5; }
.node.stack.executed .card { stroke: var(--executed); }
.node.stack.cached .card { stroke: var(--cached); }
.node.stack.failed .card { stroke: var(--failed); }
.node.stack.skipped .card { stroke: var(--skipped); stroke-dasharray: 5 3; }
.node.stack .calls { fill: #5b6375; font-weight: 400; }
.node .count { font-weight: 600; }
.node .count.executed { fill: var(--executed); }
.node .count.cached { fill: var(--cached); }
.node .count.failed, .node .failed-calls { fill: var(--failed); }
.node .count.skipped { fill: var(--skipped); }
table.steps tr.more td { background: #f5f7fa; color: #5b6375; }
.node.executed .badge { fill: var(--executed); font-weight: 600; }
.node.cached .badge { fill: var(--cached); font-weight: 600; }
.node.failed .badge { fill: var(--failed); font-weight: 600; }
.node.skipped .badge { fill: var(--skipped); font-weight: 600; }
.node.selected rect, .node:focus rect { stroke-width: 3.5; }
.node:focus { outline: none; }
.details { margin-top: 12px; padding: 10px 14px; background: #fff; border: 1px solid #e3e6eb; border-radius: 8px; }
.details h2 { margin: 0 0 6px; font-size: 15px; }
.details dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
.details dt { color: #5b6375; }
.details dd { margin: 0; word-break: break-all; }
table.steps { margin-top: 12px; border-collapse: collapse; width: 100%; background: #fff; }
table.steps th, table.steps td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef2; vertical-align: top; }
table.steps th { font-weight: 600; color: #4a5161; }
table.steps tr.selected { background: #fff8e1; }
"#;

const SCRIPT: &str = r#"
(function () {
  var steps = JSON.parse(document.getElementById('steps-data').textContent);
  var panel = document.getElementById('details');
  function add(dl, term, value) {
    if (value === null || value === undefined || value === '') return;
    var dt = document.createElement('dt'); dt.textContent = term; dl.appendChild(dt);
    var dd = document.createElement('dd'); dd.textContent = value; dl.appendChild(dd);
  }
  function select(i) {
    var s = steps[i];
    document.querySelectorAll('.selected').forEach(function (e) { e.classList.remove('selected'); });
    document.getElementById('node-' + i).classList.add('selected');
    document.getElementById('row-' + i).classList.add('selected');
    panel.textContent = '';
    var h = document.createElement('h2'); h.textContent = s.name + ' (' + s.status + ', ' + s.duration + ')';
    panel.appendChild(h);
    var dl = document.createElement('dl');
    add(dl, 'step', s.step);
    add(dl, 'why', s.reason);
    add(dl, 'error', s.error);
    add(dl, 'execution', s.execution_id);
    add(dl, 'reused execution', s.reused_execution);
    add(dl, 'cache key', s.cache_key);
    add(dl, 'code signature', s.code_signature);
    Object.keys(s.parameters).forEach(function (k) { add(dl, 'parameter ' + k, JSON.stringify(s.parameters[k])); });
    Object.keys(s.metrics).forEach(function (k) { add(dl, 'metric ' + k, String(s.metrics[k])); });
    Object.keys(s.metadata).forEach(function (k) { add(dl, 'metadata ' + k, JSON.stringify(s.metadata[k])); });
    s.attempts.forEach(function (a) {
      add(dl, 'attempt ' + a.attempt, (a.error ? 'failed after ' : 'succeeded in ') + a.duration_s.toFixed(3) + 's' + (a.error ? ': ' + a.error : ''));
    });
    s.outputs.forEach(function (o) {
      add(dl, 'output ' + o.name, o.size + ', ' + o.type + ', ' + o.cacher + ', ' + o.content_hash);
    });
    panel.appendChild(dl);
    panel.hidden = false;
  }
  // A stacked node (a map's per-item calls): the panel lists its calls.
  function selectGroup(n) {
    var base = n.getAttribute('data-group');
    document.querySelectorAll('.selected').forEach(function (e) { e.classList.remove('selected'); });
    n.classList.add('selected');
    panel.textContent = '';
    var h = document.createElement('h2');
    h.textContent = base + ' \u00d7' + n.getAttribute('data-calls') + ' (' + n.getAttribute('data-counts') + ')';
    panel.appendChild(h);
    var dl = document.createElement('dl');
    var listed = 0;
    steps.forEach(function (s) {
      var at = s.name.lastIndexOf('[');
      if (at < 0 || s.name.slice(0, at) !== base || !/^\[\d+\]$/.test(s.name.slice(at))) return;
      listed += 1;
      if (listed > 500) return;
      add(dl, s.name, s.status + ', ' + s.duration + (s.error ? ': ' + s.error : ''));
    });
    if (listed > 500) add(dl, '...', (listed - 500) + ' more calls (pipeline --json show lists every call)');
    panel.appendChild(dl);
    panel.hidden = false;
  }
  document.querySelectorAll('.node.stack').forEach(function (n) {
    n.addEventListener('click', function () { selectGroup(n); });
    n.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') selectGroup(n); });
  });
  document.querySelectorAll('.node:not(.stack)').forEach(function (n) {
    var i = Number(n.getAttribute('data-index'));
    n.addEventListener('click', function () { select(i); });
    n.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') select(i); });
  });
  document.documentElement.setAttribute('data-rendered', String(steps.length));
})();
"#;
