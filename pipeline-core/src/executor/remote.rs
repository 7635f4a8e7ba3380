//! Runs one claimed step on a [`Backend`]: hands its lease to a worker as a token, waits
//! for the worker to end, and reads the row it committed. A worker that ended without
//! committing one is a failed step whose error carries the end of its stderr.

use std::time::Instant;

use tracing::info;

use super::backend::{Backend, JobOutput, JobState, Submission, STDERR_TAIL};
use super::step::{log_step_failure, Failure, Finished, Outcome, Runner};
use super::{Job, Produced};
use crate::graph::Node;
use crate::run::StepStatus;
use crate::worker::{self, JobInput, JobStore};

/// What the coordinator knows of a job before it is handed to a backend.
pub(super) struct Pending {
    /// The call's name, for messages.
    pub(super) label: String,
    /// Its inputs as the worker finds them in the store.
    pub(super) inputs: Vec<JobInput>,
    /// What it asks of the machine that runs it (`resources(..)`, the run's override first).
    pub(super) resources: crate::cluster::Resources,
    /// The run's cancel token: a job that ends unrecorded after it was cancelled was
    /// stopped by the run (Ctrl-C), not by a fault of its own.
    pub(super) cancel: Option<crate::cancel::CancelToken>,
    /// Retries and timeout, which the worker applies.
    pub(super) policy: crate::policy::StepPolicy,
}

/// The reason recorded for a step whose worker process or Slurm job the run's cancel
/// stopped before it recorded anything (the row is skipped, as the run's report has it).
pub(crate) const JOB_CANCELLED: &str = "run cancelled while the step ran; its job was stopped";

/// The source of the failure of a worker that ended without recording its step.
#[derive(Debug, thiserror::Error)]
#[error("the worker ended without recording its step")]
struct Unrecorded;

/// Runs `job` (claimed) on `backend` and reports it as a worker thread would.
pub(super) fn run_remote(
    runner: Runner<'_>,
    backend: &dyn Backend,
    mut job: Job,
    node: &Node,
    pending: Pending,
) -> Finished {
    let clock = Instant::now();
    let claimed_row = job.lease.as_ref().map(|l| l.execution());
    let cancel = pending.cancel.clone();
    let result = match job.lease.take() {
        Some(lease) => dispatch(runner, backend, &job, node, pending, lease),
        None => Err(Failure::from(
            "internal error: a step without a claim was handed to a worker".to_string(),
        )),
    };
    let duration = clock.elapsed();
    let cancelled = cancel.is_some_and(|t| t.is_cancelled())
        && matches!(&result, Err(f) if f.source.as_ref().is_some_and(|s| s.is::<Unrecorded>()));
    if cancelled {
        info!(
            target: "pipeline",
            "Step `{}` was cancelled with the run.",
            node.name
        );
    }
    // A job that ended without recording its step left its claimed row failed with a
    // generic error (or still running): it is recorded as the run's report has it, with
    // what is known of the job's end (Slurm's reason, its stderr's tail), or skipped
    // when the run's cancel stopped it.
    let unrecorded = match &result {
        Err(f) if f.source.as_ref().is_some_and(|s| s.is::<Unrecorded>()) => Some(f),
        _ => None,
    };
    if let (Some(failure), Some(row)) = (unrecorded, claimed_row) {
        let ended = if cancelled {
            runner.store.metadata().end_unrecorded(
                row,
                StepStatus::Skipped,
                Some(JOB_CANCELLED),
                None,
            )
        } else {
            runner.store.metadata().end_unrecorded(
                row,
                StepStatus::Failed,
                None,
                Some(&failure.message),
            )
        };
        if let Err(e) = ended {
            tracing::warn!(
                target: "pipeline",
                "Could not record how step `{}` ended: {e}",
                node.name
            );
        }
    }
    let (result, execution) = match result {
        Err(failure) if cancelled => (Err(failure), claimed_row),
        Ok((outcome, execution)) => {
            info!(
                target: "pipeline",
                "Step `{}` has finished in {:.3}s.",
                node.name,
                duration.as_secs_f64()
            );
            (Ok(outcome), Some(execution))
        }
        Err(failure) => {
            log_step_failure(&node.name, duration, &failure.message);
            (Err(failure), claimed_row)
        }
    };
    Finished {
        node: job.node,
        cancelled,
        result,
        duration,
        execution,
        key: job.key,
        reason: job.reason,
    }
}

fn dispatch(
    runner: Runner<'_>,
    backend: &dyn Backend,
    job: &Job,
    node: &Node,
    pending: Pending,
    lease: crate::store::LeaseGuard,
) -> Result<(Outcome, i64), Failure> {
    let store = runner.store;
    let execution = lease.execution();
    let (metadata, artifacts, password) = store.location();
    let work = worker::Job {
        store: JobStore {
            metadata,
            artifacts,
            lease_ttl_ms: Some(store.lease_ttl().as_millis().try_into().unwrap_or(u64::MAX)),
        },
        run_id: runner.run_id.to_string(),
        node: node.name.clone(),
        position: node.position,
        step: node.code.path.to_string(),
        signature: format!("{:016x}", node.code.signature()),
        cache_key: job.key,
        components: job.components.clone(),
        reason: job.reason.to_string(),
        replace_outputs: super::step::replaces_outputs(&job.reason),
        compared: job.compared.clone(),
        lease: lease.into_token(),
        inputs: pending.inputs,
        outputs: node.outputs.iter().map(|o| o.decl.name.clone()).collect(),
        policy: pending.policy,
    };
    let text = serde_json::to_string(&work).map_err(|e| {
        Failure::from(format!(
            "internal error: the worker job cannot be written: {e}"
        ))
    })?;
    let env = password
        .map(|p| vec![(worker::PIPELINE_WORKER_PASSWORD.to_string(), p)])
        .unwrap_or_default();
    info!(target: "pipeline", "Step `{}` has started.", node.name);
    let submitted = backend.submit(vec![Submission {
        label: pending.label,
        job: text,
        env,
        resources: pending.resources,
    }]);
    let id = match submitted {
        Ok(ids) if ids.len() == 1 => ids[0],
        Ok(_) => {
            return Err(Failure::from(
                "internal error: the backend started no worker".to_string(),
            ))
        }
        Err(e) => {
            // The token was never adopted: free the key for others.
            recover(store);
            return Err(Failure {
                message: format!("could not start a worker ({}): {e}", backend.name()),
                source: Some(Box::new(e)),
            });
        }
    };
    let state = match backend.wait(id) {
        Ok(state) => state,
        Err(e) => {
            // Lost track of it: stop it rather than leave it running unwatched.
            let _ = backend.cancel(&[id]);
            return Err(Failure::from(e));
        }
    };
    let detail = match &state {
        JobState::Ended { detail, .. } => detail.clone(),
        JobState::Active => "is still running".to_string(),
    };
    let output = backend.output(id);
    backend.forget(id);
    let stderr = output
        .as_ref()
        .map(|o| o.stderr_tail(STDERR_TAIL))
        .unwrap_or_default();
    if let Some(output) = &output {
        keep_logs(store, execution, &node.name, output);
    }
    let record = store.execution(execution).map_err(Failure::from)?;
    let with_stderr = |message: String| {
        if stderr.is_empty() {
            message
        } else {
            format!("{message}\nthe worker's stderr ends with:\n{stderr}")
        }
    };
    match record.status {
        StepStatus::Executed => {
            let produced = record
                .outputs
                .iter()
                .map(|o| Produced {
                    hash: o.content_hash,
                    size: o.size,
                    execution,
                })
                .collect();
            Ok((
                Outcome::Executed {
                    values: Vec::new(),
                    produced,
                },
                execution,
            ))
        }
        StepStatus::Failed if record.error.as_deref() != Some(crate::store::CLAIM_ENDED) => {
            let error = record.error.unwrap_or_default();
            Err(Failure::from(with_stderr(error)))
        }
        _ => {
            // The worker died holding the claim: what it left is marked failed, the key
            // is free again.
            recover(store);
            Err(Failure {
                message: with_stderr(format!(
                    "the worker process {detail} before it recorded the step"
                )),
                source: Some(Box::new(Unrecorded)),
            })
        }
    }
}

/// Keeps what the job of `execution` wrote to stdout and stderr in the store
/// (`store/logs.rs`). Best effort: a step's result does not depend on its logs, so a
/// failure to keep them is a warning.
fn keep_logs(store: &crate::store::Store, execution: i64, step: &str, output: &JobOutput) {
    use crate::store::LogStream;
    let streams = [
        (
            LogStream::Stdout,
            output.stdout.kept.as_slice(),
            output.stdout.total,
        ),
        (
            LogStream::Stderr,
            output.stderr.kept.as_slice(),
            output.stderr.total,
        ),
    ];
    if let Err(e) = store.keep_logs(execution, &streams) {
        tracing::warn!(
            target: "pipeline",
            "Could not keep the stdout and stderr of step `{step}` in the store: {e}"
        );
    }
}

/// Marks what dead processes left behind (a worker's claim) failed and free.
fn recover(store: &crate::store::Store) {
    if let Err(e) = store.metadata_store().recover() {
        tracing::debug!(target: "pipeline", "Could not clean up after a worker: {e}");
    }
}
