//! The pages of `pipeline ui`, as HTML text: each reads the store through its query API
//! and the typed reports (`pipeline::report`) and renders them. Blocking (the store is
//! SQLite): the server calls these on Tokio's blocking pool.
//!
//! Every value from the store is escaped ([`esc`]) or percent-encoded ([`enc`]) where it
//! goes into a page; pages hold no inline script or style (the server's Content Security
//! Policy forbids them), only `/assets/app.css` and `/assets/app.js`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipeline::report::text::{duration, short_hash, size, timestamp};
use pipeline::report::{list_calls, Explanation, Listed, RunDiff, RunGraph};
use pipeline::{
    ArtifactRecord, Error, ExecutionRef, Hash128, InputComponent, RunRecord, RunStatus, StepRecord,
    StepStatus, Store,
};
use serde::Serialize;

use super::chart::{self, Labels};
use super::preview::{self, Preview};
use crate::html;

/// A page that could not be made: its HTTP status, title and message.
#[derive(Debug, Clone)]
pub struct PageError {
    /// HTTP status: 404 for what the store does not hold, 500 when it cannot be read.
    pub status: u16,
    /// The page's heading.
    pub title: String,
    /// What went wrong, in words (the store's error text).
    pub message: String,
}

impl PageError {
    /// A 404 saying `message`.
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError {
            status: 404,
            title: "Not found".into(),
            message: message.into(),
        }
    }
}

/// A store error as a page: unknown runs, steps and artifacts are 404s, anything else
/// (the metadata cannot be read, a damaged row) a 500 that says what failed.
impl From<Error> for PageError {
    fn from(e: Error) -> PageError {
        match e {
            Error::UnknownRun(_) | Error::UnknownStep { .. } | Error::UnknownArtifact(_) => {
                PageError::not_found(e.to_string())
            }
            Error::AmbiguousRun { .. } => PageError {
                status: 404,
                title: "Ambiguous run".into(),
                message: e.to_string(),
            },
            other => PageError {
                status: 500,
                title: "The store cannot be read".into(),
                message: other.to_string(),
            },
        }
    }
}

/// A page's HTML, or why it could not be made.
pub type PageResult = Result<String, PageError>;

/// Escapes text for HTML and SVG content (shared with `pipeline lineage --html`).
pub(crate) use crate::html::esc;

/// Percent-encodes a URL path segment or query value: everything but RFC 3986's
/// unreserved characters.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The address of a run's page.
pub fn run_href(run_id: &str) -> String {
    format!("/runs/{}", enc(run_id))
}

/// The address of a step's page.
pub fn step_href(run_id: &str, step: &str) -> String {
    format!("/runs/{}/steps/{}", enc(run_id), enc(step))
}

/// The address of an artifact's page.
pub fn artifact_href(hash: Hash128) -> String {
    format!("/artifacts/{}", hash.to_hex())
}

/// The groups of per-item calls (`train_fold` for `train_fold[0]`, `train_fold[1]`, ...) a
/// page shows call by call: `?expand=train_fold`, repeatable. The others are stacked in the
/// DAG and summed up in tables past their first calls.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expand(BTreeSet<String>);

impl Expand {
    /// The `expand` values of a query's pairs.
    pub fn from_query(pairs: &[(String, String)]) -> Expand {
        Expand(
            pairs
                .iter()
                .filter(|(k, v)| k == "expand" && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect(),
        )
    }

    /// Whether group `base` is shown call by call: named, or its root is (`train_at`
    /// expands a nested map's groups `train_at[0]`, `train_at[1]`, ...).
    pub fn contains(&self, base: &str) -> bool {
        self.0.contains(base)
            || pipeline::report::item_call_root(base).is_some_and(|root| self.0.contains(root))
    }

    /// The query text (`expand=a&expand=b`) with `base` added (`add`) or removed.
    fn params_with(&self, base: &str, add: bool) -> String {
        let mut set = self.0.clone();
        if add {
            set.insert(base.to_string());
        } else {
            set.remove(base);
        }
        set.iter()
            .map(|b| format!("expand={}", enc(b)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The query text of these groups, `expand=a&expand=b` (empty for none).
    fn params(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("expand={}", enc(b)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `path` with a query of `params` (none when empty): `path?params`, or `path&params` when
/// `path` has a query already.
fn with_query(path: &str, params: &str) -> String {
    match (params.is_empty(), path.contains('?')) {
        (true, _) => path.to_string(),
        (false, true) => format!("{path}&{params}"),
        (false, false) => format!("{path}?{params}"),
    }
}

fn badge(status: &str) -> String {
    format!(r#"<span class="key {s}">{s}</span>"#, s = esc(status))
}

fn link(href: &str, text: &str) -> String {
    format!(r#"<a href="{}">{}</a>"#, esc(href), esc(text))
}

fn hash_link(hash: Hash128) -> String {
    format!(
        r#"<a href="{}"><code>{}</code></a>"#,
        artifact_href(hash),
        short_hash(hash)
    )
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How long a step took; for a running step, how long it has been running.
fn step_duration(s: &StepRecord) -> String {
    if s.status == StepStatus::Running {
        let us = (now_us() - s.started_at_us).max(0) as u64;
        format!("{} so far", duration(Duration::from_micros(us)))
    } else {
        duration(s.duration)
    }
}

/// What the step table says about why: the error of a failed step, else the reason.
fn why(s: &StepRecord) -> String {
    match s.status {
        StepStatus::Failed => s.error.clone().or(s.reason.clone()).unwrap_or_default(),
        _ => s.reason.clone().unwrap_or_default(),
    }
}

/// The page around `body`: header with the way back, the stylesheet and the script.
/// `body_attrs` go on `<body>` (the run page's live-update endpoints).
pub fn layout(title: &str, crumbs: &[(String, String)], body_attrs: &str, body: &str) -> String {
    let mut nav = String::from(r#"<a class="brand" href="/">pipeline ui</a>"#);
    for (href, text) in crumbs {
        let _ = write!(nav, r#"<span class="sep">/</span>{}"#, link(href, text));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · pipeline ui</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body{body_attrs}>
<nav class="top">{nav}</nav>
<main>
{body}</main>
</body>
</html>
"#,
        title = esc(title),
    )
}

/// A page saying what went wrong.
pub fn error_page(e: &PageError) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p class=\"error-text\">{}</p>\n<p><a href=\"/\">All runs</a></p>\n",
        esc(&e.title),
        esc(&e.message)
    );
    layout(
        &e.title,
        &[],
        &format!(r#" data-status="{}""#, e.status),
        &body,
    )
}

// ---------------------------------------------------------------------------------------
// Runs

/// The runs page's filters (`?pipeline=..&status=..`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RunsFilter {
    /// Only the runs of this pipeline (empty: all).
    pub pipeline: Option<String>,
    /// Only the runs with this status (empty: any).
    pub status: Option<String>,
}

/// Runs shown at most on the runs page.
const MAX_RUNS: usize = 500;

/// Every run, newest first, filtered by pipeline and status, with step counts by status
/// and a form to compare two runs.
///
/// # Errors
///
/// the store cannot be read (500).
pub fn runs(store: &Store, filter: &RunsFilter) -> PageResult {
    let pipeline = filter.pipeline.as_deref().filter(|p| !p.is_empty());
    let status = filter.status.as_deref().filter(|s| !s.is_empty());
    let pipelines = store.pipelines()?;
    let all = store.runs(pipeline)?;
    let shown: Vec<&RunRecord> = all
        .iter()
        .filter(|r| status.is_none_or(|s| r.status.to_string() == s))
        .collect();
    let mut body =
        String::from("<h1>Runs</h1>\n<form class=\"filters\" method=\"get\" action=\"/\">\n");
    let _ = write!(
        body,
        "<label>Pipeline <select name=\"pipeline\"><option value=\"\">all</option>"
    );
    for p in &pipelines {
        let selected = if Some(p.as_str()) == pipeline {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, r#"<option{selected}>{}</option>"#, esc(p));
    }
    let _ = write!(
        body,
        "</select></label>\n<label>Status <select name=\"status\"><option value=\"\">any</option>"
    );
    for s in RunStatus::ALL {
        let s = s.to_string();
        let selected = if Some(s.as_str()) == status {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, r#"<option{selected}>{s}</option>"#);
    }
    body.push_str("</select></label>\n<button type=\"submit\">Filter</button>\n</form>\n");
    if shown.is_empty() {
        body.push_str("<p class=\"empty\">No runs match.</p>\n");
    } else {
        if shown.len() > MAX_RUNS {
            let _ = writeln!(
                body,
                "<p class=\"note\">The newest {MAX_RUNS} of {} runs.</p>",
                shown.len()
            );
        }
        body.push_str("<table class=\"runs\" id=\"runs\">\n<thead><tr><th>Run</th><th>Pipeline</th><th>Status</th><th>Started (UTC)</th><th>Duration</th><th>Executed</th><th>Cached</th><th>Failed</th><th>Skipped</th></tr></thead>\n<tbody>\n");
        for r in shown.iter().take(MAX_RUNS) {
            let status = r.status.to_string();
            let _ = writeln!(
                body,
                r#"<tr data-run="{name}" data-status="{status}"><td>{run}</td><td>{pipeline}</td><td>{badge}</td><td>{started}</td><td>{took}</td><td class="n executed">{e}</td><td class="n cached">{c}</td><td class="n failed">{f}</td><td class="n skipped">{s}</td></tr>"#,
                name = esc(&r.name),
                run = link(&run_href(&r.id), &r.name),
                pipeline = link(&format!("/?pipeline={}", enc(&r.pipeline)), &r.pipeline),
                badge = badge(&status),
                started = timestamp(r.started_at_us),
                took = r.duration.map(duration).unwrap_or_else(|| "-".into()),
                e = r.executed,
                c = r.cached,
                f = r.failed,
                s = r.skipped,
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    if all.len() >= 2 {
        body.push_str("<h2>Compare two runs</h2>\n<form class=\"compare\" method=\"get\" action=\"/compare\">\n");
        // B: the newest run; A: the run of its pipeline before it, else the next newest.
        let before = all
            .iter()
            .skip(1)
            .position(|r| r.pipeline == all[0].pipeline)
            .map_or(1, |i| i + 1);
        for (field, label, default) in [("a", "A", before), ("b", "B", 0)] {
            let _ = write!(body, r#"<label>{label} <select name="{field}">"#);
            for (i, r) in all.iter().take(MAX_RUNS).enumerate() {
                let selected = if i == default { " selected" } else { "" };
                let _ = write!(
                    body,
                    r#"<option value="{}"{selected}>{}</option>"#,
                    esc(&r.id),
                    esc(&r.name)
                );
            }
            body.push_str("</select></label>\n");
        }
        body.push_str("<button type=\"submit\">Compare</button>\n</form>\n");
    }
    if !pipelines.is_empty() {
        body.push_str("<h2>Pipelines</h2>\n<ul class=\"pipelines\">\n");
        for p in &pipelines {
            let _ = writeln!(
                body,
                "<li>{} · {}</li>",
                link(&format!("/?pipeline={}", enc(p)), p),
                link(&format!("/pipelines/{}/metrics", enc(p)), "metrics")
            );
        }
        body.push_str("</ul>\n");
    }
    Ok(layout("Runs", &[], "", &body))
}

// ---------------------------------------------------------------------------------------
// Run

/// What the run page's script polls: the run's counts and each step's status, duration and
/// reason, with a version that changes whenever any of it does.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveState {
    /// Changes whenever anything below changes (running steps' growing durations aside).
    pub version: String,
    /// The run.
    pub run: LiveRun,
    /// Its steps so far, in pipeline order.
    pub steps: Vec<LiveStep>,
}

/// The run in a [`LiveState`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveRun {
    /// Run id.
    pub id: String,
    /// Run name.
    pub name: String,
    /// `running`, `completed`, `failed`, `cancelled`.
    pub status: String,
    /// Steps that executed.
    pub executed: usize,
    /// Steps reused from the cache.
    pub cached: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps skipped.
    pub skipped: usize,
    /// Steps running now.
    pub running: usize,
    /// How long it took (`-` while it runs).
    pub duration: String,
}

/// A step in a [`LiveState`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveStep {
    /// Name within the run.
    pub name: String,
    /// Its status.
    pub status: String,
    /// How long it took, or has been running.
    pub duration: String,
    /// Its reason, or for a failed step its error.
    pub why: String,
}

/// The live state of run `run`.
///
/// # Errors
///
/// The store's: an unknown run, unreadable metadata.
pub fn live_state(store: &Store, run: &str) -> Result<LiveState, PageError> {
    let run = store.run(run)?;
    let steps = store.run_steps(&run.id)?;
    Ok(state_of(&run, &steps))
}

fn state_of(run: &RunRecord, steps: &[StepRecord]) -> LiveState {
    let live_steps: Vec<LiveStep> = steps
        .iter()
        .map(|s| LiveStep {
            name: s.name.clone(),
            status: s.status.to_string(),
            // Durations of running steps grow on every read; only finished ones enter the
            // version, so a poll waits for a real change.
            duration: step_duration(s),
            why: why(s),
        })
        .collect();
    let running = steps
        .iter()
        .filter(|s| s.status == StepStatus::Running)
        .count();
    let run_view = LiveRun {
        id: run.id.clone(),
        name: run.name.clone(),
        status: run.status.to_string(),
        executed: run.executed,
        cached: run.cached,
        failed: run.failed,
        skipped: run.skipped,
        running,
        duration: run.duration.map(duration).unwrap_or_else(|| "-".into()),
    };
    let mut fingerprint = format!("{}|{}", run_view.status, run_view.duration);
    for (s, rec) in live_steps.iter().zip(steps) {
        let _ = write!(fingerprint, "|{}:{}:{}", s.name, s.status, s.why);
        if rec.status != StepStatus::Running {
            let _ = write!(fingerprint, ":{}", s.duration);
        }
    }
    LiveState {
        // xxh3: the same tag across server restarts (std's hasher is seeded per process).
        version: format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(fingerprint.as_bytes())
        ),
        run: run_view,
        steps: live_steps,
    }
}

/// The run page: header, the DAG and the step table; while the run is running, the page's
/// script keeps both current. A map's per-item calls are one stacked node and a summary row
/// past their first calls, unless `expand` names their group.
///
/// # Errors
///
/// `run` names no run or several (404); the store cannot be read (500).
pub fn run(store: &Store, run: &str, expand: &Expand) -> PageResult {
    let graph = RunGraph::new(store, run)?;
    let record = graph.run.0.clone();
    let steps: Vec<StepRecord> = graph.nodes.iter().map(|n| n.step.0.clone()).collect();
    let state = state_of(&record, &steps);
    let previous = store
        .runs(Some(&record.pipeline))?
        .into_iter()
        .find(|r| r.started_at_us < record.started_at_us);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Run <span class=\"run-name\">{}</span></h1>",
        esc(&record.name)
    );
    let _ = writeln!(
        body,
        r#"<p class="meta">pipeline {pipeline} · <span id="run-status">{status}</span> · started {started} UTC · took <span id="run-duration">{took}</span> · <span id="run-counts">{counts}</span> · id <code>{id}</code></p>"#,
        pipeline = link(
            &format!("/?pipeline={}", enc(&record.pipeline)),
            &record.pipeline
        ),
        status = badge(&state.run.status),
        started = timestamp(record.started_at_us),
        took = esc(&state.run.duration),
        counts = counts_text(&state.run),
        id = esc(&record.id),
    );
    let mut actions = vec![link(
        &format!("/pipelines/{}/metrics", enc(&record.pipeline)),
        "metrics of this pipeline",
    )];
    if let Some(p) = &previous {
        actions.insert(
            0,
            link(
                &format!("/compare?a={}&b={}", enc(&p.id), enc(&record.id)),
                &format!("compare with the previous run ({})", p.name),
            ),
        );
    }
    let _ = writeln!(body, "<p class=\"actions\">{}</p>", actions.join(" · "));
    body.push_str("<p class=\"legend\"><span class=\"key executed\">executed</span><span class=\"key cached\">cached</span><span class=\"key failed\">failed</span><span class=\"key skipped\">skipped</span><span class=\"key running\">running</span></p>\n");
    let _ = writeln!(
        body,
        "<div id=\"run-live\">\n{}</div>",
        run_live(&graph, &record, expand)
    );
    let attrs = if record.status == RunStatus::Running {
        format!(
            r#" data-live-state="{}/state.json" data-live-fragment="{}" data-live-version="{}""#,
            run_href(&record.id),
            esc(&with_query(
                &format!("{}/live", run_href(&record.id)),
                &expand.params()
            )),
            state.version
        )
    } else {
        String::new()
    };
    Ok(layout(
        &format!("Run {}", record.name),
        &[(run_href(&record.id), record.name.clone())],
        &attrs,
        &body,
    ))
}

fn counts_text(r: &LiveRun) -> String {
    let mut s = format!(
        "{} executed, {} cached, {} failed, {} skipped",
        r.executed, r.cached, r.failed, r.skipped
    );
    if r.running > 0 {
        let _ = write!(s, ", {} running", r.running);
    }
    s
}

/// The part of the run page that changes while it runs: the DAG and the step table, with
/// the groups `expand` names shown call by call.
///
/// # Errors
///
/// `run` names no run or several (404); the store cannot be read (500).
pub fn run_live_fragment(store: &Store, run: &str, expand: &Expand) -> PageResult {
    let graph = RunGraph::new(store, run)?;
    let record = graph.run.0.clone();
    Ok(run_live(&graph, &record, expand))
}

fn run_live(graph: &RunGraph, record: &RunRecord, expand: &Expand) -> String {
    let mut out = String::new();
    if graph.nodes.is_empty() {
        out.push_str("<p class=\"empty\">No step has started yet.</p>\n");
        return out;
    }
    let id = record.id.as_str();
    let page = run_href(id);
    let step = |s: &StepRecord| step_href(id, &s.name);
    let expand_href = |base: &str| with_query(&page, &expand.params_with(base, true));
    let collapse_href = |base: &str| with_query(&page, &expand.params_with(base, false));
    let links = html::Links {
        step: &step,
        expand: &expand_href,
        collapse: &collapse_href,
    };
    let _ = writeln!(
        out,
        "<div class=\"canvas\">\n{}</div>",
        html::dag_svg(graph, &|base| expand.contains(base), &links)
    );
    let steps: Vec<&StepRecord> = graph.nodes.iter().map(|n| &n.step.0).collect();
    out.push_str(&expanded_note(
        expand,
        steps.iter().map(|s| s.name.as_str()),
        &collapse_href,
    ));
    out.push_str("<table class=\"steps\" id=\"steps\">\n<thead><tr><th>Step</th><th>Status</th><th>Duration</th><th>Attempts</th><th>Why</th><th>Outputs</th></tr></thead>\n<tbody>\n");
    for entry in list_calls(steps.iter().map(|s| s.name.as_str()), |b| {
        expand.contains(b)
    }) {
        let s = match entry {
            Listed::Step(i) => steps[i],
            Listed::More { base, steps: more } => {
                let calls: Vec<&StepRecord> = more.iter().map(|&k| steps[k]).collect();
                out.push_str(&more_row(&base, &calls, id, &expand_href(&base)));
                continue;
            }
        };
        let status = s.status.to_string();
        let mut outputs: Vec<String> = s
            .outputs
            .iter()
            .take(if s.outputs.len() > pipeline::report::GROUP_LIMIT {
                pipeline::report::GROUP_SHOWN
            } else {
                s.outputs.len()
            })
            .map(|o| {
                format!(
                    "{} <span class=\"dim\">{}</span>",
                    link(&artifact_href(o.content_hash), &o.name),
                    esc(&size(o.size))
                )
            })
            .collect();
        if outputs.len() < s.outputs.len() {
            outputs.push(format!(
                "<span class=\"dim\">... {} more items ({})</span>",
                s.outputs.len() - outputs.len(),
                link(&step_href(id, &s.name), "all on the step's page")
            ));
        }
        let _ = writeln!(
            out,
            r#"<tr data-step="{name}" data-status="{status}" data-seen="{status}"><td>{step}</td><td class="status">{badge}</td><td class="duration">{dur}</td><td class="attempts">{attempts}</td><td class="why">{why}</td><td>{outputs}</td></tr>"#,
            name = esc(&s.name),
            step = link(&step_href(id, &s.name), &s.name),
            badge = badge(&status),
            dur = esc(&step_duration(s)),
            attempts = attempts_text(s),
            why = esc(&why(s)),
            outputs = outputs.join("<br>"),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A line naming each expanded group that `names` has, with a link that collapses it
/// (empty when none is).
fn expanded_note<'a>(
    expand: &Expand,
    names: impl Iterator<Item = &'a str>,
    collapse_href: &dyn Fn(&str) -> String,
) -> String {
    let bases: BTreeSet<&str> = names
        .filter_map(pipeline::report::item_call_root)
        .filter(|b| expand.contains(b))
        .collect();
    if bases.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = bases
        .iter()
        .map(|base| {
            format!(
                "<span data-group=\"{b}\">every call of <b>{b}</b> is shown ({})</span>",
                link(&collapse_href(base), "collapse"),
                b = esc(base)
            )
        })
        .collect();
    format!(
        "<p class=\"actions expanded\" id=\"expanded\">{}</p>\n",
        shown.join(" · ")
    )
}

/// Failed calls a group's summary row links to at most.
const MAX_FAILED_LINKS: usize = 5;

/// The row of the step table that sums up the calls of group `base` not listed one by
/// one: their range, counts by status, total duration, links to the failed ones, and the
/// link that lists them all.
fn more_row(base: &str, calls: &[&StepRecord], run_id: &str, expand_href: &str) -> String {
    let (range, counts, took) = html::summary(calls);
    let failed: Vec<String> = calls
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .map(|s| link(&step_href(run_id, &s.name), &s.name))
        .collect();
    let failed = match failed.len() {
        0 => String::new(),
        n if n > MAX_FAILED_LINKS => format!(
            "failed: {}, ... ({n} in all) · ",
            failed[..MAX_FAILED_LINKS].join(", ")
        ),
        _ => format!("failed: {} · ", failed.join(", ")),
    };
    format!(
        "<tr class=\"more\" data-group=\"{b}\" data-calls=\"{n}\"><td>{b}{range}</td><td class=\"status\">{n} more: {counts}</td><td class=\"duration\">{took}</td><td></td><td class=\"why\">{failed}{all}</td><td></td></tr>\n",
        b = esc(base),
        n = calls.len(),
        counts = esc(&counts),
        all = link(expand_href, &format!("show each call of {base}")),
    )
}

/// How many attempts a step took, as the run page's table says it: `1` for a step that ran
/// once (or was cached, or did not run), `3 (2 failed)` for a retried one.
fn attempts_text(s: &StepRecord) -> String {
    if s.attempts.is_empty() {
        return "1".to_string();
    }
    let failed = s.attempts.iter().filter(|a| a.error.is_some()).count();
    format!("{} ({failed} failed)", s.attempts.len())
}

// ---------------------------------------------------------------------------------------
// Step

/// A step of a run: why it ran (against the previous execution of the same call) or what
/// it reused, its error, key components, parameters, and its inputs and outputs with
/// their producers and consumers. A split's item outputs and a gather's item inputs
/// (`item[i]`) past the first few are one summary row, unless `expand` names `item`.
///
/// # Errors
///
/// `run` names no run, or it has no step `step` (404); the store cannot be read (500).
pub fn step(store: &Store, run: &str, step: &str, expand: &Expand) -> PageResult {
    let record = store.run(run)?;
    let steps = store.run_steps(&record.id)?;
    let s = steps
        .iter()
        .find(|s| s.name == step)
        .cloned()
        .ok_or_else(|| {
            PageError::not_found(format!("run `{}` has no step `{step}`", record.name))
        })?;
    let explanation = Explanation::new(store, record.clone(), s.clone())?;
    let status = s.status.to_string();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Step <span class=\"step-name\">{}</span> {}</h1>",
        esc(&s.name),
        badge(&status)
    );
    let _ = writeln!(
        body,
        "<p class=\"meta\">in run {} · step <code>{}</code> · execution {} · started {} UTC · took {}</p>",
        link(&run_href(&record.id), &record.name),
        esc(&s.step),
        s.execution_id,
        timestamp(s.started_at_us),
        esc(&step_duration(&s)),
    );
    body.push_str("<section class=\"explanation\" id=\"explanation\">\n<h2>Why</h2>\n");
    explain(&mut body, &explanation, &s);
    body.push_str("</section>\n");
    if let Some(error) = &s.error {
        let _ = writeln!(
            body,
            "<section id=\"error\">\n<h2>Error</h2>\n<pre class=\"error-text\">{}</pre>\n</section>",
            esc(error)
        );
    }
    let page = step_href(&record.id, &s.name);
    let expand_href = |base: &str| with_query(&page, &expand.params_with(base, true));
    let collapse_href = |base: &str| with_query(&page, &expand.params_with(base, false));
    let names = s
        .components
        .inputs
        .iter()
        .map(|i| i.name())
        .chain(s.outputs.iter().map(|o| o.name.as_str()));
    body.push_str(&expanded_note(expand, names, &collapse_href));
    let shown = Shown {
        expand,
        href: &expand_href,
    };
    inputs_section(store, &mut body, &s, &steps, &record, &shown)?;
    outputs_section(store, &mut body, &s, &shown)?;
    components_section(&mut body, &s);
    details_section(&mut body, &s);
    logs_section(store, &mut body, &s)?;
    Ok(layout(
        &format!("Step {} of {}", s.name, record.name),
        &[
            (run_href(&record.id), record.name.clone()),
            (step_href(&record.id, &s.name), s.name.clone()),
        ],
        "",
        &body,
    ))
}

/// The explanation: for a cached step the execution it reused; for one that ran, the
/// recorded reason and each change since the earlier execution of the same call.
fn explain(out: &mut String, e: &Explanation, s: &StepRecord) {
    let reason = e.reason.as_deref().unwrap_or_default();
    match s.status {
        StepStatus::Cached => {
            if let Some(used) = &e.reused {
                match (&used.step, &used.run_id, &used.run_name) {
                    (Some(step), Some(run_id), Some(run_name)) => {
                        let _ = writeln!(
                            out,
                            "<p class=\"reason\">Cached: reused execution {} ({} in run {}{}).</p>",
                            used.execution_id,
                            link(&step_href(run_id, step), step),
                            link(&run_href(run_id), run_name),
                            used.duration
                                .map(|d| format!(", which ran in {}", duration(d)))
                                .unwrap_or_default(),
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "<p class=\"reason\">Cached: reused execution {}, whose run has since been removed from the store.</p>",
                            used.execution_id
                        );
                    }
                }
            }
            return;
        }
        StepStatus::Skipped => {
            let _ = writeln!(
                out,
                "<p class=\"reason\">Skipped: {}.</p>",
                esc(if reason.is_empty() {
                    "an upstream step failed"
                } else {
                    reason
                })
            );
            return;
        }
        StepStatus::Running => {
            let _ = writeln!(out, "<p class=\"reason\">Running now: {}.</p>", esc(reason));
            return;
        }
        _ => {
            let _ = writeln!(
                out,
                "<p class=\"reason\">It ran because: {}.</p>",
                esc(reason)
            );
        }
    }
    let Some(prev) = &e.previous else {
        let _ = writeln!(
            out,
            "<p>No earlier execution of <code>{}</code> is recorded: this was its first.</p>",
            esc(&s.step)
        );
        return;
    };
    let target = if prev.removed {
        format!(
            "<code>{}</code> in run <code>{}</code>, since removed from the store",
            esc(&prev.step),
            esc(&prev.run_name)
        )
    } else {
        format!(
            "{} in run {}{}",
            link(&step_href(&prev.run_id, &prev.step), &prev.step),
            link(&run_href(&prev.run_id), &prev.run_name),
            prev.started_at_us
                .map(|t| format!(", started {} UTC", timestamp(t)))
                .unwrap_or_default()
        )
    };
    let _ = writeln!(
        out,
        "<p>Compared with the earlier execution of the same call: execution {} ({target}).</p>",
        prev.execution_id
    );
    if e.changes.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"changes none\">No key component changed{}.</p>",
            if e.cache_key == Some(prev.cache_key) {
                " (same cache key)"
            } else {
                ""
            }
        );
        return;
    }
    out.push_str("<ul class=\"changes\">\n");
    for c in &e.changes {
        let _ = write!(out, "<li class=\"change\">{}", esc(&c.text));
        if let Some(d) = &c.detail {
            let hash =
                |h: &Option<String>| match h.as_deref().and_then(|h| h.parse::<Hash128>().ok()) {
                    Some(h) => hash_link(h),
                    None => "?".into(),
                };
            let _ = write!(
                out,
                "<br><span class=\"dim\">content {} → {}</span>",
                hash(&d.old_content_hash),
                hash(&d.new_content_hash)
            );
        }
        if let (Some(old), Some(new)) = (&c.old_declarations, &c.new_declarations) {
            let _ = write!(
                out,
                "<br><span class=\"dim\">before: <code>{}</code><br>now: <code>{}</code></span>",
                esc(old),
                esc(new)
            );
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
}

/// Which groups of `item[i]` inputs or outputs a step page lists one by one, and the
/// address that expands a group.
struct Shown<'a> {
    expand: &'a Expand,
    href: &'a dyn Fn(&str) -> String,
}

impl Shown<'_> {
    /// What to list of `names` (inputs or outputs): each, or a group's first few and
    /// the rest summed up.
    fn rows<'n>(&self, names: impl Iterator<Item = &'n str>) -> Vec<Listed> {
        list_calls(names, |b| self.expand.contains(b))
    }

    /// The summary row of group `base`'s `names` not listed (`item[3..=9999]`, how many,
    /// `what` they are), `columns` cells wide, with the link that lists them.
    fn more_row(&self, base: &str, names: &[&str], what: &str, columns: usize) -> String {
        format!(
            "<tr class=\"more\" data-group=\"{b}\" data-calls=\"{n}\"><td>{b}{range}</td><td colspan=\"{c}\">{n} more{what} · {all}</td></tr>\n",
            b = esc(base),
            range = html::item_range(names.iter().copied()),
            n = names.len(),
            c = columns - 1,
            what = esc(what),
            all = link(&(self.href)(base), &format!("show each {base}")),
        )
    }
}

/// Inputs: parameters with their values, artifacts with their hash and the step that
/// produced them.
fn inputs_section(
    store: &Store,
    out: &mut String,
    s: &StepRecord,
    steps: &[StepRecord],
    run: &RunRecord,
    shown: &Shown<'_>,
) -> Result<(), PageError> {
    out.push_str("<section id=\"inputs\">\n<h2>Inputs</h2>\n");
    if s.components.inputs.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n</section>\n");
        return Ok(());
    }
    out.push_str("<table class=\"inputs\">\n<thead><tr><th>Argument</th><th>Kind</th><th>Value or content</th><th>Produced by</th></tr></thead>\n<tbody>\n");
    let inputs = &s.components.inputs;
    for entry in shown.rows(inputs.iter().map(|i| i.name())) {
        let input = match entry {
            Listed::Step(i) => &inputs[i],
            Listed::More { base, steps: more } => {
                let names: Vec<&str> = more.iter().map(|&i| inputs[i].name()).collect();
                out.push_str(&shown.more_row(&base, &names, " inputs", 4));
                continue;
            }
        };
        match input {
            InputComponent::Parameter {
                name,
                type_name,
                ignored,
                ..
            } => {
                // `value_text` shows a secret as `<secret>`; an ignored parameter is
                // recorded for lineage but is not in the key.
                let shown = input.value_text().unwrap_or_default();
                let kind = if *ignored {
                    "parameter, not in the cache key"
                } else if input.is_secret() {
                    "secret parameter"
                } else {
                    "parameter"
                };
                let _ = writeln!(
                    out,
                    r#"<tr data-input="{n}"><td>{n}</td><td>{kind} <code>{t}</code></td><td><code>{v}</code></td><td></td></tr>"#,
                    n = esc(name),
                    t = esc(type_name),
                    v = esc(&shown),
                );
            }
            InputComponent::Artifact {
                name,
                content_hash,
                producer,
            } => {
                let record = s.inputs.iter().find(|i| &i.name == name);
                let hash = record
                    .and_then(|r| r.content_hash)
                    .or_else(|| content_hash.parse().ok());
                let produced = producer_link(
                    store,
                    record.and_then(|r| r.producer_execution),
                    producer,
                    steps,
                    run,
                )?;
                let _ = writeln!(
                    out,
                    r#"<tr data-input="{n}"><td>{n}</td><td>artifact</td><td>{h}</td><td>{produced}</td></tr>"#,
                    n = esc(name),
                    h = hash.map(hash_link).unwrap_or_else(|| esc(content_hash)),
                );
            }
        }
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    Ok(())
}

/// A link to the step that produced an input: the recorded producer execution (a step of
/// this run, or of the run it was reused from), else the producer's name in this run.
fn producer_link(
    store: &Store,
    execution: Option<i64>,
    producer: &str,
    steps: &[StepRecord],
    run: &RunRecord,
) -> Result<String, PageError> {
    if let Some(id) = execution {
        if let Some(p) = steps
            .iter()
            .find(|p| {
                p.name == producer && (p.execution_id == id || p.reused_execution == Some(id))
            })
            .or_else(|| steps.iter().find(|p| p.execution_id == id))
        {
            return Ok(link(&step_href(&run.id, &p.name), &p.name));
        }
        match (store.execution(id), store.execution_run(id)) {
            (Ok(p), Ok(r)) => {
                return Ok(format!(
                    "{} in run {}",
                    link(&step_href(&r.id, &p.name), &p.name),
                    link(&run_href(&r.id), &r.name)
                ))
            }
            (Err(Error::UnknownRun(_)), _) | (_, Err(Error::UnknownRun(_))) => {}
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        }
    }
    Ok(match steps.iter().find(|p| p.name == producer) {
        Some(p) => link(&step_href(&run.id, &p.name), &p.name),
        None => format!("<code>{}</code>", esc(producer)),
    })
}

/// Consumers listed per output at most.
const MAX_CONSUMERS: usize = 20;

/// Outputs: name, type, size, cacher and hash (linking to the artifact page), and the
/// executions that consumed each.
fn outputs_section(
    store: &Store,
    out: &mut String,
    s: &StepRecord,
    shown: &Shown<'_>,
) -> Result<(), PageError> {
    out.push_str("<section id=\"outputs\">\n<h2>Outputs</h2>\n");
    if s.outputs.is_empty() {
        out.push_str("<p class=\"empty\">None recorded.</p>\n</section>\n");
        return Ok(());
    }
    out.push_str("<table class=\"outputs\">\n<thead><tr><th>Output</th><th>Type</th><th>Size</th><th>Cacher</th><th>Content</th><th>Consumed by</th></tr></thead>\n<tbody>\n");
    for entry in shown.rows(s.outputs.iter().map(|o| o.name.as_str())) {
        let o = match entry {
            Listed::Step(i) => &s.outputs[i],
            Listed::More { base, steps: more } => {
                let names: Vec<&str> = more.iter().map(|&i| s.outputs[i].name.as_str()).collect();
                let total: u64 = more.iter().map(|&i| s.outputs[i].size).sum();
                let what = format!(" outputs, {} in all", size(total));
                out.push_str(&shown.more_row(&base, &names, &what, 6));
                continue;
            }
        };
        let lineage = store.lineage(o.content_hash)?;
        let _ = writeln!(
            out,
            r#"<tr data-output="{n}"><td>{name}</td><td><code>{t}</code></td><td>{size}</td><td>{c} v{v}</td><td>{h}</td><td>{consumers}</td></tr>"#,
            n = esc(&o.name),
            name = link(&artifact_href(o.content_hash), &o.name),
            t = esc(&preview::plain_type(&o.type_name)),
            size = esc(&size(o.size)),
            c = esc(&o.cacher),
            v = o.cacher_version,
            h = hash_link(o.content_hash),
            consumers = execution_links(&lineage.consumers),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    Ok(())
}

fn execution_links(refs: &[ExecutionRef]) -> String {
    if refs.is_empty() {
        return "<span class=\"dim\">none</span>".into();
    }
    let mut items: Vec<String> = refs
        .iter()
        .take(MAX_CONSUMERS)
        .map(|r| {
            format!(
                "{} in {}",
                link(&step_href(&r.run_id, &r.step), &r.step),
                link(&run_href(&r.run_id), &r.run_name)
            )
        })
        .collect();
    if refs.len() > MAX_CONSUMERS {
        items.push(format!("and {} more", refs.len() - MAX_CONSUMERS));
    }
    items.join("<br>")
}

/// The cache key and what it was computed from.
/// What the step logged through its context (metrics, metadata; a cached step's are those
/// of the execution it reused) and its attempts when it was retried.
fn details_section(out: &mut String, s: &StepRecord) {
    out.push_str("<section id=\"more\">\n<h2>Metrics, metadata and attempts</h2>\n");
    if s.metrics.is_empty() && s.metadata.is_empty() && s.attempts.is_empty() {
        out.push_str("<p class=\"empty\">The step logged no metrics or metadata (<code>pipeline::context()</code>), and ran once.</p>\n</section>\n");
        return;
    }
    if s.status == StepStatus::Cached && !(s.metrics.is_empty() && s.metadata.is_empty()) {
        out.push_str("<p class=\"note\">Logged by the execution this step reused.</p>\n");
    }
    if !s.metrics.is_empty() {
        out.push_str("<table id=\"metrics\">\n<thead><tr><th>Metric</th><th>Value</th></tr></thead>\n<tbody>\n");
        for (name, value) in &s.metrics {
            let _ = writeln!(
                out,
                r#"<tr data-metric="{n}"><td>{n}</td><td>{}</td></tr>"#,
                esc(&pipeline::report::metric_text(*value)),
                n = esc(name)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !s.metadata.is_empty() {
        out.push_str("<table id=\"metadata\">\n<thead><tr><th>Metadata</th><th>Value</th></tr></thead>\n<tbody>\n");
        for (key, value) in &s.metadata {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(key),
                esc(&value.to_string())
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !s.attempts.is_empty() {
        out.push_str("<table id=\"attempts\">\n<thead><tr><th>Attempt</th><th>Started (UTC)</th><th>Duration</th><th>Outcome</th></tr></thead>\n<tbody>\n");
        for a in &s.attempts {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.attempt,
                timestamp(a.started_at_us),
                esc(&pipeline::report::text::duration(a.duration)),
                esc(a
                    .error
                    .as_deref()
                    .map_or("succeeded".to_string(), |e| format!("failed: {e}"))
                    .as_str())
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

/// The end of each stream the step's worker or Slurm job wrote, where the store kept it
/// (`pipeline logs RUN STEP` prints them whole).
fn logs_section(store: &Store, out: &mut String, s: &StepRecord) -> Result<(), PageError> {
    /// How much of each stream the page shows: its end.
    const SHOWN: usize = 8 * 1024;
    let logs = store.execution_logs(s.execution_id)?;
    if logs.is_empty() {
        return Ok(());
    }
    out.push_str("<section id=\"logs\">\n<h2>Logs</h2>\n");
    for log in &logs {
        let bytes = if log.size == 0 {
            Vec::new()
        } else {
            store.read_log(log)?
        };
        let start = bytes.len().saturating_sub(SHOWN);
        let text = String::from_utf8_lossy(&bytes[start..]);
        let cut = start > 0 || log.truncated();
        let _ = writeln!(
            out,
            "<h3>{}</h3>\n<p class=\"note\">{} written{}</p>\n<pre class=\"log\" data-stream=\"{}\">{}</pre>",
            log.stream,
            esc(&pipeline::report::text::size(log.total_size)),
            if cut { "; the end is shown" } else { "" },
            log.stream,
            esc(&text)
        );
    }
    out.push_str("</section>\n");
    Ok(())
}

fn components_section(out: &mut String, s: &StepRecord) {
    let c = &s.components;
    out.push_str("<section id=\"components\">\n<h2>Key components</h2>\n<dl class=\"facts\">\n");
    let _ = writeln!(
        out,
        "<dt>cache key</dt><dd><code>{}</code></dd>",
        s.cache_key
            .map(|k| k.to_hex())
            .unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        out,
        "<dt>step</dt><dd><code>{}</code> in module <code>{}</code></dd>",
        esc(&c.step),
        esc(&c.module)
    );
    let _ = writeln!(
        out,
        "<dt>code signature</dt><dd><code>{}</code></dd>",
        esc(&c.code_signature)
    );
    for part in &c.code_parts {
        let _ = writeln!(
            out,
            "<dt>code part</dt><dd><code>{}</code></dd>",
            esc(&part.to_string())
        );
    }
    for o in &c.outputs {
        let _ = writeln!(
            out,
            "<dt>output <code>{}</code></dt><dd><code>{}</code>, {} v{}{}</dd>",
            esc(&o.name),
            esc(&preview::plain_type(&o.type_name)),
            esc(&o.cacher),
            o.cacher_version,
            if o.shape.is_empty() {
                String::new()
            } else {
                format!(
                    ", shape <code>{}</code>",
                    esc(pipeline::report::text::short(&o.shape))
                )
            }
        );
    }
    out.push_str("</dl>\n</section>\n");
}

// ---------------------------------------------------------------------------------------
// Artifact

/// An artifact by content hash: its facts, sidecar and metadata, where it came from and
/// went, and a preview of its value.
///
/// # Errors
///
/// `hash` is not a content hash or names no artifact (404); the store cannot be read (500). Bytes that cannot be read are shown as such, not an error.
pub fn artifact(store: &Store, hash: &str) -> PageResult {
    let hash: Hash128 = hash
        .parse()
        .map_err(|_| PageError::not_found(format!("`{hash}` is not a content hash")))?;
    let stored = store.artifact_by_hash(hash)?;
    let record = stored.record().clone();
    let lineage = store.lineage(hash)?;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Artifact <span class=\"artifact-name\">{}</span> <span class=\"dim\">of step {}</span></h1>",
        esc(&record.name),
        esc(stored.step())
    );
    body.push_str("<dl class=\"facts\" id=\"facts\">\n");
    let producer = match (
        store.execution(stored.execution_id()),
        store.execution_run(stored.execution_id()),
    ) {
        (Ok(p), Ok(r)) => format!(
            "{} in run {}",
            link(&step_href(&r.id, &p.name), &p.name),
            link(&run_href(&r.id), &r.name)
        ),
        _ => format!("<code>{}</code>", esc(stored.step())),
    };
    for (term, value) in [
        ("type", format!("<code>{}</code>", esc(&record.type_name))),
        (
            "cacher",
            format!("{} v{}", esc(&record.cacher), record.cacher_version),
        ),
        (
            "size",
            format!("{} ({} bytes)", esc(&size(record.size)), record.size),
        ),
        ("content hash", format!("<code>{}</code>", hash.to_hex())),
        ("written by", producer),
    ] {
        let _ = writeln!(body, "<dt>{term}</dt><dd>{value}</dd>");
    }
    body.push_str("</dl>\n");
    body.push_str("<section id=\"preview\">\n<h2>Preview</h2>\n");
    preview_html(&mut body, &record, preview::preview(store, &record));
    body.push_str("</section>\n");
    body.push_str("<section id=\"lineage\">\n<h2>Lineage</h2>\n<dl class=\"facts\">\n");
    let _ = writeln!(
        body,
        "<dt>produced by</dt><dd>{}</dd>",
        execution_links(&lineage.producers)
    );
    let _ = writeln!(
        body,
        "<dt>reused by</dt><dd>{}</dd>",
        execution_links(&lineage.reused_by)
    );
    let _ = writeln!(
        body,
        "<dt>consumed by</dt><dd>{}</dd>",
        execution_links(&lineage.consumers)
    );
    body.push_str("</dl>\n</section>\n");
    body.push_str("<section id=\"sidecar\">\n<h2>Sidecar</h2>\n");
    match store.artifact_store().get_sidecar(hash) {
        Ok(Some(doc)) => {
            let text = serde_json::from_slice::<serde_json::Value>(&doc)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&doc).into_owned());
            let _ = writeln!(body, "<pre class=\"json\">{}</pre>", esc(&text));
        }
        Ok(None) => body.push_str("<p class=\"note\">This blob has no sidecar; <code>pipeline verify --repair</code> restores it.</p>\n"),
        Err(e) => {
            let _ = writeln!(body, "<p class=\"error-text\">The sidecar cannot be read: {}</p>", esc(&e.to_string()));
        }
    }
    if let Some(meta) = &record.metadata {
        let _ = writeln!(
            body,
            "<h3>Cacher metadata</h3>\n<pre class=\"json\">{}</pre>",
            esc(&serde_json::to_string_pretty(meta).unwrap_or_default())
        );
    }
    body.push_str("</section>\n");
    Ok(layout(
        &format!("Artifact {}", record.name),
        &[(
            artifact_href(hash),
            format!("artifact {}", short_hash(hash)),
        )],
        "",
        &body,
    ))
}

/// The bytes and media type of an image artifact.
///
/// # Errors
///
/// A 404 when `hash` names no artifact or one that is not an image.
pub fn artifact_image(store: &Store, hash: &str) -> Result<(&'static str, Vec<u8>), PageError> {
    let hash: Hash128 = hash
        .parse()
        .map_err(|_| PageError::not_found(format!("`{hash}` is not a content hash")))?;
    let stored = store.artifact_by_hash(hash)?;
    match preview::preview(store, stored.record()) {
        Preview::Image { mime, bytes } => Ok((mime, bytes)),
        _ => Err(PageError::not_found("this artifact is not an image")),
    }
}

fn preview_html(out: &mut String, record: &ArtifactRecord, p: Preview) {
    match p {
        Preview::Value(v) => {
            let _ = writeln!(
                out,
                "<p class=\"preview value\" data-kind=\"value\"><code>{}</code></p>",
                esc(&v)
            );
        }
        Preview::Json { text, cut } => {
            let _ = writeln!(
                out,
                "<pre class=\"preview json\" data-kind=\"json\">{}</pre>",
                esc(&text)
            );
            if cut {
                out.push_str("<p class=\"note\">Cut: the document is longer than shown.</p>\n");
            }
        }
        Preview::Text { text, cut } => {
            let _ = writeln!(
                out,
                "<pre class=\"preview text\" data-kind=\"text\">{}</pre>",
                esc(&text)
            );
            if cut {
                out.push_str("<p class=\"note\">Cut: the text is longer than shown.</p>\n");
            }
        }
        Preview::Numbers { values, element } => numbers_html(out, record, &values, &element),
        Preview::Table {
            columns,
            rows,
            total,
        } => {
            let _ = writeln!(
                out,
                "<p class=\"note\">{} of {total} row{}.</p>",
                rows.len(),
                if total == 1 { "" } else { "s" }
            );
            out.push_str(
                "<table class=\"preview table\" data-kind=\"table\">\n<thead><tr><th>#</th>",
            );
            for c in &columns {
                let _ = write!(out, "<th>{}</th>", esc(c));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for (i, row) in rows.iter().enumerate() {
                let _ = write!(out, "<tr><td class=\"dim\">{i}</td>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", esc(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Preview::Image { mime, .. } => {
            let _ = writeln!(
                out,
                r#"<p><img class="preview image" data-kind="image" data-mime="{mime}" src="{}/image" alt="{}"></p>"#,
                artifact_href(record.content_hash),
                esc(&record.name)
            );
        }
        Preview::Opaque { why, head } => {
            let _ = writeln!(
                out,
                "<p class=\"note preview opaque\" data-kind=\"opaque\">No preview: {}.</p>",
                esc(&why)
            );
            if !head.is_empty() {
                let mut hex = String::new();
                for (i, chunk) in head.chunks(16).enumerate() {
                    let _ = write!(hex, "{:08x} ", i * 16);
                    for b in chunk {
                        let _ = write!(hex, " {b:02x}");
                    }
                    hex.push('\n');
                }
                let _ = writeln!(
                    out,
                    "<p class=\"note\">First {} bytes:</p>\n<pre class=\"hex\">{}</pre>",
                    head.len(),
                    esc(&hex)
                );
            }
        }
    }
}

/// Summary statistics of a numeric vector, its histogram and a line plot by index.
fn numbers_html(out: &mut String, record: &ArtifactRecord, values: &[f64], element: &str) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len();
    let mut stats: Vec<(&str, String)> = vec![
        ("count", values.len().to_string()),
        ("element", element.to_string()),
    ];
    if n < values.len() {
        stats.push(("not finite", (values.len() - n).to_string()));
    }
    if n > 0 {
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = finite.iter().sum::<f64>() / n as f64;
        let var = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        stats.extend([
            ("min", chart::num(sorted[0])),
            ("max", chart::num(sorted[n - 1])),
            ("mean", chart::num(mean)),
            ("median", chart::num(median)),
            ("std dev", chart::num(var.sqrt())),
        ]);
    }
    out.push_str("<dl class=\"facts stats\" data-kind=\"numbers\">\n");
    for (k, v) in &stats {
        let _ = writeln!(out, "<dt>{k}</dt><dd data-stat=\"{k}\">{}</dd>", esc(v));
    }
    out.push_str("</dl>\n<div class=\"charts\">\n");
    let what = format!("{} ({element})", record.name);
    let hist_title = format!("Distribution of {}", record.name);
    if let Some(svg) = chart::histogram(
        &Labels {
            title: &hist_title,
            x: &what,
            y: "count (values per bin)",
        },
        values,
    ) {
        out.push_str(&svg);
    }
    let points: Vec<(f64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as f64, v))
        .collect();
    let line_title = format!("{} by index", record.name);
    if let Some(svg) = chart::line(
        &Labels {
            title: &line_title,
            x: "index (position in the vector)",
            y: &what,
        },
        &points,
        None,
    ) {
        out.push_str(&svg);
    }
    out.push_str("</div>\n");
    let first: Vec<String> = values.iter().take(20).map(|v| chart::num(*v)).collect();
    let _ = writeln!(
        out,
        "<p class=\"note\">First values: <code>{}{}</code></p>",
        esc(&first.join(", ")),
        if values.len() > 20 { ", …" } else { "" }
    );
}

// ---------------------------------------------------------------------------------------
// Compare

/// Two runs side by side: their headers, each step's status in both and what differs
/// (a large group of a map's per-item calls by its first calls and a summary row, unless
/// `expand` names it), and their scalar outputs.
///
/// # Errors
///
/// `a` or `b` names no run or several (404); the store cannot be read (500).
pub fn compare(store: &Store, a: &str, b: &str, expand: &Expand) -> PageResult {
    let diff = RunDiff::new(store, a, b)?;
    let (ra, rb) = (&diff.run_a.0, &diff.run_b.0);
    let mut body = String::from("<h1>Compare runs</h1>\n<div class=\"side-by-side\">\n");
    for (label, r) in [("A", ra), ("B", rb)] {
        let _ = writeln!(
            body,
            "<div class=\"run-card\" data-side=\"{label}\"><h2>{label}: {}</h2><p>{} · pipeline <code>{}</code><br>started {} UTC · took {}<br>{} executed, {} cached, {} failed, {} skipped</p></div>",
            link(&run_href(&r.id), &r.name),
            badge(&r.status.to_string()),
            esc(&r.pipeline),
            timestamp(r.started_at_us),
            r.duration.map(duration).unwrap_or_else(|| "-".into()),
            r.executed,
            r.cached,
            r.failed,
            r.skipped
        );
    }
    body.push_str("</div>\n");
    let _ = writeln!(
        body,
        "<p class=\"summary\" id=\"diff-summary\">{} of {} steps differ.</p>",
        diff.changed().count(),
        diff.calls().count()
    );
    // The built-in split and gather calls are bookkeeping, as in `pipeline diff`: the
    // calls around them say what changed.
    let listed: Vec<&pipeline::report::DiffStep> = diff.calls().collect();
    let page = format!("/compare?a={}&b={}", enc(&ra.id), enc(&rb.id));
    body.push_str(&expanded_note(
        expand,
        listed.iter().map(|s| s.name.as_str()),
        &|base| with_query(&page, &expand.params_with(base, false)),
    ));
    body.push_str("<table class=\"diff\" id=\"diff\">\n<thead><tr><th>Step</th><th>A</th><th>B</th><th>Cache key</th></tr></thead>\n<tbody>\n");
    let status = |s: Option<StepStatus>| {
        s.map(|s| badge(&s.to_string()))
            .unwrap_or_else(|| "-".into())
    };
    for entry in list_calls(listed.iter().map(|s| s.name.as_str()), |b| {
        expand.contains(b)
    }) {
        let s = match entry {
            Listed::Step(i) => listed[i],
            Listed::More { base, steps } => {
                let calls: Vec<&pipeline::report::DiffStep> =
                    steps.iter().map(|&i| listed[i]).collect();
                let count = |side: fn(&pipeline::report::DiffStep) -> Option<StepStatus>| {
                    let mut by: BTreeMap<String, usize> = BTreeMap::new();
                    for c in &calls {
                        let status = side(c).map_or("-".to_string(), |s| s.to_string());
                        *by.entry(status).or_default() += 1;
                    }
                    by.iter()
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let differ = calls.iter().filter(|c| !c.same_key).count();
                let _ = writeln!(
                    body,
                    r#"<tr class="more" data-group="{b}" data-calls="{n}" data-differ="{differ}"><td>{b}{range} <span class="dim">({n} more)</span></td><td>{a}</td><td>{bb}</td><td>{differ} of {n} differ · {all}</td></tr>"#,
                    b = esc(&base),
                    n = calls.len(),
                    range = html::item_range(calls.iter().map(|c| c.name.as_str())),
                    a = esc(&count(|c| c.status_a)),
                    bb = esc(&count(|c| c.status_b)),
                    all = link(
                        &with_query(&page, &expand.params_with(&base, true)),
                        &format!("show each call of {base}")
                    ),
                );
                continue;
            }
        };
        let verdict = match s.verdict() {
            "different" if !s.changes.is_empty() => s
                .changes
                .iter()
                .map(|c| esc(&c.text))
                .collect::<Vec<_>>()
                .join("<br>"),
            v => v.to_string(),
        };
        let name = match s.renamed_from() {
            Some(a) => format!(
                "{} <span class=\"dim\">(A: {})</span>",
                esc(&s.name),
                esc(a)
            ),
            None => esc(&s.name),
        };
        let _ = writeln!(
            body,
            r#"<tr data-step="{n}" data-same="{same}"><td>{name}</td><td>{a}</td><td>{b}</td><td>{verdict}</td></tr>"#,
            n = esc(&s.name),
            same = s.same_key,
            a = status(s.status_a),
            b = status(s.status_b),
        );
    }
    body.push_str("</tbody>\n</table>\n");
    // Scalar outputs, the metrics a run has until `log_metric` (issue 17) records real ones.
    let sa = scalar_outputs(store, &store.run_steps(&ra.id)?);
    let sb = scalar_outputs(store, &store.run_steps(&rb.id)?);
    let mut keys: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    body.push_str("<h2>Scalar outputs</h2>\n");
    if keys.is_empty() {
        body.push_str("<p class=\"empty\">Neither run has a scalar output.</p>\n");
    } else {
        body.push_str("<table class=\"diff outputs\" id=\"scalars\">\n<thead><tr><th>Output</th><th>A</th><th>B</th></tr></thead>\n<tbody>\n");
        for k in keys {
            let v = |m: &BTreeMap<String, f64>| {
                m.get(k)
                    .map(|v| chart::num(*v))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                body,
                r#"<tr data-output="{k}"><td>{k}</td><td>{}</td><td>{}</td></tr>"#,
                v(&sa),
                v(&sb),
                k = esc(k)
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    // Metrics the steps logged (`log_metric`), by `step.metric`.
    let logged = |steps: &[StepRecord]| -> BTreeMap<String, f64> {
        steps
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |(m, v)| (format!("{}.{m}", s.name), *v))
            })
            .collect()
    };
    let la = logged(&store.run_steps(&ra.id)?);
    let lb = logged(&store.run_steps(&rb.id)?);
    let mut names: Vec<&String> = la.keys().chain(lb.keys()).collect();
    names.sort();
    names.dedup();
    body.push_str("<h2>Logged metrics</h2>\n");
    if names.is_empty() {
        body.push_str("<p class=\"empty\">Neither run logged a metric (<code>log_metric</code> in a step's context).</p>\n");
    } else {
        body.push_str("<table class=\"diff metrics\" id=\"logged-metrics\">\n<thead><tr><th>Metric</th><th>A</th><th>B</th></tr></thead>\n<tbody>\n");
        for k in names {
            let v = |m: &BTreeMap<String, f64>| {
                m.get(k)
                    .map(|v| pipeline::report::metric_text(*v))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                body,
                r#"<tr data-metric="{k}"><td>{k}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&v(&la)),
                esc(&v(&lb)),
                k = esc(k)
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    Ok(layout(
        &format!("Compare {} and {}", ra.name, rb.name),
        &[(
            format!("/compare?a={}&b={}", enc(&ra.id), enc(&rb.id)),
            "compare".into(),
        )],
        "",
        &body,
    ))
}

/// Type names of the scalar numbers a step output can hold.
const SCALARS: [&str; 12] = [
    "f64", "f32", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize",
];

/// The numeric scalar outputs of `steps`, as `step.output` (or `step` for a single
/// output) to value.
fn scalar_outputs(store: &Store, steps: &[StepRecord]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in steps {
        for o in &s.outputs {
            if !SCALARS.contains(&preview::plain_type(&o.type_name).as_str()) || o.size > 64 {
                continue;
            }
            if let Preview::Value(v) = preview::preview(store, o) {
                if let Ok(x) = v.parse::<f64>() {
                    let key = if o.name == "output" {
                        s.name.clone()
                    } else {
                        format!("{}.{}", s.name, o.name)
                    };
                    out.insert(key, x);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Metrics

/// What the metrics page knows of one run: its numeric parameters (`step.name`) and its
/// scalar outputs.
struct RunValues {
    run: RunRecord,
    params: BTreeMap<String, f64>,
    /// Chartable values by series: `(false, "step.metric")` for logged metrics (so they
    /// sort first), `(true, "step")` or `(true, "step.output")` for scalar step outputs.
    outputs: BTreeMap<(bool, String), f64>,
}

/// The metrics of a pipeline: a chart of each metric its steps logged (`log_metric`) and of
/// each scalar step output, across the pipeline's runs, against the one numeric parameter
/// that varied between them when there is one (a sweep).
///
/// # Errors
///
/// the pipeline has no runs (404); the store cannot be read (500).
pub fn metrics(store: &Store, pipeline: &str) -> PageResult {
    let mut runs = store.runs(Some(pipeline))?;
    if runs.is_empty() {
        return Err(PageError::not_found(format!(
            "no runs of pipeline `{pipeline}`"
        )));
    }
    runs.reverse(); // oldest first
    let mut body = format!(
        "<h1>Metrics of <span class=\"pipeline-name\">{}</span></h1>\n",
        esc(pipeline)
    );
    body.push_str("<p class=\"note\" id=\"metrics-note\">Each chart is one metric across the runs: the metrics steps logged with <code>log_metric</code> (named <code>step.metric</code>; a cached step's are those of the execution it reused), then the scalar outputs of the steps (a step returning an <code>f64</code>).</p>\n");
    // Per run: its parameters (`step.name` to number) and scalar outputs.
    let mut rows: Vec<RunValues> = Vec::new();
    for r in runs {
        let steps = store.run_steps(&r.id)?;
        let mut params = BTreeMap::new();
        for s in &steps {
            for (k, v) in &s.parameters {
                if let Some(x) = v.as_f64() {
                    params.insert(format!("{}.{k}", s.step), x);
                }
            }
        }
        let mut outputs: BTreeMap<(bool, String), f64> = scalar_outputs(store, &steps)
            .into_iter()
            .map(|(k, v)| ((true, k), v))
            .collect();
        for s in &steps {
            for (m, v) in &s.metrics {
                outputs.insert((false, format!("{}.{m}", s.name)), *v);
            }
        }
        rows.push(RunValues {
            run: r,
            params,
            outputs,
        });
    }
    // The parameter on the x axis: the numeric one taking the most distinct values among
    // the runs with outputs (ties by name), when any takes two or more.
    let with_outputs: Vec<&RunValues> = rows.iter().filter(|r| !r.outputs.is_empty()).collect();
    let mut names: Vec<&String> = with_outputs.iter().flat_map(|r| r.params.keys()).collect();
    names.sort();
    names.dedup();
    let x_param = names
        .into_iter()
        .map(|name| {
            let mut values: Vec<u64> = with_outputs
                .iter()
                .filter_map(|r| r.params.get(name))
                .map(|v| v.to_bits())
                .collect();
            values.sort_unstable();
            values.dedup();
            (values.len(), name)
        })
        .filter(|(n, _)| *n >= 2)
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
        .map(|(_, name)| name.clone());
    // Logged metrics first, then scalar outputs (the keys sort so).
    let mut series: Vec<&(bool, String)> =
        with_outputs.iter().flat_map(|r| r.outputs.keys()).collect();
    series.sort();
    series.dedup();
    if series.is_empty() {
        body.push_str("<p class=\"empty\">No run of this pipeline logged a metric or has a scalar output.</p>\n");
    }
    let x_label = match &x_param {
        Some(p) => format!("{p} (parameter)"),
        None => "run number (oldest first)".to_string(),
    };
    for key in series {
        let (is_output, name) = (key.0, &key.1);
        let mut points = Vec::new();
        let mut labels = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let Some(&y) = r.outputs.get(key) else {
                continue;
            };
            let x = match &x_param {
                Some(p) => match r.params.get(p) {
                    Some(&x) => x,
                    None => continue,
                },
                None => (i + 1) as f64,
            };
            points.push((x, y));
            labels.push(r.run.name.clone());
        }
        let title = format!("{name} across {} runs", points.len());
        let y_label = if is_output {
            format!("{name} (step output)")
        } else {
            format!("{name} (logged metric)")
        };
        if let Some(svg) = chart::line(
            &Labels {
                title: &title,
                x: &x_label,
                y: &y_label,
            },
            &points,
            Some(&labels),
        ) {
            let _ = writeln!(
                body,
                "<section class=\"metric\" data-metric=\"{}\">\n<h2>{}</h2>\n{svg}</section>",
                esc(name),
                esc(name)
            );
        }
    }
    Ok(layout(
        &format!("Metrics of {pipeline}"),
        &[(
            format!("/?pipeline={}", enc(pipeline)),
            pipeline.to_string(),
        )],
        "",
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(enc("run a/../b?c"), "run%20a%2F..%2Fb%3Fc");
        assert_eq!(enc("shift_2"), "shift_2");
    }

    #[test]
    fn store_errors_become_pages() {
        let e: PageError = Error::UnknownRun("nope".into()).into();
        assert_eq!(e.status, 404);
        let e: PageError = Error::UnknownArtifact("00".into()).into();
        assert_eq!(e.status, 404);
        let page = error_page(&PageError {
            status: 500,
            title: "The store cannot be read".into(),
            message: "<disk> gone".into(),
        });
        assert!(page.contains("&lt;disk&gt; gone"), "{page}");
    }
}
