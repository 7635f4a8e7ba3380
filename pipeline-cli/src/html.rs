//! The page of `pipeline lineage --html`: a run's DAG ([`RunGraph`], from core), laid out
//! in layers by topological depth and drawn as a self-contained HTML page with inline SVG.
//! A view only: what the graph holds is decided in `pipeline::report`.

use std::fmt::Write as _;

use pipeline::report::text::{duration, short_hash, size, timestamp};
use pipeline::report::{GraphEdge, RunGraph};
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

/// The layout of a [`RunGraph`] on the page.
struct Layout<'g> {
    run: &'g RunRecord,
    steps: Vec<&'g StepRecord>,
    edges: &'g [GraphEdge],
    graph: &'g RunGraph,
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

/// The self-contained page of `graph`: header, legend, the SVG drawing, and a table of the
/// steps.
pub fn page(graph: &RunGraph) -> String {
    Layout::new(graph).html()
}

/// The SVG drawing of `graph` alone, for `pipeline ui`: the same layout as the lineage
/// page, with each node a link to `step_href(step)`, and sized by `width`/`height`
/// attributes instead of an inline style (the UI's pages allow no inline styles).
pub fn dag_svg(graph: &RunGraph, step_href: &dyn Fn(&StepRecord) -> String) -> String {
    let mut out = String::new();
    Layout::new(graph).svg(&mut out, Some(step_href));
    out
}

impl<'g> Layout<'g> {
    fn new(graph: &'g RunGraph) -> Layout<'g> {
        let steps: Vec<&StepRecord> = graph.nodes.iter().map(|n| &n.step.0).collect();
        let edges = &graph.edges[..];
        let layer: Vec<usize> = graph.nodes.iter().map(|n| n.layer).collect();
        let n = steps.len();
        let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
        // Order within a layer: by the mean row of the producers (barycenter), then position.
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
        let mut row_of = vec![0.0f64; n];
        for (l, row) in rows.iter_mut().enumerate() {
            let mut members: Vec<(f64, usize)> = (0..n)
                .filter(|&i| layer[i] == l)
                .map(|i| {
                    let ups: Vec<f64> = edges
                        .iter()
                        .filter(|e| e.consumer == i)
                        .map(|e| row_of[e.producer])
                        .collect();
                    let key = if ups.is_empty() {
                        i as f64
                    } else {
                        ups.iter().sum::<f64>() / ups.len() as f64
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
        let heights: Vec<f64> = steps.iter().map(|s| node_height(s)).collect();
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
        let (paths, lanes) = route(edges, &layer, &boxes, MARGIN + tallest);
        let height = MARGIN * 2.0 + tallest + lanes as f64 * LANE_H;
        Layout {
            run: &graph.run.0,
            steps,
            edges,
            graph,
            boxes,
            paths,
            width: width.max(200.0),
            height: height.max(80.0),
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
            .steps
            .iter()
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

    /// The SVG drawing; with `step_href`, each node is a link to its step's page.
    fn svg(&self, out: &mut String, step_href: Option<&dyn Fn(&StepRecord) -> String>) {
        let dimensions = if step_href.is_some() {
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
        self.fanout_groups(out);
        out.push_str("<g class=\"edges\">\n");
        for (k, e) in self.edges.iter().enumerate() {
            let p = &self.paths[k];
            let _ = writeln!(
                out,
                r#"<g class="edge" data-from="{from}" data-to="{to}"><path d="{d}" marker-end="url(#arrow)"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="middle">{label}</text></g>"#,
                d = p.d,
                lx = p.label_x,
                ly = p.label_y,
                from = esc(&self.steps[e.producer].name),
                to = esc(&self.steps[e.consumer].name),
                label = esc(&self.graph.edge_label(e)),
            );
        }
        out.push_str("</g>\n<g class=\"nodes\">\n");
        for (i, s) in self.steps.iter().enumerate() {
            let (x, y, h) = self.boxes[i];
            let status = s.status.to_string();
            if let Some(href) = step_href {
                let _ = writeln!(out, r#"<a href="{}">"#, esc(&href(s)));
            }
            let _ = writeln!(
                out,
                r#"<g class="node {status}" id="node-{i}" data-index="{i}" data-step="{name}" data-status="{status}" tabindex="0">"#,
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
            let _ = writeln!(
                out,
                r#"<text class="status" x="{:.1}" y="{:.1}"><tspan class="badge">{status}</tspan> · <tspan class="duration">{}</tspan></text>"#,
                x + 12.0,
                y + 37.0,
                duration(s.duration)
            );
            let lines: Vec<(String, String)> = if s.outputs.is_empty() {
                let note = match s.status {
                    StepStatus::Failed => s.error.clone().unwrap_or_else(|| "failed".into()),
                    StepStatus::Skipped => s.reason.clone().unwrap_or_else(|| "skipped".into()),
                    _ => "no outputs".into(),
                };
                vec![(note, String::new())]
            } else {
                s.outputs
                    .iter()
                    .map(|o| (o.name.clone(), size(o.size)))
                    .collect()
            };
            for (k, (left, right)) in lines.iter().enumerate() {
                let ly = y + HEADER_H + LINE_H * (k as f64 + 0.5) + 4.0;
                let _ = writeln!(
                    out,
                    r#"<text class="output" x="{:.1}" y="{ly:.1}">{}</text><text class="size" x="{:.1}" y="{ly:.1}" text-anchor="end">{}</text>"#,
                    x + 12.0,
                    esc(&ellipsis(left, if right.is_empty() { 32 } else { 22 })),
                    x + NODE_W - 12.0,
                    esc(right)
                );
            }
            out.push_str("</g>\n");
            if step_href.is_some() {
                out.push_str("</a>\n");
            }
        }
        out.push_str("</g>\n</svg>\n");
    }

    /// A frame behind each fan-out group: two or more calls of one step side by side in
    /// a layer (`shift`, `shift_2`, .. called in a loop), labelled `shift ×3`.
    fn fanout_groups(&self, out: &mut String) {
        let mut drawn: Vec<(usize, &str)> = Vec::new();
        out.push_str("<g class=\"fanouts\">\n");
        for (i, s) in self.steps.iter().enumerate() {
            let layer = self.graph.nodes[i].layer;
            if drawn.contains(&(layer, s.step.as_str())) {
                continue;
            }
            let members: Vec<usize> = (0..self.steps.len())
                .filter(|&j| self.graph.nodes[j].layer == layer && self.steps[j].step == s.step)
                .collect();
            if members.len() < 2 {
                continue;
            }
            drawn.push((layer, s.step.as_str()));
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
            let encloses_other = (0..self.steps.len()).any(|j| {
                !members.contains(&j)
                    && self.graph.nodes[j].layer == layer
                    && self.boxes[j].1 > top
                    && self.boxes[j].1 < bottom
            });
            if encloses_other {
                continue;
            }
            let pad = 8.0;
            let _ = writeln!(
                out,
                r#"<g class="fanout" data-step="{name}" data-calls="{n}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="12"/><text x="{:.1}" y="{:.1}">{name} ×{n}</text></g>"#,
                x - pad,
                top - pad - 14.0,
                NODE_W + 2.0 * pad,
                bottom - top + 2.0 * pad + 14.0,
                x,
                top - pad - 3.0,
                name = esc(&s.step),
                n = members.len(),
            );
        }
        out.push_str("</g>\n");
    }

    fn table(&self, out: &mut String) {
        out.push_str(
            "<table class=\"steps\">\n<thead><tr><th>Step</th><th>Status</th><th>Duration</th><th>Cache key</th><th>Outputs</th><th>Why</th></tr></thead>\n<tbody>\n",
        );
        for (i, s) in self.steps.iter().enumerate() {
            let outputs: Vec<String> = s
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
                outputs = outputs.join("<br>"),
                why = esc(&why),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
}

/// Draws each edge from the producer's output line to the consumer's left side. An edge
/// between adjacent layers is one curve; an edge that skips layers drops into its own lane
/// below the nodes, runs along it, and rises into the consumer, so that it never crosses a
/// node. Returns the paths and the number of lanes.
fn route(
    edges: &[GraphEdge],
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
    let start = |e: &GraphEdge| {
        let (fx, fy, _) = boxes[e.producer];
        let row = e.output_index.unwrap_or(0) as f64;
        (fx + NODE_W, fy + HEADER_H + LINE_H * (row + 0.5))
    };
    let lane_y = |l: usize| bottom + LANE_H * (l as f64 + 0.6);
    let paths = edges
        .iter()
        .enumerate()
        .map(|(k, e)| {
            // Arrival slots on the consumer's side, top to bottom in the order the edges
            // come in: direct edges by height, then lanes from the top one down.
            let mut incoming: Vec<(usize, f64)> = edges
                .iter()
                .enumerate()
                .filter(|(_, o)| o.consumer == e.consumer)
                .map(|(j, o)| (j, lane[j].map_or(start(o).1, |l| 1e9 + l as f64)))
                .collect();
            incoming.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let slot = incoming.iter().position(|&(j, _)| j == k).unwrap_or(0) as f64;
            let (tx, ty, th) = boxes[e.consumer];
            let (x1, y1) = start(e);
            let (x2, y2) = (tx, ty + th * (slot + 1.0) / (incoming.len() as f64 + 1.0));
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

fn node_height(s: &StepRecord) -> f64 {
    HEADER_H + LINE_H * s.outputs.len().max(1) as f64 + 8.0
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
  document.querySelectorAll('.node').forEach(function (n) {
    var i = Number(n.getAttribute('data-index'));
    n.addEventListener('click', function () { select(i); });
    n.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') select(i); });
  });
  document.documentElement.setAttribute('data-rendered', String(steps.length));
})();
"#;
