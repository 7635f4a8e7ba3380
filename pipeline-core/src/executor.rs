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
//! off the workers, with one batched check of all such keys per poll (`check_waiting`). One
//! heartbeat thread per run keeps every claim the run holds alive until it commits or is
//! released.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tracing::field::{display, Empty};
use tracing::{debug, debug_span, error, info, warn, Span};

use crate::artifact::BoundArtifact;
use crate::error::{BoxError, Error, Result};
use crate::graph::{InputMode, InputSource, Node, NodeId, Resolved, StepContext, Value};
use crate::key::{signature_hex, Hash128, InputComponent, KeyComponents, KEY_FORMAT_VERSION};
use crate::pipeline::PipelineDef;
use crate::run::{Reason, StepReport, StepStatus};
use crate::store::{
    Begin, Call, Candidates, Completion, Damage, ExecutionRow, Holder, InputRow, LeaseGuard,
    Lookup, OutputRow, RunStatus, Sidecar, StepOutput, Store,
};
use crate::time;

pub(crate) struct RunSettings {
    pub(crate) enable_cache: Option<bool>,
    /// Per-step overrides for this run, by call name or step name.
    pub(crate) step_cache: HashMap<String, bool>,
    pub(crate) max_parallelism: usize,
    pub(crate) run_name: Option<String>,
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
struct Produced {
    hash: Hash128,
    size: u64,
    execution: i64,
}

/// A node whose key is known and that must execute.
struct Job {
    node: NodeId,
    key: Hash128,
    components: KeyComponents,
    reason: Reason,
    /// The earlier execution the miss was compared with, as JSON, for the record.
    compared: Option<String>,
    /// Whether the key takes part in single-flight (caching on for this step).
    cached: bool,
    /// Whether this run holds the key's claim (taken just before the job runs).
    claimed: bool,
    /// The claim, which the worker commits with the step's result (dropped: released).
    lease: Option<LeaseGuard>,
    /// The step's span, when it was opened before the job was queued (a step that waited
    /// for another run's claim).
    span: Option<Span>,
}

/// A node whose key another run holds: the coordinator waits for that claim to end, with
/// one batched check per poll for all such nodes (`State::check_waiting`), and never on a
/// worker thread.
struct Waiting {
    /// Its `span` is open, with status `waiting`.
    job: Job,
    /// Who held the key when last looked.
    holder: Holder,
    /// Since the node was decided.
    clock: Instant,
}

/// What a worker reports back.
struct Finished {
    node: NodeId,
    result: std::result::Result<Outcome, Failure>,
    duration: Duration,
    execution: Option<i64>,
    key: Hash128,
    reason: Reason,
}

/// Why a step failed: the message its report and the log show, and the error behind it
/// (the source of [`Error::StepFailed`]; `None` for a panic).
struct Failure {
    message: String,
    source: Option<BoxError>,
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

enum Outcome {
    /// The body ran; its values stay in memory for consumers.
    Executed {
        values: Vec<Value>,
        produced: Vec<Produced>,
    },
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

pub(crate) fn execute(
    def: &PipelineDef,
    store: &Store,
    settings: &RunSettings,
) -> Result<RunOutcome> {
    let graph = &def.graph;
    if let Some(problem) = graph.errors.first() {
        return Err(problem.to_error(&def.name));
    }
    if let Some(unknown) = settings.step_cache.keys().find(|k| {
        !graph
            .nodes
            .iter()
            .any(|n| &n.name == *k || n.step == k.as_str())
    }) {
        return Err(Error::UnknownStep {
            run: def.name.clone(),
            what: format!(
                "step `{unknown}` to set caching for; its steps are: {}",
                graph
                    .nodes
                    .iter()
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
        .unwrap_or_else(|| format!("{}-{}", def.name, time::run_suffix(started)));
    store.begin_run(&id, &def.name, &name, started)?;
    // The run's span: its steps' spans are its children, whatever thread they run on.
    // DEBUG, so that log lines at INFO look exactly as before (DESIGN §6).
    let run_span = debug_span!(
        target: "pipeline",
        "run",
        pipeline = %def.name,
        run = %name,
        steps = graph.nodes.len(),
        status = Empty,
        duration_s = Empty,
    );
    let _in_run = run_span.enter();
    // For progress displays (`pipeline::progress`); DEBUG, so the INFO log lines of
    // DESIGN §6 stay exactly as they are.
    debug!(
        target: "pipeline",
        steps = graph.nodes.len(),
        "Pipeline run `{}` has started with {} steps.",
        name,
        graph.nodes.len()
    );

    let mut state = State::new(def, store, settings, &id, &name);
    state.span = run_span.clone();
    let result = std::thread::scope(|scope| state.drive(scope));
    // Every claim was committed by its step, or released when its guard dropped (a run
    // stopped by a store error drops the claims it never ran with its state).
    let duration = clock.elapsed();

    let failed: Vec<&StepReport> = state
        .reports
        .iter()
        .flatten()
        .filter(|r| r.status == StepStatus::Failed)
        .collect();
    let status = if failed.is_empty() && result.is_ok() {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    let finish = store.finish_run(&id, status, duration);
    run_span.record("status", status.as_str());
    run_span.record("duration_s", duration.as_secs_f64());
    // DESIGN §6: a run that failed says so at ERROR, never "has finished".
    match failure_summary(&state.reports, &result, &finish) {
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
    let reports = state.reports.into_iter().flatten().collect();
    let artifacts = state.bound;
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

/// The ERROR event of a failed step (DESIGN §6), so `RUST_LOG=pipeline=warn` still shows it.
fn log_step_failure(name: &str, duration: Duration, message: &str) {
    error!(
        target: "pipeline",
        "Step `{}` failed after {:.3}s: {}",
        name,
        duration.as_secs_f64(),
        message
    );
}

struct State<'a> {
    def: &'a PipelineDef,
    store: &'a Store,
    settings: &'a RunSettings,
    run_id: &'a str,
    run_name: &'a str,
    /// Per node: how many distinct upstream nodes are not done yet.
    waiting_on: Vec<usize>,
    /// Per node: distinct downstream nodes.
    dependents: Vec<Vec<NodeId>>,
    /// Per (node, output): inputs not yet handed to a consumer.
    unconsumed: HashMap<(NodeId, usize), usize>,
    /// In-memory outputs still wanted by a consumer.
    memory: HashMap<(NodeId, usize), Value>,
    produced: Vec<Option<Vec<Produced>>>,
    bound: HashMap<(NodeId, usize), Arc<BoundArtifact>>,
    /// Per node: the failed or skipped upstream node that blocks it.
    blocked_by: Vec<Option<String>>,
    reports: Vec<Option<StepReport>>,
    ready: VecDeque<NodeId>,
    queued: VecDeque<Job>,
    /// Nodes whose key another run holds.
    waiting: Vec<Waiting>,
    /// Cached and skipped rows waiting to be committed in one transaction.
    pending_rows: Vec<PendingRow>,
    /// Per node: its position among the graph's calls of the same step.
    ordinals: Vec<usize>,
    /// Per step: its completed calls in the earlier run that misses are compared with.
    earlier: HashMap<&'static str, Option<Candidates>>,
    done: usize,
    running: usize,
    /// The run's span, parent of the steps' spans.
    span: Span,
    /// Per failed node: the error behind its report's message, for [`Error::StepFailed`].
    causes: HashMap<NodeId, BoxError>,
}

struct PendingRow {
    node: NodeId,
    status: StepStatus,
    key: Option<Hash128>,
    components: KeyComponents,
    reason: Reason,
    reused: Option<i64>,
    started_at_us: i64,
    outputs: Vec<Produced>,
}

impl<'a> State<'a> {
    fn new(
        def: &'a PipelineDef,
        store: &'a Store,
        settings: &'a RunSettings,
        run_id: &'a str,
        run_name: &'a str,
    ) -> Self {
        let n = def.graph.nodes.len();
        let mut waiting_on = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        let mut unconsumed = HashMap::new();
        for (id, node) in def.graph.nodes.iter().enumerate() {
            let mut ups: Vec<NodeId> = Vec::new();
            for input in &node.inputs {
                if let InputSource::Artifact { node: up, output } = input.source {
                    *unconsumed.entry((up, output)).or_insert(0) += 1;
                    if !ups.contains(&up) {
                        ups.push(up);
                    }
                }
            }
            waiting_on[id] = ups.len();
            for up in ups {
                if let Some(d) = dependents.get_mut(up) {
                    d.push(id);
                }
            }
        }
        let ready = (0..n).filter(|&i| waiting_on[i] == 0).collect();
        let mut calls_so_far: HashMap<&str, usize> = HashMap::new();
        let ordinals = def
            .graph
            .nodes
            .iter()
            .map(|node| {
                let n = calls_so_far.entry(node.step).or_default();
                *n += 1;
                *n - 1
            })
            .collect();
        State {
            def,
            store,
            settings,
            run_id,
            run_name,
            waiting_on,
            dependents,
            unconsumed,
            memory: HashMap::new(),
            produced: vec![None; n],
            bound: HashMap::new(),
            blocked_by: vec![None; n],
            reports: (0..n).map(|_| None).collect(),
            ready,
            queued: VecDeque::new(),
            waiting: Vec::new(),
            pending_rows: Vec::new(),
            ordinals,
            earlier: HashMap::new(),
            done: 0,
            running: 0,
            span: Span::none(),
            causes: HashMap::new(),
        }
    }

    fn node(&self, id: NodeId) -> &'a Node {
        &self.def.graph.nodes[id]
    }

    /// The scheduling loop. Returns an error only for store failures that stop the run.
    fn drive<'s>(&mut self, scope: &'s std::thread::Scope<'s, '_>) -> Result<()>
    where
        'a: 's,
    {
        let total = self.def.graph.nodes.len();
        let (tx, rx) = mpsc::channel::<Finished>();
        let mut fatal: Option<Error> = None;
        let mut poll = POLL_MIN;
        loop {
            while fatal.is_none() {
                let Some(id) = self.ready.pop_front() else {
                    break;
                };
                if let Err(e) = self.resolve(id) {
                    fatal = Some(e);
                }
            }
            // Record the cached rows before any worker may load what they reference: from
            // then on garbage collection sees those blobs as referenced.
            if let Err(e) = self.flush_rows() {
                fatal.get_or_insert(e);
            }
            while fatal.is_none() && self.running < self.settings.max_parallelism {
                let Some(job) = self.queued.pop_front() else {
                    break;
                };
                // Claim what is about to run, and only that.
                let job = if job.cached && !job.claimed {
                    match self.claim(job, Instant::now(), None) {
                        Ok(Some(job)) => job,
                        Ok(None) => continue,
                        Err(e) => {
                            fatal = Some(e);
                            break;
                        }
                    }
                } else {
                    job
                };
                self.spawn(scope, job, tx.clone());
            }
            if self.done == total {
                break;
            }
            if fatal.is_none() && !self.ready.is_empty() {
                // Nodes reused by `claim` made others ready.
                continue;
            }
            if self.running == 0 && (self.waiting.is_empty() || fatal.is_some()) {
                break;
            }
            if self.waiting.is_empty() || fatal.is_some() {
                let Ok(finished) = rx.recv() else {
                    break;
                };
                self.running -= 1;
                self.finish(finished);
                continue;
            }
            // Some keys are held by other runs: hear from workers, and look at all those
            // keys at once every `poll`, which grows while nothing changes.
            match rx.recv_timeout(poll) {
                Ok(finished) => {
                    self.running -= 1;
                    self.finish(finished);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            match self.check_waiting() {
                Ok(true) => poll = POLL_MIN,
                Ok(false) => poll = (poll * 2).min(POLL_MAX),
                Err(e) => {
                    fatal.get_or_insert(e);
                }
            }
        }
        // Let running steps finish (the scope joins them) before reporting a fatal error.
        while self.running > 0 {
            let Ok(finished) = rx.recv() else {
                break;
            };
            self.running -= 1;
            self.finish(finished);
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn cache_enabled(&self, node: &Node) -> bool {
        let settings = &self.settings;
        settings
            .step_cache
            .get(&node.name)
            .or_else(|| settings.step_cache.get(node.step))
            .copied()
            .or(settings.enable_cache)
            .or(node.enable_cache)
            .or(self.def.enable_cache)
            .unwrap_or(true)
    }

    fn components(&self, node: &Node) -> KeyComponents {
        let inputs = node
            .inputs
            .iter()
            .map(|input| match &input.source {
                InputSource::Artifact { node: up, output } => {
                    let hash = self.produced[*up]
                        .as_ref()
                        .and_then(|p| p.get(*output))
                        .map(|p| p.hash.to_hex())
                        .unwrap_or_default();
                    InputComponent::Artifact {
                        name: input.name.to_string(),
                        content_hash: hash,
                        producer: self.node(*up).name.clone(),
                    }
                }
                InputSource::Param(p) => InputComponent::Parameter {
                    name: input.name.to_string(),
                    type_name: p.type_name.to_string(),
                    shape: p.shape.clone(),
                    hash: p.hash.to_hex(),
                    value: p.json.clone(),
                    text: p.text.clone(),
                },
            })
            .collect();
        let code = node.code.code();
        KeyComponents {
            format: KEY_FORMAT_VERSION,
            step: node.step.to_string(),
            module: code.module.clone(),
            code_signature: signature_hex(code.signature),
            code_parts: code.parts.clone(),
            outputs: node.outputs.iter().map(|o| o.decl.clone()).collect(),
            inputs,
        }
    }

    /// Decides what to do with a node whose upstream nodes are all done.
    fn resolve(&mut self, id: NodeId) -> Result<()> {
        let node = self.node(id);
        if let Some(up) = self.blocked_by[id].clone() {
            end_step_span(
                &step_span(&self.span, node, None),
                StepStatus::Skipped,
                Duration::ZERO,
            );
            self.release_inputs(id);
            let components = self.components(node);
            self.pending_rows.push(PendingRow {
                node: id,
                status: StepStatus::Skipped,
                key: None,
                components,
                reason: Reason::UpstreamFailed { step: up.clone() },
                reused: None,
                started_at_us: time::now_micros(),
                outputs: Vec::new(),
            });
            self.complete(
                id,
                StepStatus::Skipped,
                Reason::UpstreamFailed { step: up },
                None,
                None,
                None,
                Duration::ZERO,
            );
            return Ok(());
        }
        // A cached step's duration is what its key computation and lookup cost.
        let clock = Instant::now();
        let components = self.components(node);
        let key = components.cache_key();
        if !self.cache_enabled(node) {
            self.queued.push_back(Job {
                node: id,
                key,
                components,
                reason: Reason::CacheDisabled,
                compared: None,
                cached: false,
                claimed: false,
                lease: None,
                span: None,
            });
            return Ok(());
        }
        // A hit needs no claim: the execution it reuses is complete and immutable, so it is
        // found with a plain read and its cached row is batched with the others into one
        // transaction (`flush_rows`). A commit per cached step cost ~100 us (every dirtied
        // index page rewritten to the WAL). Only a miss takes the write lock, in `acquire`,
        // which looks again before claiming the key.
        if let Lookup::Hit { execution, outputs } = self.store.lookup(key)? {
            let span = step_span(&self.span, node, Some(key));
            span.in_scope(|| info!(target: "pipeline", "Using cached version of `{}`.", node.name));
            end_step_span(&span, StepStatus::Cached, clock.elapsed());
            self.release_inputs(id);
            let produced = reused_outputs(outputs, execution);
            self.set_produced(id, &produced);
            self.pending_rows.push(PendingRow {
                node: id,
                status: StepStatus::Cached,
                key: Some(key),
                components,
                reason: Reason::Cached { execution },
                reused: Some(execution),
                started_at_us: time::now_micros(),
                outputs: produced,
            });
            self.complete(
                id,
                StepStatus::Cached,
                Reason::Cached { execution },
                Some(key),
                None,
                None,
                clock.elapsed(),
            );
            return Ok(());
        }
        // A miss is claimed only when a worker is free to run it (`claim`), so no claim
        // waits in the queue, and two processes running the same graph share its keys out.
        let (reason, compared) = self.explain_miss(id, &components)?;
        self.queued.push_back(Job {
            node: id,
            key,
            components,
            reason,
            compared,
            cached: true,
            claimed: false,
            lease: None,
            span: None,
        });
        Ok(())
    }

    /// In one write transaction, claims the key of `job`, which a worker is free to run:
    /// returns the job to run, or `None` when another run completed the key (the node is
    /// done, cached) or holds it (the node waits).
    ///
    /// `clock` runs since the node was first decided; `previous` is who held the key when
    /// the node last waited, if it did.
    fn claim(
        &mut self,
        mut job: Job,
        clock: Instant,
        previous: Option<Holder>,
    ) -> Result<Option<Job>> {
        let id = job.node;
        let node = self.node(id);
        let row = cached_row(
            self.run_id,
            node,
            id,
            job.key,
            &job.components,
            self.input_rows(id),
        );
        let decls: Vec<_> = node.outputs.iter().map(|o| o.decl.clone()).collect();
        let ours = self.store.holder(self.run_id, self.run_name, &node.name);
        match self.store.begin_step_row(job.key, &row, &decls, &ours)? {
            Begin::Hit {
                execution,
                reused,
                outputs,
            } => {
                let span = job
                    .span
                    .take()
                    .unwrap_or_else(|| step_span(&self.span, node, Some(job.key)));
                self.reuse(id, job.key, &span, execution, reused, outputs, clock);
                Ok(None)
            }
            Begin::Claimed { lease, damaged } => {
                if let Some(damage) = damaged {
                    let (output, what, reason) = match damage {
                        Damage::Missing { output } => {
                            (output.clone(), "missing", Reason::BlobMissing { output })
                        }
                        Damage::Corrupt { output } => {
                            (output.clone(), "corrupt", Reason::BlobCorrupt { output })
                        }
                        Damage::Undecodable { output, type_name } => (
                            output.clone(),
                            "not decodable as the type the step returns",
                            Reason::Undecodable { output, type_name },
                        ),
                    };
                    warn!(
                        target: "pipeline",
                        "Cached output `{}` of `{}` is {}; executing the step again.",
                        output,
                        node.name,
                        what
                    );
                    job.reason = reason;
                    job.compared = None;
                }
                job.claimed = true;
                job.lease = Some(lease);
                Ok(Some(job))
            }
            Begin::Busy(holder) => {
                self.wait(job, holder, previous.as_ref(), clock);
                Ok(None)
            }
        }
    }

    /// Completes node `id` as a reuse of execution `reused`, recorded as `execution`.
    #[allow(clippy::too_many_arguments)]
    fn reuse(
        &mut self,
        id: NodeId,
        key: Hash128,
        span: &Span,
        execution: i64,
        reused: i64,
        outputs: Vec<(Hash128, u64)>,
        clock: Instant,
    ) {
        let node = self.node(id);
        span.in_scope(|| info!(target: "pipeline", "Using cached version of `{}`.", node.name));
        end_step_span(span, StepStatus::Cached, clock.elapsed());
        self.release_inputs(id);
        self.set_produced(id, &reused_outputs(outputs, reused));
        self.complete(
            id,
            StepStatus::Cached,
            Reason::Cached { execution: reused },
            Some(key),
            None,
            Some(execution),
            clock.elapsed(),
        );
    }

    /// Puts a node whose key `holder` (another run, or another call of this run) is
    /// computing among the waiting ones, and says so unless it already waited for `holder`.
    fn wait(&mut self, mut job: Job, holder: Holder, previous: Option<&Holder>, clock: Instant) {
        let node = self.node(job.node);
        let run_span = &self.span;
        let span = job
            .span
            .get_or_insert_with(|| step_span(run_span, node, Some(job.key)));
        span.record("status", "waiting");
        if previous != Some(&holder) {
            span.in_scope(|| {
                info!(
                    target: "pipeline",
                    "Step `{}` is waiting for {}, which is computing the same cache key.",
                    node.name,
                    holder
                )
            });
        }
        self.waiting.push(Waiting { job, holder, clock });
    }

    /// One batched check of every waiting node's key: those whose holder committed,
    /// released or died are decided again (reused, claimed and queued, or waited for under
    /// their new holder). Returns whether any node stopped waiting.
    fn check_waiting(&mut self) -> Result<bool> {
        let held = {
            let waits: Vec<(Hash128, &Holder)> = self
                .waiting
                .iter()
                .map(|w| (w.job.key, &w.holder))
                .collect();
            self.store.still_held(&waits)?
        };
        if held.iter().all(|&h| h) {
            return Ok(false);
        }
        let mut progressed = false;
        let waiting = std::mem::take(&mut self.waiting);
        let mut rest = waiting.into_iter().zip(held);
        while let Some((w, still)) = rest.next() {
            if still {
                self.waiting.push(w);
                continue;
            }
            match self.acquire_waiting(w) {
                Ok(done) => progressed |= done,
                Err(e) => {
                    self.waiting.extend(rest.map(|(w, _)| w));
                    return Err(e);
                }
            }
        }
        Ok(progressed)
    }

    /// Decides a waiting node again, now that its holder's claim has ended: reused,
    /// claimed and queued to run first, or waited for under its new holder. Returns whether
    /// it stopped waiting.
    fn acquire_waiting(&mut self, w: Waiting) -> Result<bool> {
        let waiting = self.waiting.len();
        if let Some(job) = self.claim(w.job, w.clock, Some(w.holder))? {
            self.queued.push_front(job);
        }
        Ok(self.waiting.len() == waiting)
    }

    /// Why node `id` missed the cache: its key components compared with those of the
    /// earlier execution of the same call (see `store::earlier` for how it is found), and
    /// that execution as JSON, to record with the miss.
    fn explain_miss(
        &mut self,
        id: NodeId,
        components: &KeyComponents,
    ) -> Result<(Reason, Option<String>)> {
        let step = self.node(id).step;
        if !self.earlier.contains_key(step) {
            // Once per step and run: a 10,000-call sweep reads the earlier run's calls once.
            let calls = self
                .store
                .earlier_calls(step, &self.def.name, self.run_id, None)?;
            self.earlier.insert(step, calls);
        }
        let earlier = self.earlier.get(step).and_then(|calls| {
            calls.as_ref()?.earlier_call(&Call {
                label: None,
                ordinal: self.ordinals[id],
                components,
            })
        });
        let reason = Reason::explain(earlier.as_ref().map(|e| &e.components), components);
        let compared = earlier.and_then(|e| serde_json::to_string(&e).ok());
        Ok((reason, compared))
    }

    /// Hands a node to a worker thread.
    fn spawn<'s>(
        &mut self,
        scope: &'s std::thread::Scope<'s, '_>,
        mut job: Job,
        tx: mpsc::Sender<Finished>,
    ) where
        'a: 's,
    {
        let node = self.node(job.node);
        let inputs = self.take_inputs(job.node);
        let input_rows = self.input_rows(job.node);
        self.running += 1;
        let store = self.store;
        let run_id = self.run_id;
        let span = job
            .span
            .take()
            .unwrap_or_else(|| step_span(&self.span, node, Some(job.key)));
        scope.spawn(move || {
            let finished = span.in_scope(|| run_step(store, run_id, job, node, inputs, input_rows));
            end_step_span(&span, finished.status(), finished.duration);
            // Closed before the coordinator hears of it, so before the run's span.
            drop(span);
            // The coordinator only stops listening once every worker has reported.
            let _ = tx.send(finished);
        });
    }

    /// Resolved inputs for a node about to execute; releases memory no one else needs.
    fn take_inputs(&mut self, id: NodeId) -> Vec<Option<Resolved>> {
        let node = self.node(id);
        node.inputs
            .iter()
            .map(|input| {
                Some(match &input.source {
                    InputSource::Param(p) => {
                        let fresh = if input.mode == InputMode::Owned {
                            (p.fresh)().ok()
                        } else {
                            None
                        };
                        Resolved::Param(Arc::clone(&p.value), fresh)
                    }
                    InputSource::Artifact { node: up, output } => {
                        let at = (*up, *output);
                        let value = if input.mode == InputMode::Handle {
                            None
                        } else {
                            self.memory.get(&at).cloned()
                        };
                        self.consume(at);
                        match self.bound.get(&at) {
                            Some(bound) => Resolved::Artifact {
                                value,
                                bound: Arc::clone(bound),
                            },
                            // Unreachable: upstream is done, so its outputs are bound.
                            None => return None,
                        }
                    }
                })
            })
            .collect()
    }

    fn input_rows(&self, id: NodeId) -> Vec<InputRow> {
        self.node(id)
            .inputs
            .iter()
            .map(|input| match &input.source {
                InputSource::Param(_) => InputRow {
                    name: input.name.to_string(),
                    hash: None,
                    producer: None,
                },
                InputSource::Artifact { node: up, output } => {
                    let p = self.produced[*up].as_ref().and_then(|p| p.get(*output));
                    InputRow {
                        name: input.name.to_string(),
                        hash: p.map(|p| p.hash),
                        producer: p.map(|p| p.execution),
                    }
                }
            })
            .collect()
    }

    /// Marks one consumption of an output; drops the in-memory value after the last one.
    fn consume(&mut self, at: (NodeId, usize)) {
        if let Some(n) = self.unconsumed.get_mut(&at) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.memory.remove(&at);
            }
        }
    }

    fn release_inputs(&mut self, id: NodeId) {
        let node = self.node(id);
        for input in &node.inputs {
            if let InputSource::Artifact { node: up, output } = input.source {
                self.consume((up, output));
            }
        }
    }

    fn set_produced(&mut self, id: NodeId, produced: &[Produced]) {
        let node = self.node(id);
        for (i, (p, spec)) in produced.iter().zip(&node.outputs).enumerate() {
            self.bound.insert(
                (id, i),
                Arc::new(BoundArtifact {
                    store: self.store.clone(),
                    hash: p.hash,
                    size: p.size,
                    step: node.name.clone(),
                    output_name: spec.decl.name.clone(),
                    type_name: spec.decl.type_name.clone(),
                    spec: Arc::clone(spec),
                    execution: p.execution,
                }),
            );
        }
        self.produced[id] = Some(produced.to_vec());
    }

    /// Records a node as done and makes its dependents ready.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        id: NodeId,
        status: StepStatus,
        reason: Reason,
        key: Option<Hash128>,
        error: Option<String>,
        execution: Option<i64>,
        duration: Duration,
    ) {
        let node = self.node(id);
        if matches!(status, StepStatus::Failed | StepStatus::Skipped) {
            let blocker = match &reason {
                Reason::UpstreamFailed { step } => step.clone(),
                _ => node.name.clone(),
            };
            for &d in &self.dependents[id] {
                self.blocked_by[d].get_or_insert_with(|| blocker.clone());
            }
        }
        self.reports[id] = Some(StepReport {
            name: node.name.clone(),
            step: node.step.to_string(),
            status,
            duration,
            cache_key: key.map(Hash128::to_hex),
            reason,
            error,
            execution_id: execution,
        });
        self.done += 1;
        for i in 0..self.dependents[id].len() {
            let d = self.dependents[id][i];
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.ready.push_back(d);
            }
        }
    }

    /// Handles a worker's report.
    fn finish(&mut self, f: Finished) {
        match f.result {
            Ok(Outcome::Executed { values, produced }) => {
                self.set_produced(f.node, &produced);
                for (i, value) in values.into_iter().enumerate() {
                    if self.unconsumed.get(&(f.node, i)).copied().unwrap_or(0) > 0 {
                        self.memory.insert((f.node, i), value);
                    }
                }
                self.complete(
                    f.node,
                    StepStatus::Executed,
                    f.reason,
                    Some(f.key),
                    None,
                    f.execution,
                    f.duration,
                );
            }
            Err(failure) => {
                if let Some(source) = failure.source {
                    self.causes.insert(f.node, source);
                }
                self.complete(
                    f.node,
                    StepStatus::Failed,
                    f.reason,
                    Some(f.key),
                    Some(failure.message),
                    f.execution,
                    f.duration,
                );
            }
        }
    }

    /// Commits cached and skipped rows in one transaction and fills in their ids.
    fn flush_rows(&mut self) -> Result<()> {
        if self.pending_rows.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_rows);
        let rows: Vec<ExecutionRow<'_>> = pending
            .iter()
            .map(|p| {
                let node = self.node(p.node);
                ExecutionRow {
                    run_id: self.run_id,
                    name: &node.name,
                    step: node.step,
                    position: p.node,
                    status: p.status,
                    cache_key: p.key,
                    components: &p.components,
                    reason: Some(p.reason.to_string()),
                    error: None,
                    reused: p.reused,
                    compared: None,
                    started_at_us: p.started_at_us,
                    duration: Duration::ZERO,
                    outputs: output_rows(node, &p.outputs, &[]),
                    inputs: self.input_rows(p.node),
                    lease_holder: None,
                }
            })
            .collect();
        let ids = self.store.record(&rows)?;
        for (p, id) in pending.iter().zip(ids) {
            if let Some(Some(r)) = self.reports.get_mut(p.node) {
                r.execution_id = Some(id);
            }
        }
        Ok(())
    }
}

fn output_rows(
    node: &Node,
    produced: &[Produced],
    metadata: &[Option<serde_json::Value>],
) -> Vec<OutputRow> {
    produced
        .iter()
        .zip(&node.outputs)
        .enumerate()
        .map(|(i, (p, spec))| OutputRow {
            name: spec.decl.name.clone(),
            hash: p.hash,
            size: p.size,
            type_name: spec.decl.type_name.clone(),
            cacher: spec.decl.cacher.clone(),
            cacher_version: spec.decl.cacher_version,
            metadata: metadata.get(i).cloned().flatten(),
        })
        .collect()
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

type BodyResult =
    std::result::Result<(Vec<Value>, Vec<Produced>, Vec<Option<serde_json::Value>>), Failure>;

/// Runs a step body and stores its outputs; a panic anywhere becomes an error message.
fn execute_body(
    store: &Store,
    run_id: &str,
    job: &Job,
    node: &Node,
    inputs: Vec<Option<Resolved>>,
) -> BodyResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut ctx = StepContext { inputs };
        let values = (node.body)(&mut ctx)?;
        drop(ctx);
        let mut produced = Vec::with_capacity(values.len());
        let mut metadata = Vec::with_capacity(values.len());
        for (value, spec) in values.iter().zip(&node.outputs) {
            let mut writer = store.blob_writer()?;
            match spec.save(value.as_ref(), &mut writer) {
                Ok(meta) => metadata.push(meta),
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
            let (hash, size) = match &job.lease {
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
                output: &spec.decl.name,
                cache_key: Some(job.key),
            };
            store.write_sidecar(hash, &sidecar)?;
            produced.push(Produced {
                hash,
                size,
                execution: 0,
            });
        }
        Ok((values, produced, metadata))
    }));
    match outcome {
        Ok(r) => r,
        Err(payload) => Err(panic_message(payload.as_ref()).into()),
    }
}

/// The outputs of a reused execution, as this run knows them.
fn reused_outputs(outputs: Vec<(Hash128, u64)>, execution: i64) -> Vec<Produced> {
    outputs
        .into_iter()
        .map(|(hash, size)| Produced {
            hash,
            size,
            execution,
        })
        .collect()
}

/// The span of one step, a child of the run's span `run` (DEBUG, target `pipeline`, like
/// the run's). `status` moves through `waiting` (for another process computing the same
/// key) and `running` to the step's final status, recorded with `duration_s` when the
/// step is done.
fn step_span(run: &Span, node: &Node, key: Option<Hash128>) -> Span {
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
fn end_step_span(span: &Span, status: StepStatus, duration: Duration) {
    span.record("status", status.as_str());
    span.record("duration_s", duration.as_secs_f64());
}

impl Finished {
    /// The status the step ends with.
    fn status(&self) -> StepStatus {
        match self.result {
            Ok(Outcome::Executed { .. }) => StepStatus::Executed,
            Err(_) => StepStatus::Failed,
        }
    }
}

/// The row recorded when a node's key is reused from the cache.
fn cached_row<'r>(
    run_id: &'r str,
    node: &'r Node,
    position: NodeId,
    key: Hash128,
    components: &'r KeyComponents,
    inputs: Vec<InputRow>,
) -> ExecutionRow<'r> {
    ExecutionRow {
        run_id,
        name: &node.name,
        step: node.step,
        position,
        status: StepStatus::Cached,
        cache_key: Some(key),
        components,
        reason: None,
        error: None,
        reused: None,
        compared: None,
        started_at_us: time::now_micros(),
        duration: Duration::ZERO,
        outputs: Vec::new(),
        inputs,
        lease_holder: None,
    }
}

/// The shortest and longest pause between two checks of the keys a run waits for. The
/// pause starts short, so a holder that commits a moment later is heard of at once, and
/// doubles while nothing changes.
const POLL_MIN: Duration = Duration::from_micros(500);
const POLL_MAX: Duration = Duration::from_millis(25);

/// Runs one step body on a worker thread, stores its outputs and records the execution.
fn run_step(
    store: &Store,
    run_id: &str,
    mut job: Job,
    node: &Node,
    inputs: Vec<Option<Resolved>>,
    input_rows: Vec<InputRow>,
) -> Finished {
    Span::current().record("status", "running");
    info!(target: "pipeline", "Step `{}` has started.", node.name);
    let started_at_us = time::now_micros();
    let clock = Instant::now();
    // The store handle's heartbeat keeps the claim alive while the body runs.
    let outcome = execute_body(store, run_id, &job, node, inputs);

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
        run_id,
        name: &node.name,
        step: node.step,
        position: job.node,
        status,
        cache_key: Some(job.key),
        components: &job.components,
        reason: Some(job.reason.to_string()),
        error: error.as_ref().map(|f| f.message.clone()),
        reused: None,
        compared: job.compared.clone(),
        started_at_us,
        duration,
        outputs: output_rows(node, &produced, &metadata),
        inputs: input_rows,
        lease_holder: None,
    };
    // A claimed step commits its row, outputs and the end of its lease in one transaction
    // (the guard releases the lease if that fails); an unclaimed one (caching off) records.
    let recorded = match job.lease.take() {
        Some(lease) => lease
            .commit(Completion {
                status: row.status,
                reason: row.reason.clone(),
                error: row.error.clone(),
                compared: row.compared.clone(),
                duration: row.duration,
                outputs: row
                    .outputs
                    .iter()
                    .map(|o| StepOutput {
                        name: o.name.clone(),
                        hash: o.hash,
                        size: o.size,
                        type_name: o.type_name.clone(),
                        cacher: o.cacher.clone(),
                        cacher_version: o.cacher_version,
                        metadata: o.metadata.clone(),
                    })
                    .collect(),
            })
            .map(|id| vec![id]),
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
    Finished {
        node: job.node,
        result,
        duration,
        execution,
        key: job.key,
        reason: job.reason,
    }
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
