//! Progress bars on the terminal while pipelines run: one bar per run with the steps done
//! of the total, the steps running now, how many were cached, failed or skipped, and the
//! elapsed time.
//!
//! ```text
//! ⠹ digits_pipeline [#########>--------------] 2/4 3s running: svc_trainer · 2 cached
//! ```
//!
//! [`ProgressLayer`] is a [`tracing_subscriber::Layer`]. It reads the fields of the spans
//! the runtime opens (target `pipeline`, level DEBUG), never the text of log lines:
//!
//! | span   | fields                                                          |
//! |--------|-----------------------------------------------------------------|
//! | `run`  | `pipeline`, `run` (name), `steps` (total), `status`, `duration_s` |
//! | `step` | `step`, `status`, `duration_s`, `cache_key`; its parent is the `run` |
//!
//! A step's `status` is `waiting` (for another process computing the same cache key) and
//! `running` while it works, then its final [`StepStatus`](crate::StepStatus) (`executed`,
//! `cached`, `failed`, `skipped`) when its span closes.
//!
//! Bars are drawn with [`indicatif`] on standard error, and only when standard error is a
//! terminal: piped or redirected output, CI logs and tests get none. Log lines written
//! through [`ProgressLayer::writer`] appear above the bars, which are redrawn below them.
//!
//! ```no_run
//! use pipeline::progress::ProgressLayer;
//! use tracing_subscriber::prelude::*;
//!
//! let progress = ProgressLayer::new();
//! tracing_subscriber::registry()
//!     .with(
//!         tracing_subscriber::fmt::layer()
//!             .with_writer(progress.writer(std::io::stderr))
//!             .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
//!     )
//!     .with(progress.filtered())
//!     .init();
//! ```
//!
//! The spans are DEBUG, so that log lines at INFO look as they always did. Give each layer
//! its own filter, as above (`.with_filter(..)`): a filter set for the whole subscriber
//! (`fmt().with_env_filter(..)`, or a filter layer added on its own) at INFO disables the
//! spans for every layer, and then no bar is drawn.
//!
//! Spans follow the thread's subscriber: install the subscriber globally
//! (`.init()` / `set_global_default`), since steps run on worker threads.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::span;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Where bars are drawn (re-exported from [`indicatif`]): standard error by default, an
/// in-memory terminal in tests, hidden.
pub use indicatif::ProgressDrawTarget;

/// The target of the runtime's spans and events.
const TARGET: &str = "pipeline";

/// How often the spinner and the elapsed time are redrawn while a run is active.
const TICK: Duration = Duration::from_millis(120);

/// What a bar shows.
const TEMPLATE: &str =
    "{spinner:.green} {prefix:.bold} [{bar:25.cyan/blue}] {pos}/{len} {elapsed} {wide_msg}";

/// A [`Layer`] that draws a progress bar per pipeline run from the runtime's spans.
///
/// Cloning gives another handle to the same bars.
#[derive(Clone)]
pub struct ProgressLayer {
    bars: MultiProgress,
    style: ProgressStyle,
    tick: Option<Duration>,
}

impl std::fmt::Debug for ProgressLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressLayer")
            .field("hidden", &self.bars.is_hidden())
            .finish()
    }
}

impl Default for ProgressLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLayer {
    /// Draws on standard error when it is a terminal (and `TERM` is not `dumb`); draws
    /// nothing otherwise.
    pub fn new() -> Self {
        Self::with_draw_target(ProgressDrawTarget::stderr())
    }

    /// Draws on `target`.
    pub fn with_draw_target(target: ProgressDrawTarget) -> Self {
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
        ProgressLayer {
            bars: MultiProgress::with_draw_target(target),
            style,
            tick: Some(TICK),
        }
    }

    /// Redraws the spinner and the elapsed time every `period` while a run is active
    /// (every 120 ms by default); with `None`, bars are drawn only when a step changes
    /// (tests that read an in-memory terminal use that, so nothing draws behind them).
    pub fn tick_every(mut self, period: Option<Duration>) -> Self {
        self.tick = period;
        self
    }

    /// Whether the bars are drawn anywhere (`false` when standard error is not a terminal).
    pub fn is_hidden(&self) -> bool {
        self.bars.is_hidden()
    }

    /// Wraps a writer of log lines (e.g. `std::io::stderr`, or `std::io::stdout` when that
    /// is the same terminal) so that each line clears the bars, is written, and the bars
    /// are drawn again below it. Pass it to `fmt::layer().with_writer(..)`.
    pub fn writer<M>(&self, inner: M) -> ProgressWriter<M> {
        ProgressWriter {
            bars: self.bars.clone(),
            inner,
        }
    }

    /// This layer, seeing only the runtime's spans and events (target `pipeline`, up to
    /// DEBUG) whatever the other layers' filters are.
    pub fn filtered<S>(self) -> Filtered<Self, Targets, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.with_filter(Targets::new().with_target(TARGET, Level::DEBUG))
    }
}

/// The fields of a `run` or `step` span that the bars show.
#[derive(Debug, Default)]
struct Fields {
    pipeline: Option<String>,
    step: Option<String>,
    status: Option<String>,
    steps: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "steps" {
            self.steps = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "steps" {
            self.steps = u64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here, formatted with their `Display`.
        self.set(field, format!("{value:?}"));
    }
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "pipeline" => self.pipeline = Some(value),
            "step" => self.step = Some(value),
            "status" => self.status = Some(value),
            _ => {}
        }
    }
}

/// One run's bar and what it counts.
#[derive(Debug)]
struct RunBar {
    bar: ProgressBar,
    /// Steps running now, in the order they started.
    running: Vec<String>,
    /// Steps waiting for another process computing the same key.
    waiting: Vec<String>,
    executed: u64,
    cached: u64,
    failed: u64,
    skipped: u64,
    finished: bool,
}

type SharedRun = Arc<Mutex<RunBar>>;

fn lock(run: &SharedRun) -> MutexGuard<'_, RunBar> {
    run.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunBar {
    /// The message after the bar: `running: a, b · waiting: c · 2 cached · 1 failed`.
    fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.running.is_empty() {
            parts.push(format!("running: {}", self.running.join(", ")));
        }
        if !self.waiting.is_empty() {
            parts.push(format!("waiting: {}", self.waiting.join(", ")));
        }
        for (n, what) in [
            (self.cached, "cached"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(" · ")
    }

    fn done(&self) -> u64 {
        self.executed + self.cached + self.failed + self.skipped
    }

    /// Moves step `name` to `status` (a transient one, or its final one with `closed`).
    fn update(&mut self, name: &str, status: &str, closed: bool) {
        if self.finished {
            return;
        }
        self.running.retain(|r| r != name);
        self.waiting.retain(|r| r != name);
        match (status, closed) {
            ("running", false) => self.running.push(name.to_string()),
            ("waiting", false) => self.waiting.push(name.to_string()),
            ("executed", true) => self.executed += 1,
            ("cached", true) => self.cached += 1,
            ("failed", true) => self.failed += 1,
            ("skipped", true) => self.skipped += 1,
            _ => {}
        }
        // The position first: with a steady tick it is drawn only with the message.
        self.bar.set_position(self.done());
        self.bar.set_message(self.message());
    }
}

/// What the layer keeps in a `step` span.
struct StepState {
    run: SharedRun,
    name: String,
    status: Option<String>,
}

impl<S> Layer<S> for ProgressLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if !ours(meta) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        match meta.name() {
            "run" => {
                let bar = self.bars.add(
                    ProgressBar::new(fields.steps.unwrap_or(0))
                        .with_style(self.style.clone())
                        .with_prefix(fields.pipeline.unwrap_or_default()),
                );
                if let Some(period) = self.tick {
                    bar.enable_steady_tick(period);
                }
                span.extensions_mut()
                    .insert::<SharedRun>(Arc::new(Mutex::new(RunBar {
                        bar,
                        running: Vec::new(),
                        waiting: Vec::new(),
                        executed: 0,
                        cached: 0,
                        failed: 0,
                        skipped: 0,
                        finished: false,
                    })));
            }
            "step" => {
                let Some(run) = span
                    .parent()
                    .and_then(|parent| parent.extensions().get::<SharedRun>().cloned())
                else {
                    return;
                };
                let name = fields.step.unwrap_or_default();
                if let Some(status) = &fields.status {
                    lock(&run).update(&name, status, false);
                }
                span.extensions_mut().insert(StepState {
                    run,
                    name,
                    status: fields.status,
                });
            }
            _ => {}
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if !ours(span.metadata()) || span.name() != "step" {
            return;
        }
        let mut fields = Fields::default();
        values.record(&mut fields);
        let Some(status) = fields.status else { return };
        let mut ext = span.extensions_mut();
        let Some(step) = ext.get_mut::<StepState>() else {
            return;
        };
        lock(&step.run).update(&step.name, &status, false);
        step.status = Some(status);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if !ours(span.metadata()) {
            return;
        }
        let ext = span.extensions();
        if let Some(step) = ext.get::<StepState>() {
            let status = step.status.as_deref().unwrap_or("");
            lock(&step.run).update(&step.name, status, true);
        } else if let Some(run) = ext.get::<SharedRun>() {
            let mut run = lock(run);
            run.finished = true;
            run.bar.finish_and_clear();
            self.bars.remove(&run.bar);
        }
    }
}

fn ours(meta: &Metadata<'_>) -> bool {
    meta.target() == TARGET && meta.is_span()
}

/// A [`MakeWriter`] whose writes clear the progress bars, write, and draw the bars again;
/// see [`ProgressLayer::writer`].
#[derive(Debug, Clone)]
pub struct ProgressWriter<M> {
    bars: MultiProgress,
    inner: M,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ProgressWriter<M> {
    type Writer = SuspendingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        SuspendingWriter {
            bars: self.bars.clone(),
            inner: self.inner.make_writer(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SuspendingWriter {
            bars: self.bars.clone(),
            inner: self.inner.make_writer_for(meta),
        }
    }
}

/// One writer made by a [`ProgressWriter`].
#[derive(Debug)]
pub struct SuspendingWriter<W> {
    bars: MultiProgress,
    inner: W,
}

impl<W: Write> Write for SuspendingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.bars.suspend(|| {
            let n = inner.write(buf)?;
            // Out before the bars come back.
            inner.flush()?;
            Ok(n)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl std::fmt::Debug for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepState")
            .field("name", &self.name)
            .field("status", &self.status)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;
    use tracing::field::Empty;
    use tracing_subscriber::prelude::*;

    /// The screen after `f` ran with the layer drawing on an in-memory terminal.
    fn screens(f: impl FnOnce(&dyn Fn() -> String)) {
        let term = InMemoryTerm::new(6, 120);
        let layer =
            ProgressLayer::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())))
                .tick_every(None);
        let subscriber = tracing_subscriber::registry().with(layer.filtered());
        tracing::subscriber::with_default(subscriber, || f(&|| term.contents()));
    }

    #[test]
    fn a_bar_follows_the_spans_of_a_run() {
        screens(|screen| {
            let run = tracing::debug_span!(target: "pipeline", "run",
                pipeline = "digits", run = "digits-1", steps = 4usize,
                status = Empty, duration_s = Empty);
            let step = |name: &str| {
                tracing::debug_span!(target: "pipeline", parent: &run, "step",
                    step = name, status = Empty, duration_s = Empty, cache_key = Empty)
            };
            let loader = step("loader");
            loader.record("status", "cached");
            drop(loader);
            let trainer = step("trainer");
            let scaler = step("scaler");
            trainer.record("status", "running");
            scaler.record("status", "waiting");
            let shown = screen();
            assert!(shown.contains("digits ["), "{shown}");
            assert!(shown.contains("1/4"), "{shown}");
            assert!(
                shown.contains("running: trainer · waiting: scaler · 1 cached"),
                "{shown}"
            );
            scaler.record("status", "running");
            scaler.record("status", "failed");
            drop(scaler);
            trainer.record("status", "executed");
            drop(trainer);
            let skipped = step("evaluator");
            skipped.record("status", "skipped");
            drop(skipped);
            let shown = screen();
            assert!(shown.contains("4/4"), "{shown}");
            assert!(shown.contains("1 cached · 1 failed · 1 skipped"), "{shown}");
            assert!(!shown.contains("running:"), "{shown}");
            drop(run);
            assert_eq!(screen().trim(), "", "the bar is cleared when the run ends");
        });
    }

    #[test]
    fn other_spans_draw_nothing() {
        screens(|screen| {
            let other = tracing::info_span!(target: "elsewhere", "run", steps = 3usize);
            let _in = other.enter();
            tracing::info!(target: "pipeline", "Step `x` has started.");
            assert_eq!(screen().trim(), "");
        });
    }
}
