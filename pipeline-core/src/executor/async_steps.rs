//! `async fn` steps on a run's own threads (feature `tokio`): no thread waits for them.
//!
//! An async step runs in three parts:
//!
//! 1. **start**, on one of the run's async helper threads: its arguments are fetched (maybe
//!    loaded from the store) and its future created, not polled;
//! 2. **wait**: the future is spawned on the run's Tokio runtime, which polls it on its
//!    workers; no thread of the run waits for it, so 300 sleeping steps hold no thread each;
//! 3. **commit**, on a helper thread again once the future is done: its outputs are saved
//!    and the execution committed, as for any step (`step.rs`).
//!
//! The runtime and the helpers belong to the run: they start with its first async step
//! and end with the run. Each has `max_parallelism` threads. The runtime's workers poll
//! the futures, so at most `max_parallelism` async steps are polled at once, and a waiting
//! step holds no slot: the coordinator counts an async step as taking none
//! (`State::cpus`). The helpers do the short start and commit parts. Plain steps keep
//! their own `max_parallelism` slots beside them.
//!
//! Retries, timeouts and cancellation use the runtime's timers: a retry's delay is a timer,
//! a timed-out future is dropped (a real cancel, unlike a thread's), and so is a step in
//! flight when the run's cancel token fires (the token is looked at every 100 ms; the step
//! is recorded skipped, cancelled). The step context is current on the thread that polls
//! the body, during each poll, so `pipeline::context()` works in the body as in a plain
//! step. A panic in a poll fails the attempt with its message.

use std::sync::mpsc;

use tracing::Span;

use super::step::{Finished, Runner};
use super::Job;
use crate::cancel::CancelToken;
use crate::graph::{Node, Resolved};
use crate::policy::StepPolicy;
use crate::store::InputRow;

/// An async step the coordinator hands over, claimed and with its inputs resolved: what a
/// worker thread would get.
pub(super) struct AsyncStep<'a> {
    pub(super) runner: Runner<'a>,
    pub(super) job: Job,
    pub(super) node: &'a Node,
    pub(super) inputs: Vec<Option<Resolved>>,
    pub(super) input_rows: Vec<InputRow>,
    pub(super) policy: StepPolicy,
    pub(super) cancel: Option<&'a CancelToken>,
    /// The step's span, open.
    pub(super) span: Span,
}

/// Starts `step` without a thread waiting for it when it is async (starting the run's
/// runtime and helpers in `steps` on the first one), and returns `None`; gives it back
/// when it is a plain step, or when the runtime cannot start (it then runs on a thread,
/// blocking on a runtime of its own, as in a worker process).
pub(super) fn submit<'s, 'a: 's>(
    steps: &mut Option<AsyncSteps<'a>>,
    scope: &'s std::thread::Scope<'s, '_>,
    max_parallelism: usize,
    finished: &mpsc::Sender<Finished>,
    step: AsyncStep<'a>,
) -> Option<AsyncStep<'a>> {
    if step.node.async_body.is_none() {
        return Some(step);
    }
    enabled_submit(steps, scope, max_parallelism, finished, step)
}

#[cfg(not(feature = "tokio"))]
/// Without the `tokio` feature no step is async (an `async fn` step does not compile).
pub(super) type AsyncSteps<'a> = std::marker::PhantomData<&'a ()>;

#[cfg(not(feature = "tokio"))]
fn enabled_submit<'s, 'a: 's>(
    _steps: &mut Option<AsyncSteps<'a>>,
    _scope: &'s std::thread::Scope<'s, '_>,
    _max_parallelism: usize,
    _finished: &mpsc::Sender<Finished>,
    step: AsyncStep<'a>,
) -> Option<AsyncStep<'a>> {
    Some(step)
}

#[cfg(feature = "tokio")]
pub(super) use enabled::AsyncSteps;

#[cfg(feature = "tokio")]
fn enabled_submit<'s, 'a: 's>(
    steps: &mut Option<AsyncSteps<'a>>,
    scope: &'s std::thread::Scope<'s, '_>,
    max_parallelism: usize,
    finished: &mpsc::Sender<Finished>,
    step: AsyncStep<'a>,
) -> Option<AsyncStep<'a>> {
    if steps.is_none() {
        match AsyncSteps::start(scope, max_parallelism, finished.clone()) {
            Ok(started) => *steps = Some(started),
            Err(e) => {
                tracing::warn!(
                    target: "pipeline",
                    "Could not start the runtime for async steps ({e}); step `{}` waits on a thread.",
                    step.node.name
                );
                return Some(step);
            }
        }
    }
    match steps {
        Some(steps) => {
            steps.submit(step);
            None
        }
        None => Some(step),
    }
}

#[cfg(feature = "tokio")]
mod enabled {
    use std::collections::HashMap;
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use tracing::{info, warn, Instrument as _, Span};

    use super::super::step::{
        attempt_context, end_step_span, inputs_again, panic_message, record_execution,
        replaces_outputs, retry_delay, save_outputs, started, BodyResult, Commit, Ended, Failure,
        Finished, Started,
    };
    use super::AsyncStep;
    use crate::cancel::CancelToken;
    use crate::context::{self, Logged, StepContext as UserContext};
    use crate::graph::{StepContext, StepFuture, Value};
    use crate::policy::human_duration;
    use crate::run::StepStatus;
    use crate::store::{Attempt, ExecutionDetails, ExecutionRow};
    use crate::time;

    /// The reason recorded for an async step the run's cancel stopped while it ran.
    const CANCELLED: &str = "run cancelled while the step ran; its future was dropped";

    /// How often a waiting step looks at the run's cancel token.
    const CANCEL_POLL: Duration = Duration::from_millis(100);

    /// What the helpers hear.
    enum Event {
        /// Start an attempt of step `id` (its first, or a retry after its delay).
        Attempt(u64),
        /// Step `id`'s future is done.
        Done(u64, Awaited),
        /// The run is over: a helper ends.
        Stop,
    }

    /// How a future (or a retry's delay) ended.
    enum Awaited {
        Returned(Result<Vec<Value>, Failure>),
        /// Its time limit passed: the future was dropped.
        TimedOut(Duration),
        /// The run's cancel token fired: the future was dropped.
        Cancelled,
    }

    /// An async step between its parts.
    struct InFlight<'a> {
        step: AsyncStep<'a>,
        finished: mpsc::Sender<Finished>,
        started: Option<Started>,
        attempt: u32,
        /// The attempts recorded so far (failed ones, and the last when there were several).
        attempts: Vec<Attempt>,
        /// The attempt in flight: its context, when it started (microseconds since the
        /// epoch) and its clock.
        current: Option<(UserContext, i64, Instant)>,
        /// The inputs of the next attempt, prepared before this one consumed its own.
        next: Option<Vec<Option<Resolved>>>,
        /// The last attempt's failure while its retry waits: the step's outcome when the run
        /// is cancelled meanwhile.
        last: Option<(Failure, Logged)>,
    }

    use crate::graph::Resolved;

    /// What the helpers share.
    struct Shared<'a> {
        steps: Mutex<HashMap<u64, InFlight<'a>>>,
        events: mpsc::Sender<Event>,
        runtime: tokio::runtime::Handle,
    }

    impl<'a> Shared<'a> {
        fn take(&self, id: u64) -> Option<InFlight<'a>> {
            self.steps.lock().ok()?.remove(&id)
        }

        fn put(&self, id: u64, step: InFlight<'a>) {
            if let Ok(mut steps) = self.steps.lock() {
                steps.insert(id, step);
            }
        }
    }

    /// A step done: reported to the coordinator once its span is closed.
    struct Report {
        finished: Finished,
        to: mpsc::Sender<Finished>,
        span: Span,
    }

    impl Report {
        fn send(self) {
            end_step_span(&self.span, self.finished.status(), self.finished.duration);
            // Closed before the coordinator hears of it, so before the run's span.
            drop(self.span);
            // The coordinator only stops listening once every step has reported.
            let _ = self.to.send(self.finished);
        }
    }

    /// The run's async machinery: its runtime and helper threads (see the module doc).
    /// Dropped when the run ends, which stops both.
    pub(in crate::executor) struct AsyncSteps<'a> {
        shared: Arc<Shared<'a>>,
        finished: mpsc::Sender<Finished>,
        next_id: u64,
        helpers: usize,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl<'a> AsyncSteps<'a> {
        /// Starts a runtime with `workers` workers and as many helper threads in `scope`.
        ///
        /// # Errors
        ///
        /// When the OS refuses the runtime or a helper thread.
        pub(super) fn start<'s>(
            scope: &'s std::thread::Scope<'s, '_>,
            workers: usize,
            finished: mpsc::Sender<Finished>,
        ) -> std::io::Result<Self>
        where
            'a: 's,
        {
            let workers = workers.max(1);
            let runtime = crate::async_step::run_runtime(workers)?;
            let (events, rx) = mpsc::channel();
            let shared = Arc::new(Shared {
                steps: Mutex::new(HashMap::new()),
                events,
                runtime: runtime.handle().clone(),
            });
            let mut steps = AsyncSteps {
                shared,
                finished,
                next_id: 0,
                helpers: 0,
                runtime: Some(runtime),
            };
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..workers {
                let shared = Arc::clone(&steps.shared);
                let rx = Arc::clone(&rx);
                // On an error, the helpers started so far are stopped as `steps` drops.
                std::thread::Builder::new()
                    .name("pipeline-async-helper".into())
                    .spawn_scoped(scope, move || helper(&shared, &rx))?;
                steps.helpers += 1;
            }
            Ok(steps)
        }

        /// Starts `step`'s first attempt.
        pub(super) fn submit(&mut self, step: AsyncStep<'a>) {
            let id = self.next_id;
            self.next_id += 1;
            self.shared.put(
                id,
                InFlight {
                    step,
                    finished: self.finished.clone(),
                    started: None,
                    attempt: 1,
                    attempts: Vec::new(),
                    current: None,
                    next: None,
                    last: None,
                },
            );
            let _ = self.shared.events.send(Event::Attempt(id));
        }
    }

    impl Drop for AsyncSteps<'_> {
        fn drop(&mut self) {
            for _ in 0..self.helpers {
                let _ = self.shared.events.send(Event::Stop);
            }
            // Without waiting: the run may end on a thread of another runtime, and no
            // step is in flight any more (the coordinator heard of each).
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }

    /// A helper thread: runs the start and commit parts of the run's async steps.
    fn helper(shared: &Shared<'_>, rx: &Mutex<mpsc::Receiver<Event>>) {
        loop {
            let event = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let report = match event {
                Ok(Event::Attempt(id)) => attempt(shared, id),
                Ok(Event::Done(id, awaited)) => done(shared, id, awaited),
                Ok(Event::Stop) | Err(_) => return,
            };
            if let Some(report) = report {
                report.send();
            }
        }
    }

    /// Starts an attempt of step `id`: fetches its arguments, creates its future and
    /// spawns it on the runtime.
    fn attempt(shared: &Shared<'_>, id: u64) -> Option<Report> {
        let mut fl = shared.take(id)?;
        let span = fl.step.span.clone();
        let _entered = span.enter();
        let node = fl.step.node;
        match &fl.started {
            None => fl.started = Some(started(node)),
            Some(_) if fl.step.cancel.is_some_and(CancelToken::is_cancelled) => {
                // A retry is not started once the run is cancelled: the last failure stands.
                if let Some((failure, logged)) = fl.last.take() {
                    return Some(end(fl, Err(failure), logged));
                }
            }
            Some(_) => {}
        }
        let inputs = std::mem::take(&mut fl.step.inputs);
        let allowed = fl.step.policy.get_retries().saturating_add(1);
        fl.next = (fl.attempt < allowed).then(|| inputs_again(node, &inputs));
        let ctx = attempt_context(node, fl.step.runner.run_id, fl.attempt);
        let clock = Instant::now();
        fl.current = Some((ctx.clone(), time::now_micros(), clock));
        let made = {
            let _current = context::enter(ctx.clone());
            catch_unwind(AssertUnwindSafe(|| {
                node.async_body
                    .as_ref()
                    .map(|body| body(&mut StepContext { inputs }))
            }))
        };
        let future = match made {
            Ok(Some(Ok(future))) => future,
            Ok(Some(Err(e))) => return attempt_ended(shared, id, fl, Err(e.into())),
            Ok(None) => {
                let failure = Failure::from("internal error: not an async step".to_string());
                return attempt_ended(shared, id, fl, Err(failure));
            }
            Err(payload) => {
                let failure = Failure::from(panic_message(payload.as_ref()));
                return attempt_ended(shared, id, fl, Err(failure));
            }
        };
        let timeout = fl.step.policy.get_timeout();
        let cancel = fl.step.cancel.cloned();
        // In the map before the future may finish.
        shared.put(id, fl);
        let events = shared.events.clone();
        shared.runtime.spawn(
            async move {
                let awaited = watch(Some((future, ctx)), timeout, cancel).await;
                let _ = events.send(Event::Done(id, awaited));
            }
            .instrument(span.clone()),
        );
        None
    }

    /// Step `id`'s future is done: saves its outputs, then retries or records the step.
    fn done(shared: &Shared<'_>, id: u64, awaited: Awaited) -> Option<Report> {
        let fl = shared.take(id)?;
        let span = fl.step.span.clone();
        let _entered = span.enter();
        let outcome = match awaited {
            Awaited::Cancelled => return Some(cancelled(fl)),
            Awaited::TimedOut(limit) => Err(Failure {
                message: format!("timed out after {}", human_duration(limit)),
                source: None,
            }),
            Awaited::Returned(Err(failure)) => Err(failure),
            Awaited::Returned(Ok(values)) => {
                let step = &fl.step;
                match &fl.current {
                    Some((ctx, _, _)) => save_outputs(
                        step.runner.store,
                        step.runner.run_id,
                        step.job.key,
                        step.job.lease.as_ref(),
                        step.node,
                        values,
                        replaces_outputs(&step.job.reason),
                        ctx,
                    ),
                    None => Err(Failure::from(
                        "internal error: an async step's attempt was lost".to_string(),
                    )),
                }
            }
        };
        attempt_ended(shared, id, fl, outcome)
    }

    /// An attempt ended with `outcome`: schedules the retry after its delay, or ends the
    /// step.
    fn attempt_ended<'a>(
        shared: &Shared<'a>,
        id: u64,
        mut fl: InFlight<'a>,
        outcome: BodyResult,
    ) -> Option<Report> {
        let (ctx, attempt_started, attempt_clock) = fl.current.take()?;
        context::remove_scratch(&ctx);
        let logged = ctx.take_logged();
        let attempt = fl.attempt;
        let record = |error: Option<&Failure>| Attempt {
            attempt,
            started_at_us: attempt_started,
            duration: attempt_clock.elapsed(),
            error: error.map(|f| f.message.clone()),
        };
        match (outcome, fl.next.take()) {
            (Err(failure), Some(next)) => {
                fl.attempts.push(record(Some(&failure)));
                let delay = retry_delay(fl.step.node, &fl.step.policy, attempt, &failure);
                fl.last = Some((failure, logged));
                fl.step.inputs = next;
                fl.attempt += 1;
                let cancel = fl.step.cancel.cloned();
                shared.put(id, fl);
                let events = shared.events.clone();
                // The delay is a timer; the next attempt starts on a helper, which gives
                // it up if the run was cancelled meanwhile.
                shared.runtime.spawn(async move {
                    watch(None, Some(delay), cancel).await;
                    let _ = events.send(Event::Attempt(id));
                });
                None
            }
            (outcome, _) => {
                if attempt > 1 {
                    fl.attempts.push(record(outcome.as_ref().err()));
                }
                Some(end(fl, outcome, logged))
            }
        }
    }

    /// Records the step's execution (`step.rs`), and what to tell the coordinator.
    fn end(fl: InFlight<'_>, outcome: BodyResult, logged: Logged) -> Report {
        let InFlight {
            step,
            finished,
            started,
            attempts,
            ..
        } = fl;
        let AsyncStep {
            runner,
            mut job,
            node,
            input_rows,
            policy,
            cancel,
            span,
            ..
        } = step;
        let commit = Commit {
            store: runner.store,
            run_id: runner.run_id,
            position: job.node,
            key: job.key,
            components: &job.components,
            reason: job.reason.to_string(),
            replace_outputs: replaces_outputs(&job.reason),
            compared: job.compared.clone(),
            lease: job.lease.take(),
            policy,
            cancel,
        };
        let started = started.unwrap_or_else(|| super::super::step::started(node));
        let done = record_execution(
            commit,
            node,
            input_rows,
            Ended {
                started,
                attempts,
                logged,
                outcome,
            },
        );
        Report {
            finished: Finished {
                node: job.node,
                cancelled: false,
                result: done.result,
                duration: done.duration,
                execution: done.execution,
                key: job.key,
                reason: job.reason,
            },
            to: finished,
            span,
        }
    }

    /// The run's cancel token fired while the step's future ran: the future was dropped,
    /// its claim is released and its row recorded skipped, as a stopped worker job's (a
    /// step with caching off, which holds no claim, gets a skipped row of its own).
    fn cancelled(mut fl: InFlight<'_>) -> Report {
        let node = fl.step.node;
        info!(target: "pipeline", "Step `{}` was cancelled with the run.", node.name);
        if let Some((ctx, _, _)) = fl.current.take() {
            context::remove_scratch(&ctx);
        }
        let (started_at_us, duration) = fl
            .started
            .as_ref()
            .map(|s| (s.at_us, s.clock.elapsed()))
            .unwrap_or_else(|| (time::now_micros(), Duration::ZERO));
        let store = fl.step.runner.store;
        let job = &mut fl.step.job;
        let row = job.lease.as_ref().map(|l| l.execution());
        // Released: the key is free at once, the row failed until ended below.
        drop(job.lease.take());
        let recorded = match row {
            Some(row) => store
                .metadata()
                .end_unrecorded(row, StepStatus::Skipped, Some(CANCELLED), None)
                .map(|_| Some(row)),
            None => store
                .record(&[ExecutionRow {
                    details: ExecutionDetails::default(),
                    run_id: fl.step.runner.run_id,
                    name: &node.name,
                    step: node.step,
                    position: job.node,
                    status: StepStatus::Skipped,
                    cache_key: Some(job.key),
                    components: &job.components,
                    reason: Some(CANCELLED.to_string()),
                    error: None,
                    reused: None,
                    compared: job.compared.clone(),
                    started_at_us,
                    duration,
                    outputs: Vec::new(),
                    inputs: std::mem::take(&mut fl.step.input_rows),
                    outputs_of: None,
                    lease_holder: None,
                }])
                .map(|ids| ids.first().copied()),
        };
        let execution = recorded.unwrap_or_else(|e| {
            warn!(
                target: "pipeline",
                "Could not record how step `{}` ended: {e}",
                node.name
            );
            row
        });
        Report {
            finished: Finished {
                node: fl.step.job.node,
                cancelled: true,
                result: Err(Failure::from(CANCELLED.to_string())),
                duration,
                execution,
                key: fl.step.job.key,
                reason: fl.step.job.reason,
            },
            to: fl.finished,
            span: fl.step.span,
        }
    }

    /// Drives `future` (with its step context current during each poll, a panic caught as
    /// a failure) until it returns, `limit` passes or `cancel` fires; without a future,
    /// waits `limit` (a retry's delay) unless cancelled. The future is dropped on return.
    async fn watch(
        future: Option<(StepFuture, UserContext)>,
        limit: Option<Duration>,
        cancel: Option<CancelToken>,
    ) -> Awaited {
        let mut future = future;
        let mut deadline = limit.map(|l| Box::pin(tokio::time::sleep(l)));
        let mut tick = cancel.as_ref().map(|_| tokio::time::interval(CANCEL_POLL));
        std::future::poll_fn(move |cx| {
            if let Some((body, ctx)) = future.as_mut() {
                let _current = context::enter(ctx.clone());
                match catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx))) {
                    Ok(Poll::Ready(result)) => {
                        return Poll::Ready(Awaited::Returned(result.map_err(Failure::from)))
                    }
                    Ok(Poll::Pending) => {}
                    Err(payload) => {
                        let failure = Failure::from(panic_message(payload.as_ref()));
                        return Poll::Ready(Awaited::Returned(Err(failure)));
                    }
                }
            }
            if let (Some(deadline), Some(limit)) = (deadline.as_mut(), limit) {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Awaited::TimedOut(limit));
                }
            }
            if let (Some(tick), Some(cancel)) = (tick.as_mut(), cancel.as_ref()) {
                while tick.poll_tick(cx).is_ready() {
                    if cancel.is_cancelled() {
                        return Poll::Ready(Awaited::Cancelled);
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}
