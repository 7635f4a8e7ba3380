//! [`CancelToken`]: a way to cancel a pipeline run from another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cancels the runs it is given to (see [`Pipeline::cancel_token`](crate::Pipeline::cancel_token)).
///
/// Clones share one flag: cancel through any of them, from any thread (a Ctrl-C handler, a
/// watchdog, a UI button). The run checks it before it starts each step. Steps running at
/// that moment finish and are recorded as usual, except async steps (feature `tokio`),
/// whose futures are dropped within 100 ms (recorded skipped); steps not started yet are recorded
/// [`Skipped`](crate::StepStatus::Skipped) with reason
/// [`Reason::Cancelled`](crate::Reason::Cancelled); the run is recorded
/// [`Cancelled`](crate::RunStatus::Cancelled) and `run()` returns
/// [`Error::Cancelled`](crate::Error::Cancelled). Completed outputs stay cached, so a rerun
/// resumes where the cancelled one stopped.
///
/// A token stays cancelled: a run given a cancelled token starts no step. Make a new token
/// for the next run.
///
/// ```
/// use pipeline::prelude::*;
/// use pipeline::CancelToken;
///
/// #[step]
/// fn answer() -> u32 {
///     42
/// }
///
/// #[pipeline]
/// fn quick() -> Artifact<u32> {
///     answer()
/// }
///
/// fn main() {
///     let dir = tempfile::tempdir().unwrap();
///     let token = CancelToken::new();
///     let p = quick().store_path(dir.path()).cancel_token(token.clone());
///     // Usually from another thread: a Ctrl-C handler, a watchdog.
///     token.cancel();
///     match p.run() {
///         Err(pipeline::Error::Cancelled { not_run, .. }) => assert_eq!(not_run, 1),
///         other => panic!("expected a cancelled run, got {other:?}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    cancelled: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Cancels every run given this token or one of its clones, now and later.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}
