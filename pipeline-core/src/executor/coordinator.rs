//! The coordinator: drives one run from its schedule. Resolves each ready node (skipped,
//! reused from the cache, or queued to run), claims a queued node's key when a worker is
//! free for it, waits for keys other runs hold (one batched check per poll), hands claimed
//! nodes to workers (`step.rs`) and completes nodes as they finish. It asks the store only
//! through the [`Ledger`], and keeps ready / waiting / blocked nodes in the [`Schedule`].

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tracing::{info, Span};

use super::async_steps::{self, AsyncStep, AsyncSteps};
use super::ledger::{self, Claim, Holder, Ledger, PendingRow};
use super::nodes::RunNodes;
use super::schedule::{Done, Schedule};
use super::step::{end_step_span, run_step, step_span, Finished, Outcome};
use super::{remote, Job, Produced, RunSettings};
use crate::artifact::BoundArtifact;
use crate::cluster::Resources;
use crate::error::{BoxError, Error, Result};
use crate::graph::{InputMode, InputSource, Node, NodeId, Resolved, Role, Value};
use crate::key::{self, Hash128, KeyComponents, KeyInput};
use crate::map::MapDef;
use crate::policy::StepPolicy;
use crate::run::{Reason, StepReport, StepStatus};
use crate::time;

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

/// One run being driven: its schedule, the outputs known so far, the nodes queued to run
/// or waiting for another run's claim, and the reports of the nodes done.
pub(super) struct State<'a> {
    /// The graph's nodes and those the run adds (a map's per-item calls).
    nodes: &'a RunNodes<'a>,
    /// Per step name: how many calls of it the run has, for the ordinal of the next one.
    calls_so_far: HashMap<&'static str, usize>,
    settings: &'a RunSettings,
    /// Everything asked of the store.
    ledger: Ledger<'a>,
    /// Ready / waiting / blocked nodes and the in-memory values kept for consumers.
    schedule: Schedule<Value>,
    produced: Vec<Option<Vec<Produced>>>,
    pub(super) bound: HashMap<(NodeId, usize), Arc<BoundArtifact>>,
    pub(super) reports: Vec<Option<StepReport>>,
    queued: VecDeque<Job>,
    /// Nodes whose key another run holds.
    waiting: Vec<Waiting>,
    /// Cached and skipped rows waiting to be committed in one transaction.
    pending_rows: Vec<PendingRow>,
    /// Per node: its position among the graph's calls of the same step.
    ordinals: Vec<usize>,
    /// Steps running now, and the CPUs they asked for (`cpus` counts against
    /// `max_parallelism`: see [`State::cpus`]).
    running: usize,
    busy_cpus: usize,
    /// Per node: the CPUs it takes of `max_parallelism`.
    cpus: Vec<usize>,
    /// The graph's maps, then those the run adds: a map nested in another's closure gets
    /// a copy per item of the outer list (`Role` indices of added nodes point here).
    maps: Vec<MapDef>,
    /// The run's span, parent of the steps' spans.
    pub(super) span: Span,
    /// Per failed node: the error behind its report's message, for [`Error::StepFailed`].
    pub(super) causes: HashMap<NodeId, BoxError>,
    /// The runtime and helpers of the run's async steps, from its first one
    /// (`async_steps.rs`).
    async_steps: Option<AsyncSteps<'a>>,
}

impl<'a> State<'a> {
    pub(super) fn new(
        nodes: &'a RunNodes<'a>,
        settings: &'a RunSettings,
        ledger: Ledger<'a>,
    ) -> Self {
        let graph = nodes.graph();
        let n = graph.nodes.len();
        // A map's templates never run (`map.rs`): dormant. A map's gather waits for the
        // split, which gives it its per-item inputs (`expand`); until then it reads a
        // slot of the split that nothing produces.
        let schedule = Schedule::new(
            graph
                .nodes
                .iter()
                .map(|node| slots(&graph.maps, node))
                .collect(),
        );
        let mut calls_so_far: HashMap<&'static str, usize> = HashMap::new();
        let ordinals = graph
            .nodes
            .iter()
            .map(|node| {
                let n = calls_so_far.entry(node.step).or_default();
                *n += 1;
                *n - 1
            })
            .collect();
        let cpus = graph
            .nodes
            .iter()
            .map(|node| Self::cpus(settings, node))
            .collect();
        State {
            nodes,
            calls_so_far,
            settings,
            ledger,
            schedule,
            produced: vec![None; n],
            bound: HashMap::new(),
            reports: (0..n).map(|_| None).collect(),
            queued: VecDeque::new(),
            waiting: Vec::new(),
            pending_rows: Vec::new(),
            ordinals,
            running: 0,
            busy_cpus: 0,
            cpus,
            maps: graph.maps.clone(),
            span: Span::none(),
            causes: HashMap::new(),
            async_steps: None,
        }
    }

    /// The CPUs `node` takes of `max_parallelism` on this machine: its `resources(cpus =
    /// ..)` (the run's override first), at least 1, at most `max_parallelism`, so a step
    /// asking for more than there is runs alone rather than never.
    ///
    /// On another backend (processes, Slurm) every step counts as one: its CPUs are the
    /// cluster's to find, and `max_parallelism` bounds the jobs in flight.
    fn cpus(settings: &RunSettings, node: &Node) -> usize {
        if settings.backend.is_some() {
            return 1;
        }
        // An async step waits without a slot: its polls run on the run's runtime, whose
        // `max_parallelism` workers bound them (`async_steps.rs`).
        if node.is_async {
            return 0;
        }
        let asked = Self::resources(settings, node)
            .and_then(|r| r.get_cpus())
            .unwrap_or(1) as usize;
        asked.clamp(1, settings.max_parallelism.max(1))
    }

    /// What `node` asks of the machine that runs it: the run's override (by call name,
    /// then step name), else the step's own `resources(..)`.
    fn resources<'n>(settings: &'n RunSettings, node: &'n Node) -> Option<&'n Resources> {
        settings
            .step_resources
            .get(&node.name)
            .or_else(|| settings.step_resources.get(node.step))
            .or(node.resources)
    }

    /// How `node` is retried and timed out: its own `#[step(..)]` options, with the run's
    /// overrides (by call name, then step name) on top.
    fn policy(settings: &RunSettings, node: &Node) -> StepPolicy {
        let mut policy = node.policy.copied().unwrap_or_default();
        for name in [node.step, node.name.as_str()] {
            if let Some(o) = settings.step_policy.get(name) {
                if let Some(retries) = o.retries {
                    policy = policy.retries(retries);
                }
                if let Some(timeout) = o.timeout {
                    policy = policy.timeout(timeout);
                }
            }
        }
        policy
    }

    /// Whether the next queued step fits beside the running ones.
    fn next_fits(&self) -> bool {
        match self.queued.front() {
            Some(job) => {
                self.running == 0
                    || self.busy_cpus + self.cpus[job.node] <= self.settings.max_parallelism
            }
            None => false,
        }
    }

    /// Books the end of a running step.
    fn stopped(&mut self, node: NodeId) {
        self.running -= 1;
        self.busy_cpus -= self.cpus[node];
    }

    fn node(&self, id: NodeId) -> &'a Node {
        self.nodes.get(id)
    }

    /// Whether the run's cancel token was cancelled: no further step starts.
    fn cancelled(&self) -> bool {
        self.settings
            .cancel
            .as_ref()
            .is_some_and(|t| t.is_cancelled())
    }

    /// The scheduling loop. Returns an error only for store failures that stop the run.
    pub(super) fn drive<'s>(&mut self, scope: &'s std::thread::Scope<'s, '_>) -> Result<()>
    where
        'a: 's,
    {
        let (tx, rx) = mpsc::channel::<Finished>();
        let mut fatal: Option<Error> = None;
        let mut poll = POLL_MIN;
        loop {
            // The steps that became ready are resolved in one pass (one transaction:
            // `store/pass.rs`), which ends before any claim or step body.
            if fatal.is_none() && self.schedule.has_ready() {
                if let Err(e) = self.ledger.open_pass() {
                    fatal = Some(e);
                }
            }
            while fatal.is_none() {
                let Some(id) = self.schedule.next_ready() else {
                    break;
                };
                if let Err(e) = self.resolve(id) {
                    fatal = Some(e);
                }
            }
            // Record the cached rows before any worker may load what they reference: from
            // then on garbage collection sees those blobs as referenced.
            let ended = match self.flush_rows() {
                Ok(()) => self.ledger.close_pass(),
                Err(e) => {
                    self.ledger.abandon_pass();
                    Err(e)
                }
            };
            if let Err(e) = ended {
                fatal.get_or_insert(e);
            }
            if self.cancelled() && !(self.queued.is_empty() && self.waiting.is_empty()) {
                // Nothing queued or waiting starts; those steps are skipped, their
                // dependents follow as they become ready (`resolve`).
                let jobs: Vec<Job> = self.queued.drain(..).collect();
                let waits = self.waiting.drain(..).map(|w| w.job);
                for job in jobs.into_iter().chain(waits) {
                    self.schedule.requeue(job.node);
                }
                continue;
            }
            while fatal.is_none() && self.next_fits() {
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
            if let Some(backend) = &self.settings.backend {
                backend.wave_complete();
            }
            if self.schedule.is_finished() {
                break;
            }
            if fatal.is_none() && self.schedule.has_ready() {
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
                self.stopped(finished.node);
                self.finish(finished);
                continue;
            }
            // Some keys are held by other runs: hear from workers, and look at all those
            // keys at once every `poll`, which grows while nothing changes.
            match rx.recv_timeout(poll) {
                Ok(finished) => {
                    self.stopped(finished.node);
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
            self.stopped(finished.node);
            self.finish(finished);
        }
        // Stops the async helpers, so the scope can join them.
        self.async_steps = None;
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
            .or(settings.pipeline_cache)
            .unwrap_or(true)
    }

    /// How long an execution of `node` may be reused: `step_cache_expires(..)` by call
    /// name, then by step name, then the run's `cache_expires(..)`, then the step's own
    /// `cache_expires`; `None`: for ever.
    fn cache_expiry(&self, node: &Node) -> Option<Duration> {
        let settings = &self.settings;
        settings
            .step_cache_expires
            .get(&node.name)
            .or_else(|| settings.step_cache_expires.get(node.step))
            .copied()
            .or(settings.cache_expires)
            .or_else(|| node.entry.and_then(|e| e.info.cache_expires))
    }

    /// The key components of `node`, whose upstream nodes are done (a skipped node's
    /// unknown upstream hashes are recorded empty).
    fn components(&self, node: &Node) -> KeyComponents {
        let inputs = node.inputs.iter().map(|input| match &input.source {
            InputSource::Artifact { node: up, output } => KeyInput::Artifact {
                name: input.name,
                content_hash: self.produced[*up]
                    .as_ref()
                    .and_then(|p| p.get(*output))
                    .map(|p| p.hash),
                producer: &self.node(*up).name,
            },
            InputSource::Param(p) => KeyInput::Parameter {
                name: input.name,
                type_name: p.type_name,
                shape: &p.shape,
                hash: p.hash,
                value: &p.json,
                text: p.text.as_deref(),
                ignored: input.ignored,
                secret: input.secret,
            },
        });
        let outputs = node.outputs.iter().map(|o| &o.decl);
        key::components(node.step, node.code.code(), outputs, inputs)
    }

    /// Decides what to do with a node whose upstream nodes are all done.
    fn resolve(&mut self, id: NodeId) -> Result<()> {
        let node = self.node(id);
        let skip = if self.cancelled() {
            Some(Reason::Cancelled)
        } else {
            self.schedule
                .blocked_by(id)
                .map(|up| Reason::UpstreamFailed {
                    step: self.node(up).name.clone(),
                })
        };
        if let Some(reason) = skip {
            end_step_span(
                &step_span(&self.span, node, None),
                StepStatus::Skipped,
                Duration::ZERO,
            );
            self.schedule.release_inputs(id);
            let components = self.components(node);
            self.pending_rows.push(PendingRow {
                node: id,
                status: StepStatus::Skipped,
                key: None,
                components,
                reason: reason.clone(),
                reused: None,
                started_at_us: time::now_micros(),
                outputs: Vec::new(),
                holder: None,
            });
            self.complete(
                id,
                StepStatus::Skipped,
                reason,
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
        let expiry = self.cache_expiry(node);
        let now_us = time::now_micros();
        let not_before_us =
            expiry.map(|e| now_us.saturating_sub(i64::try_from(e.as_micros()).unwrap_or(i64::MAX)));
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
                params: Vec::new(),
                span: None,
                not_before_us,
            });
            return Ok(());
        }
        // A hit needs no claim: the execution it reuses is complete and immutable, so it is
        // found in this pass's transaction and its cached row is recorded in the same one
        // (`flush_rows`), pointing at what the lookup found. A commit per cached step cost
        // ~100 us (every dirtied index page rewritten to the WAL). A miss is claimed in a
        // transaction of its own, in `acquire`,
        // which looks again before claiming the key.
        // An execution older than the step's expiry is a miss that says so; the step
        // executes again under the same key, and its new row wins later lookups.
        let mut expired = None;
        let found = match (self.ledger.lookup(key)?, expiry) {
            (Some(found), Some(expires_after)) => {
                match crate::expiry::expired(found.produced_at_us, now_us, expires_after) {
                    Some(age) => {
                        expired = Some(Reason::CacheExpired { age, expires_after });
                        None
                    }
                    None => Some(found),
                }
            }
            (found, _) => found,
        };
        if let Some(found) = found {
            let execution = found.execution;
            let span = step_span(&self.span, node, Some(key));
            span.in_scope(|| info!(target: "pipeline", "Using cached version of `{}`.", node.name));
            end_step_span(&span, StepStatus::Cached, clock.elapsed());
            self.schedule.release_inputs(id);
            let produced = reused_outputs(found.outputs, execution);
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
                holder: Some(found.holder),
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
        let (mut reason, compared) =
            self.ledger
                .explain_miss(node.step, &node.name, self.ordinals[id], &components)?;
        // An input that a built-in call produced, in its own terms: how a gathered list
        // changed, or which item of a map's list.
        reason = reason.read_through(&mut |input, _| self.through_builtin(node, input));
        if let Some(expired) = expired {
            reason = expired;
        }
        self.queued.push_back(Job {
            node: id,
            key,
            components,
            reason,
            compared,
            cached: true,
            claimed: false,
            lease: None,
            params: Vec::new(),
            span: None,
            not_before_us,
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
        match self.ledger.acquire(self.nodes, id, &job, &self.produced)? {
            Claim::Hit {
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
            Claim::Claimed {
                lease,
                redo,
                params,
            } => {
                if let Some(reason) = redo {
                    job.reason = reason;
                    job.compared = None;
                }
                job.claimed = true;
                job.lease = Some(lease);
                job.params = params;
                Ok(Some(job))
            }
            Claim::Busy { holder } => {
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
        self.schedule.release_inputs(id);
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
            self.ledger.still_held(&waits)?
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
        let span = job
            .span
            .take()
            .unwrap_or_else(|| step_span(&self.span, node, Some(job.key)));
        if let Some(backend) = &self.settings.backend {
            if let Some(submission) = self.submission(&job, backend.name()) {
                // The worker loads its inputs from the store: nothing is kept in memory.
                drop(self.take_inputs(job.node));
                self.running += 1;
                self.busy_cpus += self.cpus[job.node];
                let runner = self.ledger.runner();
                let backend = Arc::clone(backend);
                backend.announce();
                scope.spawn(move || {
                    let finished = span.in_scope(|| {
                        remote::run_remote(runner, backend.as_ref(), job, node, submission)
                    });
                    end_step_span(&span, finished.status(), finished.duration);
                    drop(span);
                    let _ = tx.send(finished);
                });
                return;
            }
        }
        let inputs = self.take_inputs(job.node);
        let input_rows = ledger::input_rows(node, &self.produced);
        self.running += 1;
        self.busy_cpus += self.cpus[job.node];
        let runner = self.ledger.runner();
        let policy = Self::policy(self.settings, node);
        let cancel = self.settings.cancel.as_ref();
        // An async step waits on the run's runtime, without a thread (`async_steps.rs`).
        let step = AsyncStep {
            runner,
            job,
            node,
            inputs,
            input_rows,
            policy,
            cancel,
            span,
        };
        let max = self.settings.max_parallelism;
        let Some(step) = async_steps::submit(&mut self.async_steps, scope, max, &tx, step) else {
            return;
        };
        let AsyncStep {
            runner,
            job,
            node,
            inputs,
            input_rows,
            policy,
            cancel,
            span,
        } = step;
        scope.spawn(move || {
            let finished =
                span.in_scope(|| run_step(runner, job, node, inputs, input_rows, policy, cancel));
            end_step_span(&span, finished.status(), finished.duration);
            // Closed before the coordinator hears of it, so before the run's span.
            drop(span);
            // The coordinator only stops listening once every worker has reported.
            let _ = tx.send(finished);
        });
    }

    /// The worker job for `job` (claimed), or `None` when it runs on a thread of this run:
    /// caching is off for it (no claim to hand over), or a parameter has no stored form.
    fn submission(&self, job: &Job, backend: &str) -> Option<remote::Pending> {
        let node = self.node(job.node);
        let why_not = if node.entry.is_none() {
            Some("it has no registry entry")
        } else if job.lease.is_none() {
            Some("caching is off for it, so there is no claim to hand to a worker")
        } else if node.inputs.iter().any(|input| input.secret) {
            Some("a secret parameter is never stored, so no worker could read it")
        } else if node.inputs.iter().enumerate().any(|(i, input)| {
            matches!(input.source, InputSource::Param(_))
                && job.params.get(i).copied().flatten().is_none()
        }) {
            Some("a parameter has no stored form")
        } else {
            None
        };
        if let Some(why) = why_not {
            tracing::debug!(
                target: "pipeline",
                "Step `{}` runs on a thread of this process, not on the {backend} backend: {why}.",
                node.name
            );
            return None;
        }
        let inputs = node
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| match &input.source {
                InputSource::Param(_) => Some(crate::worker::JobInput::Parameter {
                    name: input.name.to_string(),
                    blob: job.params[i]?,
                }),
                InputSource::Artifact { node: up, output } => {
                    let p = self.produced[*up].as_ref()?.get(*output)?;
                    let producer = self.node(*up);
                    Some(crate::worker::JobInput::Artifact {
                        name: input.name.to_string(),
                        hash: p.hash,
                        size: p.size,
                        producer: p.execution,
                        producer_step: producer.code.path.to_string(),
                        producer_name: producer.name.clone(),
                        output: *output,
                    })
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(remote::Pending {
            label: node.name.clone(),
            inputs,
            resources: Self::resources(self.settings, node)
                .cloned()
                .unwrap_or_default(),
            cancel: self.settings.cancel.clone(),
            policy: Self::policy(self.settings, node),
        })
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
                            self.schedule.value(at)
                        };
                        self.schedule.consume(at);
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

    fn set_produced(&mut self, id: NodeId, produced: &[Produced]) {
        let node = self.node(id);
        for (i, p) in produced.iter().enumerate() {
            if let Some(spec) = node.output(i) {
                self.bound
                    .insert((id, i), Arc::new(self.ledger.bind(node, i, spec, p)));
            }
        }
        self.produced[id] = Some(produced.to_vec());
        if let Role::Split(map) = node.role {
            // Before the split completes, so its items' consumers exist when it does.
            self.expand(map, produced.len());
        }
    }

    /// What input `input` of `node` is when a built-in call produced it: a gathered list
    /// (how it changed, as its gather's miss in this run says), or item `i` of a map's
    /// list (and the call that produced the list).
    fn through_builtin(&self, node: &Node, input: &str) -> Option<key::Through> {
        let spec = node.inputs.iter().find(|i| i.name == input)?;
        let InputSource::Artifact { node: up, output } = spec.source else {
            return None;
        };
        let made = self.node(up);
        if made.step == crate::gather::GATHER_STEP {
            let gathered = self.reports[up].as_ref()?;
            let changes: Vec<Reason> = gathered
                .reason
                .changes()
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        Reason::ListItemChanged { .. }
                            | Reason::MoreItemsChanged { .. }
                            | Reason::ListLengthChanged { .. }
                            | Reason::ListReordered
                    )
                })
                .cloned()
                .collect();
            return Some(key::Through::List(changes));
        }
        if matches!(made.role, Role::Split(_)) {
            // The list's producer; through the splits of enclosing maps when the list is
            // itself an item (`g.map(..)` inside a map over `groups`).
            let mut outer = Vec::new();
            let mut split = made;
            let list = loop {
                let InputSource::Artifact { node: l, output } = split.inputs.first()?.source else {
                    return None;
                };
                let producer = self.node(l);
                if !matches!(producer.role, Role::Split(_)) {
                    break producer.name.clone();
                }
                outer.push(output);
                split = producer;
            };
            return Some(key::Through::Item {
                index: output,
                outer,
                list,
            });
        }
        None
    }

    /// Adds the per-item calls of map `map`, whose split has just produced `items` items,
    /// and gives the map's gathers one input per item (`map.rs`). A map nested in this
    /// one's closure is copied per item, as a map of its own that expands when that item's
    /// copy of its split has run.
    fn expand(&mut self, map: usize, items: usize) {
        let def = self.maps[map].clone();
        let split = def.split;
        let per_item = def.templates.len();
        let first = self.nodes.len();
        // Where output `(up, output)` of the closure's wiring is for item `i`: the item
        // itself, that item's copy of a template, or a node outside the map (broadcast).
        let at = |up: NodeId, output: usize, i: usize| -> (NodeId, usize) {
            if up == split {
                (split, i)
            } else if let Some(k) = def.templates.iter().position(|&t| t == up) {
                (first + i * per_item + k, output)
            } else {
                (up, output)
            }
        };
        let nested = self.nested_maps(map);
        let mut runnable = 0;
        for i in 0..items {
            // This item's copy of each nested map, by the nested map's index.
            let copies: HashMap<usize, usize> = nested
                .iter()
                .enumerate()
                .map(|(k, &m)| (m, self.maps.len() + k))
                .collect();
            for &m in &nested {
                let d = &self.maps[m];
                let copy = MapDef {
                    split: at(d.split, 0, i).0,
                    templates: d.templates.iter().map(|&t| at(t, 0, i).0).collect(),
                    results: d
                        .results
                        .iter()
                        .map(|&((up, output), gather)| (at(up, output, i), at(gather, 0, i).0))
                        .collect(),
                    parent: d.parent.filter(|&p| p != map).map(|p| copies[&p]),
                    children: d.children.iter().map(|c| copies[c]).collect(),
                };
                self.maps.push(copy);
            }
            for &t in &def.templates {
                let template = self.node(t);
                let mut node = template.clone();
                node.name = format!("{}[{i}]", template.name);
                node.position = self.node(split).position;
                node.within = template.within.filter(|&m| m != map).map(|m| copies[&m]);
                node.role = match template.role {
                    Role::Call => Role::Call,
                    Role::Split(m) => Role::Split(copies[&m]),
                    Role::MapGather(m, k) => Role::MapGather(copies[&m], k),
                };
                for input in &mut node.inputs {
                    if let InputSource::Artifact { node: up, output } = &mut input.source {
                        (*up, *output) = at(*up, *output, i);
                    }
                }
                let n = self.calls_so_far.entry(node.step).or_default();
                *n += 1;
                self.ordinals.push(*n - 1);
                self.cpus.push(Self::cpus(self.settings, &node));
                self.produced.push(None);
                self.reports.push(None);
                let added = match slots(&self.maps, &node) {
                    Some(slots) => {
                        runnable += 1;
                        self.schedule.add(slots)
                    }
                    None => self.schedule.add_dormant(),
                };
                let id = self.nodes.add(node);
                debug_assert_eq!(id, added, "the schedule and the run's nodes agree");
            }
        }
        for &((up, output), gather) in &def.results {
            let mut node = self.node(gather).clone();
            let Some(template) = node.inputs.first().cloned() else {
                continue;
            };
            node.inputs = (0..items)
                .map(|i| {
                    let mut input = template.clone();
                    input.name = crate::gather::item_name(i);
                    let (up, output) = at(up, output, i);
                    input.source = InputSource::Artifact { node: up, output };
                    input
                })
                .collect();
            let slots = upstream_slots(&node);
            self.nodes.replace(gather, node);
            self.schedule.replace_inputs(gather, slots);
        }
        info!(
            target: "pipeline",
            "Map over `{}` has {items} items: {runnable} steps added.",
            self.node(split).inputs.first().map_or("?", |input| match input.source {
                InputSource::Artifact { node, .. } => self.node(node).name.as_str(),
                InputSource::Param(_) => "?",
            }),
        );
    }

    /// The maps nested in map `map`'s closure, at any depth, parents before children.
    fn nested_maps(&self, map: usize) -> Vec<usize> {
        let mut nested = Vec::new();
        let mut next = self.maps[map].children.clone();
        while let Some(m) = next.pop() {
            nested.push(m);
            next.extend(self.maps[m].children.iter().copied());
        }
        nested
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
        self.reports[id] = Some(StepReport {
            name: node.name.clone(),
            step: node.step.to_string(),
            status,
            duration,
            cache_key: key,
            reason,
            error,
            execution_id: execution,
        });
        self.schedule.complete(
            id,
            match status {
                StepStatus::Failed => Done::Failed,
                StepStatus::Skipped => Done::Skipped,
                _ => Done::Succeeded,
            },
        );
    }

    /// Handles a worker's report.
    fn finish(&mut self, f: Finished) {
        if f.cancelled {
            // Its job was stopped with the run: not run, like the steps that never started.
            self.complete(
                f.node,
                StepStatus::Skipped,
                Reason::Cancelled,
                Some(f.key),
                None,
                f.execution,
                f.duration,
            );
            return;
        }
        match f.result {
            Ok(Outcome::Executed { values, produced }) => {
                self.set_produced(f.node, &produced);
                for (i, value) in values.into_iter().enumerate() {
                    self.schedule.keep((f.node, i), value);
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
        let ids = self
            .ledger
            .record_pending(self.nodes, &pending, &self.produced)?;
        for (p, id) in pending.iter().zip(ids) {
            if let Some(Some(r)) = self.reports.get_mut(p.node) {
                r.execution_id = Some(id);
            }
        }
        Ok(())
    }
}

/// The outputs `node`'s inputs read, in input order.
/// What node `node` waits for in the schedule: nothing when it is dormant (a template,
/// inside a map's closure: it never runs itself); the split for a map's gather, which gets
/// its per-item inputs when the list is split (`State::expand`); else its inputs.
fn slots(maps: &[MapDef], node: &Node) -> Option<Vec<(NodeId, usize)>> {
    if node.within.is_some() {
        return None;
    }
    Some(match node.role {
        Role::MapGather(map, _) => vec![(maps[map].split, usize::MAX)],
        Role::Call | Role::Split(_) => upstream_slots(node),
    })
}

fn upstream_slots(node: &Node) -> Vec<(NodeId, usize)> {
    node.inputs
        .iter()
        .filter_map(|input| match input.source {
            InputSource::Artifact { node: up, output } => Some((up, output)),
            InputSource::Param(_) => None,
        })
        .collect()
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

/// The shortest and longest pause between two checks of the keys a run waits for. The
/// pause starts short, so a holder that commits a moment later is heard of at once, and
/// doubles while nothing changes.
const POLL_MIN: Duration = Duration::from_micros(500);
const POLL_MAX: Duration = Duration::from_millis(25);
