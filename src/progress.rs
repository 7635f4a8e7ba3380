//! A progress line on the terminal while pipelines run: steps done (of the total when
//! known), the steps running now, and the elapsed time.
//!
//! [`Progress`] wraps the `tracing` subscriber you already use and follows the runtime's
//! own `pipeline` events ("Step `x` has started.", "Using cached version of `x`.", ...).
//! It draws on standard error, and only when both standard output and standard error are
//! terminals: redirected or piped output, CI logs and tests get no progress line. Log lines
//! of the inner subscriber are printed above the progress line, which is redrawn below them.
//!
//! ```no_run
//! let subscriber = pipeline::progress::Progress::new(tracing_subscriber::fmt().finish());
//! tracing::subscriber::set_global_default(subscriber).expect("no other subscriber set");
//! ```
//!
//! The total comes from the DEBUG event each run starts with ("Pipeline run `x` has
//! started with 7 steps."), which the wrapper sees even when the inner subscriber filters
//! DEBUG out; [`Progress::expect_steps`] sets it by hand for the first run.
//!
//! Limit: `tracing::Span::current()` called through this wrapper does not see the inner
//! subscriber's current span (the `tracing` crate does not export the type needed to
//! forward it); spans still enter, exit and show in the inner subscriber's output.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Level, Metadata};

/// The target of the runtime's events.
const TARGET: &str = "pipeline";

/// How often the elapsed time is redrawn while a step runs.
const TICK: Duration = Duration::from_millis(250);

/// A subscriber that draws a progress line and forwards everything to `inner`.
pub struct Progress<S> {
    inner: S,
    state: Arc<Mutex<Line>>,
    draw: bool,
}

impl<S: Subscriber> Progress<S> {
    /// Wraps `inner`; the line is drawn only when standard output and standard error are
    /// terminals.
    pub fn new(inner: S) -> Self {
        let draw = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Progress {
            inner,
            state: Arc::new(Mutex::new(Line::default())),
            draw,
        }
    }

    /// Draws (or not) whatever standard output and standard error are.
    pub fn force(mut self, draw: bool) -> Self {
        self.draw = draw;
        self
    }

    /// The number of steps of the pipelines about to run (`pipeline.len()`), shown as the
    /// total; `0` when unknown.
    pub fn expect_steps(self, total: usize) -> Self {
        self.lock().total = total;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ours(&self, meta: &Metadata<'_>) -> bool {
        // INFO: the step lines; DEBUG: the run's start, which carries the step count.
        self.draw && meta.target() == TARGET && *meta.level() <= Level::DEBUG
    }
}

impl<S: Subscriber> Subscriber for Progress<S> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        let inner = self.inner.register_callsite(meta);
        if self.ours(meta) {
            Interest::always()
        } else {
            inner
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        // Always call the inner filter: some subscribers keep state per call.
        self.inner.enabled(meta) || self.ours(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let inner = self.inner.max_level_hint();
        if self.draw {
            inner.map(|l| l.max(LevelFilter::DEBUG))
        } else {
            inner
        }
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        self.inner.record(span, values)
    }

    fn record_follows_from(&self, span: &span::Id, follows: &span::Id) {
        self.inner.record_follows_from(span, follows)
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.ours(event.metadata()) || self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let forward = |inner: &S| {
            if inner.enabled(meta) && inner.event_enabled(event) {
                inner.event(event);
            }
        };
        if !self.draw {
            return forward(&self.inner);
        }
        let mut line = self.lock();
        let mut err = std::io::stderr().lock();
        if line.shown {
            let _ = err.write_all(b"\r\x1b[2K");
            let _ = err.flush();
            line.shown = false;
        }
        forward(&self.inner);
        if self.ours(meta) {
            let mut message = Message(String::new());
            event.record(&mut message);
            if line.update(&message.0, Instant::now()) {
                start_ticker(&self.state);
            }
        }
        if line.active() {
            let _ = write!(err, "{}", line.render(Instant::now()));
            let _ = err.flush();
            line.shown = true;
        }
    }

    fn enter(&self, span: &span::Id) {
        self.inner.enter(span)
    }

    fn exit(&self, span: &span::Id) {
        self.inner.exit(span)
    }

    fn clone_span(&self, id: &span::Id) -> span::Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: span::Id) -> bool {
        self.inner.try_close(id)
    }
}

/// Redraws the elapsed time while a run is active; ends with the subscriber.
fn start_ticker(state: &Arc<Mutex<Line>>) {
    let weak: Weak<Mutex<Line>> = Arc::downgrade(state);
    let _ = std::thread::Builder::new()
        .name("pipeline-progress".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(state) = weak.upgrade() else { return };
            let mut line = state.lock().unwrap_or_else(|p| p.into_inner());
            if !line.active() {
                line.ticking = false;
                return;
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", line.render(Instant::now()));
            let _ = err.flush();
            line.shown = true;
        });
}

/// The event's `message` field.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// What the progress line shows, fed with the runtime's event messages.
#[derive(Debug, Default)]
pub(crate) struct Line {
    total: usize,
    started: Option<Instant>,
    running: Vec<String>,
    executed: usize,
    cached: usize,
    failed: usize,
    shown: bool,
    ticking: bool,
}

/// The name between the first pair of backticks.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

impl Line {
    /// Applies one event message; returns whether a ticker should start.
    pub(crate) fn update(&mut self, message: &str, now: Instant) -> bool {
        let Some(name) = quoted(message) else {
            return false;
        };
        if let Some(total) = message
            .strip_prefix("Pipeline run ")
            .and_then(|rest| rest.rsplit_once(" has started with "))
            .and_then(|(_, n)| n.strip_suffix(" steps.")?.parse().ok())
        {
            // A run begins and says how many steps it has.
            *self = Line {
                total,
                ticking: self.ticking,
                ..Line::default()
            };
            return false;
        }
        if message.starts_with("Pipeline run ") {
            // The run is over: forget it, keep the expected total for the next one.
            *self = Line {
                total: self.total,
                ticking: self.ticking,
                ..Line::default()
            };
            return false;
        }
        self.started.get_or_insert(now);
        if message.starts_with("Step ") && message.ends_with(" has started.") {
            self.running.push(name.to_string());
        } else if message.starts_with("Using cached version of ") {
            self.cached += 1;
        } else if message.starts_with("Step ") && message.contains(" has finished in ") {
            self.finish(name);
            self.executed += 1;
        } else if message.starts_with("Step ") && message.contains(" failed after ") {
            self.finish(name);
            self.failed += 1;
        }
        let start = !self.ticking && self.active();
        self.ticking |= start;
        start
    }

    fn finish(&mut self, name: &str) {
        if let Some(i) = self.running.iter().position(|r| r == name) {
            self.running.remove(i);
        }
    }

    fn active(&self) -> bool {
        self.started.is_some()
    }

    fn done(&self) -> usize {
        self.executed + self.cached + self.failed
    }

    /// `[3/7] 0:04 · running: svc_trainer, evaluator · 2 cached`
    pub(crate) fn render(&self, now: Instant) -> String {
        let elapsed = self
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default()
            .as_secs();
        let mut text = if self.total > 0 {
            format!("[{}/{}]", self.done(), self.total)
        } else {
            format!("[{} done]", self.done())
        };
        text.push_str(&format!(" {}:{:02}", elapsed / 60, elapsed % 60));
        if !self.running.is_empty() {
            text.push_str(" · running: ");
            text.push_str(&self.running.join(", "));
        }
        if self.cached > 0 {
            text.push_str(&format!(" · {} cached", self.cached));
        }
        if self.failed > 0 {
            text.push_str(&format!(" · {} failed", self.failed));
        }
        // Stay on one line of a narrow terminal.
        if text.chars().count() > 100 {
            text = text.chars().take(99).collect::<String>() + "…";
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_runtime_messages() {
        let t0 = Instant::now();
        let mut line = Line {
            total: 4,
            ..Line::default()
        };
        assert!(line.update("Using cached version of `loader`.", t0));
        assert!(!line.update("Step `trainer` has started.", t0));
        line.update("Step `scaler` has started.", t0);
        assert_eq!(
            line.render(t0 + Duration::from_secs(65)),
            "[1/4] 1:05 · running: trainer, scaler · 1 cached"
        );
        line.update("Step `trainer` has finished in 0.014s.", t0);
        line.update("Step `scaler` failed after 0.201s: boom `x`", t0);
        assert_eq!(line.render(t0), "[3/4] 0:00 · 1 cached · 1 failed");
        line.update("Pipeline run `p-2026` has finished in 0.417s.", t0);
        assert!(!line.active());
        assert_eq!(line.total, 4);
        line.total = 0;
        line.update("Step `a` has started.", t0);
        assert_eq!(line.render(t0), "[0 done] 0:00 · running: a");
        // A run's start event carries its step count.
        line.update("Pipeline run `p-2026` has started with 7 steps.", t0);
        assert_eq!(line.total, 7);
        assert!(!line.active());
        line.update("Step `b` has started.", t0);
        assert_eq!(line.render(t0), "[0/7] 0:00 · running: b");
        assert_eq!(quoted("no quotes"), None);
    }
}
