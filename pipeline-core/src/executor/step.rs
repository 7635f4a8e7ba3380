//! Runs one step on a worker thread: executes its body, writes each output through its
//! cacher into the store (blob renamed into place, then its sidecar), and records the
//! execution row. Knows nothing of the schedule: the coordinator hands it a [`Job`] with the
//! step's inputs resolved, and hears back a [`Finished`].

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use tracing::field::{display, Empty};
use tracing::{debug_span, error, info, warn, Span};

use super::{Job, Produced};
use crate::cancel::CancelToken;
use crate::context::{self, StepContext as UserContext};
use crate::error::{BoxError, Error};
use crate::graph::{Node, NodeId, Resolved, StepContext, Value};
use crate::key::{Hash128, KeyComponents};
use crate::policy::{human_duration, StepPolicy};
use crate::run::{Reason, StepStatus};
use crate::store::{
    Attempt, Completion, ExecutionDetails, ExecutionRow, InputRow, LeaseGuard, OutputRow, Sidecar,
    Store,
};
use crate::time;

/// What one worker needs of the run: the store and the run it records into.
#[derive(Clone, Copy)]
pub(super) struct Runner<'a> {
    pub(super) store: &'a Store,
    pub(super) run_id: &'a str,
}

/// What a worker reports back.
pub(super) struct Finished {
    pub(super) node: NodeId,
    /// The run was interrupted and the step's job cancelled before it recorded anything:
    /// the step counts as not run (skipped, cancelled), not as failed.
    pub(super) cancelled: bool,
    pub(super) result: std::result::Result<Outcome, Failure>,
    pub(super) duration: Duration,
    pub(super) execution: Option<i64>,
    pub(super) key: Hash128,
    pub(super) reason: Reason,
}

/// Why a step failed: the message its report and the log show, and the error behind it
/// (the source of [`Error::StepFailed`]; `None` for a panic).
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            source: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl From<crate::graph::StepError> for Failure {
    fn from(e: crate::graph::StepError) -> Self {
        Failure {
            message: e.message,
            source: e.source,
        }
    }
}

pub(crate) enum Outcome {
    /// The body ran; its values stay in memory for consumers.
    Executed {
        values: Vec<Value>,
        produced: Vec<Produced>,
    },
}

/// The ERROR event of a failed step (DESIGN §6), so `RUST_LOG=pipeline=warn` still shows it.
pub(super) fn log_step_failure(name: &str, duration: Duration, message: &str) {
    error!(
        target: "pipeline",
        "Step `{}` failed after {:.3}s: {}",
        name,
        duration.as_secs_f64(),
        message
    );
}

pub(super) fn output_rows(
    node: &Node,
    produced: &[Produced],
    metadata: &[Option<serde_json::Value>],
) -> Vec<OutputRow> {
    produced
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p, node.output(i)?)))
        .map(|(i, p, spec)| OutputRow {
            name: node.output_name(i).unwrap_or_default(),
            hash: p.hash,
            size: p.size,
            type_name: spec.decl.type_name.clone(),
            cacher: spec.decl.cacher.clone(),
            cacher_version: spec.decl.cacher_version,
            metadata: metadata.get(i).cloned().flatten(),
        })
        .collect()
}

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

pub(super) type BodyResult =
    std::result::Result<(Vec<Value>, Vec<Produced>, Vec<Option<serde_json::Value>>), Failure>;

/// Calls a step body with its step context current, on this thread, or on a thread of its
/// own when the step has a timeout: a thread cannot be stopped safely, so on timeout the
/// step is given up (recorded failed, its output never used) and the thread is left to
/// end on its own. A worker process exits after it, which ends the thread for real.
fn call_body(
    node: &Node,
    inputs: Vec<Option<Resolved>>,
    ctx: &UserContext,
    timeout: Option<Duration>,
) -> std::result::Result<Vec<Value>, Failure> {
    let Some(limit) = timeout else {
        let _current = context::enter(ctx.clone());
        return match catch_unwind(AssertUnwindSafe(|| {
            (node.body)(&mut StepContext { inputs })
        })) {
            Ok(r) => r.map_err(Failure::from),
            Err(payload) => Err(panic_message(payload.as_ref()).into()),
        };
    };
    let body = std::sync::Arc::clone(&node.body);
    let ctx = ctx.clone();
    let span = Span::current();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("step {}", node.name))
        .spawn(move || {
            let _current = context::enter(ctx);
            let result = span.in_scope(|| {
                match catch_unwind(AssertUnwindSafe(|| body(&mut StepContext { inputs }))) {
                    Ok(r) => r.map_err(Failure::from),
                    Err(payload) => Err(panic_message(payload.as_ref()).into()),
                }
            });
            // The receiver is gone when the step timed out: the result is dropped.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("could not start a thread for the step: {e}").into());
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Failure {
            message: format!("timed out after {}", human_duration(limit)),
            source: None,
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("the step's thread ended without a result"
                .to_string()
                .into())
        }
    }
}

/// Runs a step body and stores its outputs; a panic anywhere becomes an error message.
#[allow(clippy::too_many_arguments)]
fn execute_body(
    store: &Store,
    run_id: &str,
    key: Hash128,
    lease: Option<&LeaseGuard>,
    node: &Node,
    inputs: Vec<Option<Resolved>>,
    replace: bool,
    ctx: &UserContext,
    timeout: Option<Duration>,
) -> BodyResult {
    let values = call_body(node, inputs, ctx, timeout)?;
    save_outputs(store, run_id, key, lease, node, values, replace, ctx)
}

/// Stores the output values of a step body that returned (blob, then sidecar, each
/// output), with the output metadata its context logged; a panic becomes an error message.
#[allow(clippy::too_many_arguments)]
pub(super) fn save_outputs(
    store: &Store,
    run_id: &str,
    key: Hash128,
    lease: Option<&LeaseGuard>,
    node: &Node,
    values: Vec<Value>,
    replace: bool,
    ctx: &UserContext,
) -> BodyResult {
    let mut logged_outputs = ctx.take_output_metadata();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut produced = Vec::with_capacity(values.len());
        let mut metadata = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let Some(spec) = node.output(i) else {
                return Err(format!(
                    "internal error: step `{}` returned {} values for {} outputs",
                    node.name,
                    values.len(),
                    node.outputs.len()
                )
                .into());
            };
            let output_name = node.output_name(i).unwrap_or_default();
            // A step executed again because its stored output was found damaged: its
            // output replaces the stored bytes (which may be the same name, corrupt).
            let mut writer = store.blob_writer_for(replace)?;
            match spec.save(value.as_ref(), &mut writer) {
                Ok(meta) => metadata.push(context::merge_output_metadata(
                    meta,
                    logged_outputs.remove(spec.decl.name.as_str()),
                )),
                Err(e) => {
                    writer.abandon();
                    return Err(Error::Cacher {
                        cacher: spec.decl.cacher.clone(),
                        action: "save",
                        what: format!("output `{}`", spec.decl.name),
                        source: e,
                    }
                    .into());
                }
            }
            // A claimed step's lease holds the blob before it is in place (gc spares it).
            let (hash, size) = match lease {
                Some(lease) => store.finish_held_blob(writer, lease)?,
                None => store.finish_blob(writer)?,
            };
            let sidecar = Sidecar {
                size,
                type_name: &spec.decl.type_name,
                cacher: &spec.decl.cacher,
                cacher_version: spec.decl.cacher_version,
                metadata: metadata.last().cloned().flatten(),
                run_id,
                step: &node.name,
                output: &output_name,
                cache_key: Some(key),
            };
            store.write_sidecar(hash, &sidecar)?;
            produced.push(Produced {
                hash,
                size,
                execution: 0,
            });
        }
        Ok((produced, metadata))
    }));
    match outcome {
        Ok(Ok((produced, metadata))) => Ok((values, produced, metadata)),
        Ok(Err(failure)) => Err(failure),
        Err(payload) => Err(panic_message(payload.as_ref()).into()),
    }
}

/// Waits `delay` before a retry; `true` when the run was cancelled meanwhile (Ctrl-C), so
/// the retry is given up.
fn wait_for_retry(delay: Duration, cancel: Option<&CancelToken>) -> bool {
    let until = Instant::now() + delay;
    loop {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// The span of one step, a child of the run's span `run` (DEBUG, target `pipeline`, like
/// the run's). `status` moves through `waiting` (for another process computing the same
/// key) and `running` to the step's final status, recorded with `duration_s` when the
/// step is done.
pub(super) fn step_span(run: &Span, node: &Node, key: Option<Hash128>) -> Span {
    let span = debug_span!(
        target: "pipeline",
        parent: run,
        "step",
        step = %node.name,
        status = Empty,
        duration_s = Empty,
        cache_key = Empty,
    );
    if let Some(key) = key.filter(|_| !span.is_disabled()) {
        span.record("cache_key", display(key));
    }
    span
}

/// Records a step's final status and duration on its span.
pub(super) fn end_step_span(span: &Span, status: StepStatus, duration: Duration) {
    span.record("status", status.as_str());
    span.record("duration_s", duration.as_secs_f64());
}

impl Finished {
    /// The status the step ends with.
    pub(super) fn status(&self) -> StepStatus {
        match self.result {
            Ok(Outcome::Executed { .. }) => StepStatus::Executed,
            Err(_) if self.cancelled => StepStatus::Skipped,
            Err(_) => StepStatus::Failed,
        }
    }
}

/// Runs one step body on a worker thread, stores its outputs and records the execution.
pub(super) fn run_step(
    runner: Runner<'_>,
    mut job: Job,
    node: &Node,
    inputs: Vec<Option<Resolved>>,
    input_rows: Vec<InputRow>,
    policy: StepPolicy,
    cancel: Option<&CancelToken>,
) -> Finished {
    let commit = Commit {
        store: runner.store,
        run_id: runner.run_id,
        position: node.position,
        key: job.key,
        components: &job.components,
        reason: job.reason.to_string(),
        replace_outputs: replaces_outputs(&job.reason),
        compared: job.compared.clone(),
        lease: job.lease.take(),
        policy,
        cancel,
    };
    let done = execute_and_commit(commit, node, inputs, input_rows);
    Finished {
        node: job.node,
        cancelled: false,
        result: done.result,
        duration: done.duration,
        execution: done.execution,
        key: job.key,
        reason: job.reason,
    }
}

/// What recording one execution needs besides the node: the run, the call's position and
/// key, why it executes, and its claim (`None` when caching is off for it).
pub(crate) struct Commit<'a> {
    pub(crate) store: &'a Store,
    pub(crate) run_id: &'a str,
    pub(crate) position: usize,
    pub(crate) key: Hash128,
    pub(crate) components: &'a KeyComponents,
    pub(crate) reason: String,
    /// The step runs again because its stored output was found damaged: its outputs
    /// replace the stored bytes (which may have the same name, corrupt).
    pub(crate) replace_outputs: bool,
    pub(crate) compared: Option<String>,
    pub(crate) lease: Option<LeaseGuard>,
    /// Retries and timeout, as the run resolved them.
    pub(crate) policy: StepPolicy,
    /// The run's cancellation: a retry is not started once it is cancelled.
    pub(crate) cancel: Option<&'a CancelToken>,
}

/// Whether a step executed for `reason` must replace its stored outputs rather than keep
/// bytes already stored under their names: they were found missing, corrupt or
/// undecodable.
pub(crate) fn replaces_outputs(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::BlobCorrupt { .. } | Reason::BlobMissing { .. } | Reason::Undecodable { .. }
    )
}

/// What [`execute_and_commit`] did.
pub(crate) struct Committed {
    pub(crate) result: std::result::Result<Outcome, Failure>,
    pub(crate) duration: Duration,
    pub(crate) execution: Option<i64>,
}

/// Runs a step body, stores its outputs and records the execution: under its lease when
/// claimed (a thread of the run, or a worker process that adopted the lease).
pub(crate) fn execute_and_commit(
    commit: Commit<'_>,
    node: &Node,
    inputs: Vec<Option<Resolved>>,
    input_rows: Vec<InputRow>,
) -> Committed {
    let started = started(node);
    let policy = commit.policy;
    let attempts_allowed = policy.get_retries().saturating_add(1);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut attempt = 1;
    let mut inputs = inputs;
    // The store handle's heartbeat keeps the claim alive while the body runs, retries and
    // their delays included.
    let (outcome, logged) = loop {
        // Inputs for a retry are prepared before the body may consume them.
        let again = (attempt < attempts_allowed).then(|| inputs_again(node, &inputs));
        let ctx = attempt_context(node, commit.run_id, attempt);
        let attempt_started = time::now_micros();
        let attempt_clock = Instant::now();
        let outcome = execute_body(
            commit.store,
            commit.run_id,
            commit.key,
            commit.lease.as_ref(),
            node,
            std::mem::take(&mut inputs),
            commit.replace_outputs,
            &ctx,
            policy.get_timeout(),
        );
        context::remove_scratch(&ctx);
        let logged = ctx.take_logged();
        let record = |error: Option<&Failure>| Attempt {
            attempt,
            started_at_us: attempt_started,
            duration: attempt_clock.elapsed(),
            error: error.map(|f| f.message.clone()),
        };
        match (outcome, again) {
            (Err(failure), Some(next)) => {
                attempts.push(record(Some(&failure)));
                let delay = retry_delay(node, &policy, attempt, &failure);
                if wait_for_retry(delay, commit.cancel) {
                    break (Err(failure), logged);
                }
                inputs = next;
                attempt += 1;
            }
            (outcome, _) => {
                if attempt > 1 {
                    attempts.push(record(outcome.as_ref().err()));
                }
                break (outcome, logged);
            }
        }
    };
    record_execution(
        commit,
        node,
        input_rows,
        Ended {
            started,
            attempts,
            logged,
            outcome,
        },
    )
}

/// When a step's execution started, for its row and its duration.
pub(super) struct Started {
    pub(super) at_us: i64,
    pub(super) clock: Instant,
}

/// Marks a step as started: its span's status and the INFO line.
pub(super) fn started(node: &Node) -> Started {
    Span::current().record("status", "running");
    info!(target: "pipeline", "Step `{}` has started.", node.name);
    Started {
        at_us: time::now_micros(),
        clock: Instant::now(),
    }
}

/// The inputs of a step's next attempt, prepared before this one may consume them.
pub(super) fn inputs_again(node: &Node, inputs: &[Option<Resolved>]) -> Vec<Option<Resolved>> {
    inputs
        .iter()
        .zip(&node.inputs)
        .map(|(r, spec)| r.as_ref().map(|r| r.again(spec)))
        .collect()
}

/// The step context of one attempt of `node`.
pub(super) fn attempt_context(node: &Node, run_id: &str, attempt: u32) -> UserContext {
    let output_names = node.outputs.iter().map(|o| o.decl.name.clone()).collect();
    UserContext::new(&node.name, run_id, attempt, output_names)
}

/// The delay before the attempt after `attempt` failed with `failure`, said in the retry's
/// WARN line.
pub(super) fn retry_delay(
    node: &Node,
    policy: &StepPolicy,
    attempt: u32,
    failure: &Failure,
) -> Duration {
    let delay = policy.delay(attempt);
    warn!(
        target: "pipeline",
        "Step `{}` failed (attempt {} of {}), retrying in {}: {}",
        node.name,
        attempt,
        policy.get_retries().saturating_add(1),
        human_duration(delay),
        failure.message
    );
    delay
}

/// How a step's attempts ended: the last one's outcome, the failed ones before it (all of
/// them when there were several), and what the context logged.
pub(super) struct Ended {
    pub(super) started: Started,
    pub(super) attempts: Vec<Attempt>,
    pub(super) logged: context::Logged,
    pub(super) outcome: BodyResult,
}

/// Records the execution of a step whose attempts `ended`: commits its row, outputs and
/// the end of its lease (or records the row, caching off), and logs how it finished.
pub(super) fn record_execution(
    commit: Commit<'_>,
    node: &Node,
    input_rows: Vec<InputRow>,
    ended: Ended,
) -> Committed {
    let Commit {
        store,
        run_id,
        position,
        key,
        components,
        reason,
        compared,
        mut lease,
        ..
    } = commit;
    let Ended {
        started,
        attempts,
        logged,
        outcome,
    } = ended;
    let started_at_us = started.at_us;
    let clock = started.clock;
    let details = ExecutionDetails {
        attempts,
        metadata: logged.metadata,
        metrics: logged.metrics,
    };

    let duration = clock.elapsed();
    let (status, error, produced, metadata, values) = match outcome {
        Ok((values, produced, metadata)) => {
            (StepStatus::Executed, None, produced, metadata, values)
        }
        Err(failure) => (
            StepStatus::Failed,
            Some(failure),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ),
    };
    let row = ExecutionRow {
        details,
        run_id,
        name: &node.name,
        step: node.step,
        position,
        status,
        cache_key: Some(key),
        components,
        reason: Some(reason),
        error: error.as_ref().map(|f| f.message.clone()),
        reused: None,
        compared,
        started_at_us,
        duration,
        outputs: output_rows(node, &produced, &metadata),
        inputs: input_rows,
        outputs_of: None,
        lease_holder: None,
    };
    // A claimed step commits its row, outputs and the end of its lease in one transaction
    // (the guard releases the lease if that fails); an unclaimed one (caching off) records.
    let recorded = match lease.take() {
        Some(lease) => lease.commit(Completion::of(&row)).map(|id| vec![id]),
        None => store.record(std::slice::from_ref(&row)),
    };
    let (execution, error) = match (recorded, error) {
        (Ok(ids), error) => (ids.first().copied(), error),
        (Err(e), None) => (
            None,
            Some(Failure {
                message: format!("could not record the execution: {e}"),
                source: Some(Box::new(e)),
            }),
        ),
        (Err(_), Some(error)) => (None, Some(error)),
    };
    let result = match error {
        None => {
            info!(
                target: "pipeline",
                "Step `{}` has finished in {:.3}s.",
                node.name,
                duration.as_secs_f64()
            );
            let produced = produced
                .into_iter()
                .map(|p| Produced {
                    execution: execution.unwrap_or(0),
                    ..p
                })
                .collect();
            Ok(Outcome::Executed { values, produced })
        }
        Some(failure) => {
            log_step_failure(&node.name, duration, &failure.message);
            Err(failure)
        }
    };
    Committed {
        result,
        duration,
        execution,
    }
}
