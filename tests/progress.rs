//! The runtime's spans and the progress bars that read them: a run and each of its steps
//! have a span with the fields the contract names, and a real pipeline run draws a bar that
//! counts its steps, names the one running and the cached ones, and is cleared when the
//! run ends. The terminal is an in-memory one; steps look at it while they run.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use indicatif::InMemoryTerm;
use pipeline::prelude::*;
use pipeline::progress::{ProgressDrawTarget, ProgressLayer};
use tracing::field::{Field, Visit};
use tracing::span;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// A span's name and its fields, as they were when it closed.
type Closed = (String, BTreeMap<String, String>);

/// Every `pipeline` span, recorded when it closes.
static CLOSED: Mutex<Vec<Closed>> = Mutex::new(Vec::new());

/// A layer that records the fields of the spans it sees.
struct Recorder;

struct Values(BTreeMap<String, String>);

impl Visit for Values {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut values = Values(BTreeMap::new());
        attrs.record(&mut values);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(values);
        }
    }

    fn on_record(&self, id: &span::Id, record: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(values) = span.extensions_mut().get_mut::<Values>() {
                record.record(values);
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(values) = span.extensions().get::<Values>() {
                let entry = (span.name().to_string(), values.0.clone());
                CLOSED.lock().unwrap().push(entry);
            }
        }
    }
}

/// The terminal the bars are drawn on, behind the global subscriber (steps run on worker
/// threads, which see only the global one).
fn term() -> &'static InMemoryTerm {
    static TERM: OnceLock<InMemoryTerm> = OnceLock::new();
    TERM.get_or_init(|| {
        let term = InMemoryTerm::new(8, 120);
        let layer =
            ProgressLayer::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())))
                .tick_every(None);
        let pipeline_spans = Targets::new().with_target("pipeline", tracing::Level::DEBUG);
        tracing_subscriber::registry()
            .with(layer.filtered())
            .with(Recorder.with_filter(pipeline_spans))
            .init();
        term
    })
}

/// What the terminal showed while each step body ran.
static SCREENS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn look() {
    SCREENS.lock().unwrap().push(term().contents());
}

#[step]
fn pg_source(n: u32) -> u32 {
    n
}

#[step]
fn pg_watch(x: &u32) -> u32 {
    look();
    x + 1
}

#[step]
fn pg_last(x: &u32) -> u32 {
    look();
    x * 2
}

#[pipeline]
fn watched(n: u32) -> Artifact<u32> {
    let a = pg_source(n);
    let b = pg_watch(&a);
    pg_last(&b)
}

#[test]
fn a_run_and_its_steps_have_spans_that_draw_a_bar() {
    term();
    let dir = tempfile::tempdir().unwrap();
    let p = watched(20)
        .store_path(dir.path().join("store"))
        .max_parallelism(1);

    let run = p.run().unwrap();
    assert_eq!(run.output().load().unwrap(), 42);
    let closed = std::mem::take(&mut *CLOSED.lock().unwrap());
    let (steps, runs): (Vec<_>, Vec<_>) = closed.iter().partition(|(name, _)| name == "step");
    assert_eq!(runs.len(), 1, "{closed:#?}");
    let fields = &runs[0].1;
    assert_eq!(fields["pipeline"], "watched");
    assert_eq!(fields["run"], run.name());
    assert_eq!(fields["steps"], "3");
    assert_eq!(fields["status"], "completed");
    assert!(fields["duration_s"].parse::<f64>().is_ok(), "{fields:?}");
    assert_eq!(steps.len(), 3, "{closed:#?}");
    for (_, fields) in steps {
        let report = run.step(&fields["step"]).unwrap();
        assert_eq!(fields["status"], "executed", "{fields:?}");
        assert_eq!(
            Some(fields["cache_key"].as_str()),
            report.cache_key().map(|k| k.to_string()).as_deref()
        );
        assert!(fields["duration_s"].parse::<f64>().is_ok(), "{fields:?}");
    }
    let screens = std::mem::take(&mut *SCREENS.lock().unwrap());
    assert_eq!(screens.len(), 2, "{screens:#?}");
    for (screen, (done, running)) in screens.iter().zip([(1, "pg_watch"), (2, "pg_last")]) {
        assert!(screen.contains("watched ["), "{screen}");
        assert!(screen.contains(&format!("{done}/3")), "{screen}");
        assert!(screen.contains(&format!("running: {running}")), "{screen}");
        assert!(!screen.contains("cached"), "{screen}");
    }
    assert_eq!(term().contents().trim(), "", "cleared when the run ends");

    // Run again with the last step uncached: the first two are counted as cached.
    let run = p.clone().step_enable_cache("pg_last", false).run().unwrap();
    assert_eq!(run.step("pg_watch").unwrap().status(), StepStatus::Cached);
    let closed = std::mem::take(&mut *CLOSED.lock().unwrap());
    let statuses: Vec<(&str, &str)> = closed
        .iter()
        .filter(|(name, _)| name == "step")
        .map(|(_, f)| (f["step"].as_str(), f["status"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("pg_source", "cached"),
            ("pg_watch", "cached"),
            ("pg_last", "executed")
        ]
    );
    let screens = std::mem::take(&mut *SCREENS.lock().unwrap());
    assert_eq!(screens.len(), 1, "{screens:#?}");
    assert!(
        screens[0].contains("2/3") && screens[0].contains("running: pg_last · 2 cached"),
        "{}",
        screens[0]
    );
    assert_eq!(term().contents().trim(), "");
}
