//! Runs a graph: cache lookups on the coordinating thread, step bodies on scoped worker
//! threads (at most `max_parallelism` at once), records committed as steps finish.
//!
//! The coordinator resolves a node as soon as all its upstream nodes are done: it computes
//! the cache key from the upstream content hashes and reuses a completed execution (no
//! bytes read), or queues the node. When a worker is free for a queued node, the
//! coordinator claims its key in one write transaction (claiming only what is about to
//! run), which either reuses an execution completed meanwhile, claims the key, or finds
//! that another run is computing it. Workers run claimed bodies, store the outputs (blob
//! renamed into place before the execution row commits) and report back.
//!
//! A key held elsewhere is not computed again (single-flight): the coordinator waits for it,
//! off the workers, with one batched check of all such keys per poll (`check_waiting`). A
//! claim is a `LeaseGuard` (`store/guard.rs`): the store handle's heartbeat keeps it alive
//! until its worker commits it, or it is released when dropped.
//!
//! The files: `schedule.rs` keeps ready / waiting / blocked nodes and the values kept for
//! consumers, and never touches the store; `coordinator.rs` drives the run from the
//! schedule and asks the store only through `ledger.rs`, the narrow store-facing part
//! (lookups, claims, waits, recorded rows); `step.rs` runs one step on a
//! worker. This file starts and ends the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{debug, debug_span, error, info, warn, Span};

use crate::artifact::BoundArtifact;
use crate::cluster::Resources;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::key::{Hash128, KeyComponents};
use crate::run::{Reason, StepReport, StepStatus};
use crate::store::{LeaseGuard, RunStatus, Store};
use crate::time;

mod async_steps;
pub(crate) mod backend;
mod coordinator;
pub(crate) mod interrupt;
mod ledger;
mod nodes;
mod remote;
mod schedule;
pub(crate) mod slurm;
pub(crate) mod step;

use coordinator::State;
use ledger::Ledger;

/// A run's override of a step's retries or timeout (`Pipeline::step_retries`,
/// `Pipeline::step_timeout`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PolicyOverride {
    pub(crate) retries: Option<u32>,
    pub(crate) timeout: Option<std::time::Duration>,
}

/// What a run is asked to do besides its graph: the settings of `Pipeline::run`, as a plain
/// struct, so the executor never sees the pipeline builder.
pub(crate) struct RunSettings {
    /// The pipeline value's `enable_cache(..)`, the strongest setting after `step_cache`.
    pub(crate) enable_cache: Option<bool>,
    /// The `#[pipeline(enable_cache = ..)]` attribute, the weakest setting.
    pub(crate) pipeline_cache: Option<bool>,
    /// Per-step overrides for this run, by call name or step name.
    pub(crate) step_cache: HashMap<String, bool>,
    /// Per-step resources for this run, by call name or step name; they replace the
    /// step's own `resources(..)`.
    pub(crate) step_resources: HashMap<String, Resources>,
    /// The pipeline value's `cache_expires(..)`: beats the steps' own `cache_expires`.
    pub(crate) cache_expires: Option<Duration>,
    /// Per-step expiries for this run, by call name or step name: the strongest setting.
    pub(crate) step_cache_expires: HashMap<String, Duration>,
    /// Per-step retries and timeouts for this run, by call name or step name; they replace
    /// the step's own options.
    pub(crate) step_policy: HashMap<String, PolicyOverride>,
    pub(crate) max_parallelism: usize,
    pub(crate) run_name: Option<String>,
    /// Checked before each step starts: once cancelled, no further step starts.
    pub(crate) cancel: Option<crate::cancel::CancelToken>,
    /// Where claimed steps run: `None` on the run's threads, else a worker per step
    /// (`PIPELINE_EXECUTOR=processes`).
    pub(crate) backend: Option<Arc<dyn backend::Backend>>,
}

pub(crate) struct RunOutcome {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) reports: Vec<StepReport>,
    pub(crate) artifacts: HashMap<(NodeId, usize), Arc<BoundArtifact>>,
    pub(crate) duration: Duration,
    pub(crate) failure: Option<Error>,
}

/// An output known to the run: its stored bytes and the execution that wrote them.
#[derive(Clone, Copy)]
pub(crate) struct Produced {
    pub(crate) hash: Hash128,
    pub(crate) size: u64,
    pub(crate) execution: i64,
}

/// A node whose key is known and that must execute.
pub(super) struct Job {
    pub(super) node: NodeId,
    pub(super) key: Hash128,
    pub(super) components: KeyComponents,
    pub(super) reason: Reason,
    /// The earlier execution the miss was compared with, as JSON, for the record.
    pub(super) compared: Option<String>,
    /// Whether the key takes part in single-flight (caching on for this step).
    pub(super) cached: bool,
    /// Whether this run holds the key's claim (taken just before the job runs).
    pub(super) claimed: bool,
    /// The claim, which the worker commits with the step's result (dropped: released).
    pub(super) lease: Option<LeaseGuard>,
    /// Per input: the blob of a parameter's stored form, written when the key was claimed.
    pub(super) params: Vec<Option<Hash128>>,
    /// The step's span, when it was opened before the job was queued (a step that waited
    /// for another run's claim).
    pub(super) span: Option<Span>,
    /// The step's cache expiry as a time (microseconds since the Unix epoch): an execution
    /// that finished before it is not reused when the key is claimed.
    pub(super) not_before_us: Option<i64>,
}

fn new_run_id(started: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{started}-{}-{}-{:?}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::thread::current().id()
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// Runs `graph`, the graph of pipeline `pipeline`, recording it in `store`.
///
/// # Errors
///
/// A graph problem or an unknown step named in `settings` (nothing runs), or a store error
/// that stopped the run. A failed step is not an error here: it is `RunOutcome::failure`.
pub(crate) fn execute(
    pipeline: &str,
    graph: &Graph,
    store: &Store,
    settings: &RunSettings,
) -> Result<RunOutcome> {
    if let Some(problem) = graph.errors.first() {
        return Err(problem.to_error(pipeline));
    }
    let known = |k: &str| graph.nodes.iter().any(|n| n.name == k || n.step == k);
    let unknown = (settings.step_cache.keys())
        .find(|k| !known(k))
        .map(|k| (k, "set caching for"))
        .or_else(|| {
            (settings.step_resources.keys())
                .find(|k| !known(k))
                .map(|k| (k, "set resources for"))
        })
        .or_else(|| {
            (settings.step_cache_expires.keys())
                .find(|k| !known(k))
                .map(|k| (k, "set a cache expiry for"))
        })
        .or_else(|| {
            (settings.step_policy.keys())
                .find(|k| !known(k))
                .map(|k| (k, "set retries or a timeout for"))
        });
    if let Some((unknown, purpose)) = unknown {
        // A map's per-item calls exist only once the run has the list: they take the
        // setting of the call they are copied from.
        let per_item = crate::map::item_call_root(unknown)
            .filter(|root| known(root))
            .map(|root| {
                format!(
                    " (a map's per-item calls are set through the call in its closure, \
                     `{root}`, for every item)"
                )
            })
            .unwrap_or_default();
        return Err(Error::UnknownStep {
            run: pipeline.to_string(),
            what: format!(
                "step `{unknown}` to {purpose}{per_item}; its steps are: {}",
                graph
                    .nodes
                    .iter()
                    .filter(|n| !crate::map::builtin_step(n.step))
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let clock = Instant::now();
    let started = time::now_micros();
    let id = new_run_id(started);
    let name = settings
        .run_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", pipeline, time::run_suffix(started)));
    store.begin_run(&id, pipeline, &name, started)?;
    // The run's span: its steps' spans are its children, whatever thread they run on.
    // DEBUG, so that log lines at INFO look exactly as before (DESIGN §6).
    let run_span = debug_span!(
        target: "pipeline",
        "run",
        pipeline = %pipeline,
        run = %name,
        steps = graph.calls(),
        status = Empty,
        duration_s = Empty,
    );
    let _in_run = run_span.enter();
    // For progress displays (`pipeline::progress`); DEBUG, so the INFO log lines of
    // DESIGN §6 stay exactly as they are.
    debug!(
        target: "pipeline",
        steps = graph.calls(),
        "Pipeline run `{}` has started with {} steps.",
        name,
        graph.calls()
    );

    let ledger = Ledger::new(store, &id, &name, pipeline);
    let nodes = nodes::RunNodes::new(graph);
    let mut state = State::new(&nodes, settings, ledger);
    state.span = run_span.clone();
    let result = std::thread::scope(|scope| state.drive(scope));
    // Every claim was committed by its step, or released when its guard dropped (a run
    // stopped by a store error drops the claims it never ran with its state).
    let not_run = state
        .reports
        .iter()
        .flatten()
        .filter(|r| r.reason == Reason::Cancelled)
        .count();
    let duration = clock.elapsed();

    let failed: Vec<&StepReport> = state
        .reports
        .iter()
        .flatten()
        .filter(|r| r.status == StepStatus::Failed)
        .collect();
    let status = if failed.is_empty() && result.is_ok() {
        if not_run > 0 {
            RunStatus::Cancelled
        } else {
            RunStatus::Completed
        }
    } else {
        RunStatus::Failed
    };
    let finish = store.finish_run(&id, status, duration);
    run_span.record("status", status.to_string());
    run_span.record("duration_s", duration.as_secs_f64());
    // DESIGN §6: a run that failed says so at ERROR, never "has finished".
    match failure_summary(&state.reports, &result, &finish) {
        None if not_run > 0 => warn!(
            target: "pipeline",
            "Pipeline run `{}` was cancelled after {:.3}s: {} steps did not run.",
            name,
            duration.as_secs_f64(),
            not_run
        ),
        None => info!(
            target: "pipeline",
            "Pipeline run `{}` has finished in {:.3}s.",
            name,
            duration.as_secs_f64()
        ),
        Some(summary) => error!(
            target: "pipeline",
            "Pipeline run `{}` has failed after {:.3}s: {}",
            name,
            duration.as_secs_f64(),
            summary
        ),
    }
    result?;
    finish?;
    let first_failed = state
        .reports
        .iter()
        .position(|r| r.as_ref().is_some_and(|r| r.status == StepStatus::Failed));
    let failure = failed.first().map(|first| Error::StepFailed {
        step: first.name.clone(),
        message: first.error.clone().unwrap_or_default(),
        run: name.clone(),
        others: failed.iter().skip(1).map(|r| r.name.clone()).collect(),
        source: first_failed.and_then(|node| state.causes.remove(&node)),
    });
    let failure = failure.or_else(|| {
        (not_run > 0).then(|| Error::Cancelled {
            run: name.clone(),
            not_run,
        })
    });
    // In position order: a map's per-item calls right after its split (`Node::position`).
    let mut reports: Vec<(usize, StepReport)> = std::mem::take(&mut state.reports)
        .into_iter()
        .enumerate()
        .filter_map(|(id, r)| Some((nodes.get(id).position, r?)))
        .collect();
    reports.sort_by_key(|(position, _)| *position);
    let reports = reports.into_iter().map(|(_, r)| r).collect();
    let artifacts = std::mem::take(&mut state.bound);
    // The ledger borrows the run's id and name.
    drop(state);
    Ok(RunOutcome {
        id,
        name,
        reports,
        artifacts,
        duration,
        failure,
    })
}

/// What a failed run's last log line says after "has failed after 0.417s: ", or `None` for
/// a run that succeeded: `1 step failed, 2 skipped.`, and any error that stopped the run.
fn failure_summary(
    reports: &[Option<StepReport>],
    result: &Result<()>,
    finish: &Result<()>,
) -> Option<String> {
    let count = |status: StepStatus| {
        reports
            .iter()
            .flatten()
            .filter(|r| r.status == status)
            .count()
    };
    let (failed, skipped) = (count(StepStatus::Failed), count(StepStatus::Skipped));
    let mut parts = Vec::new();
    if failed > 0 {
        let steps = if failed == 1 { "step" } else { "steps" };
        parts.push(format!("{failed} {steps} failed, {skipped} skipped."));
    }
    for e in [result, finish]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        parts.push(e.to_string());
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, status: StepStatus) -> Option<StepReport> {
        Some(StepReport {
            name: name.into(),
            step: name.into(),
            status,
            duration: Duration::ZERO,
            cache_key: None,
            reason: Reason::FirstExecution,
            error: None,
            execution_id: None,
        })
    }

    #[test]
    fn a_successful_run_has_no_failure_summary() {
        let reports = [
            report("a", StepStatus::Executed),
            report("b", StepStatus::Cached),
        ];
        assert_eq!(failure_summary(&reports, &Ok(()), &Ok(())), None);
    }

    #[test]
    fn failure_summary_counts_failed_and_skipped_steps_and_names_a_fatal_error() {
        let reports = [
            report("a", StepStatus::Failed),
            report("b", StepStatus::Failed),
            report("c", StepStatus::Skipped),
            report("d", StepStatus::Executed),
            None,
        ];
        assert_eq!(
            failure_summary(&reports, &Ok(()), &Ok(())).as_deref(),
            Some("2 steps failed, 1 skipped.")
        );
        let fatal = Err(Error::UnknownRun("r".into()));
        assert_eq!(
            failure_summary(&reports[3..], &fatal, &Ok(())).as_deref(),
            Some("no run `r` in the store; list runs with Store::runs")
        );
        assert_eq!(
            failure_summary(&reports[..1], &Ok(()), &fatal).as_deref(),
            Some("1 step failed, 0 skipped. no run `r` in the store; list runs with Store::runs")
        );
    }
}
