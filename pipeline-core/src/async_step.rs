//! `async fn` steps (feature `tokio`).
//!
//! `#[step]` gives an async step two forms. Its future, unpolled, with its fetched
//! arguments moved in (so it is `'static`): a run drives it on a Tokio runtime the run
//! owns, with `max_parallelism` workers, and no thread waits for it
//! (`executor/async_steps.rs` tells how: start and commit on helper threads, waiting on
//! the runtime, retries and timeouts on its timers). A waiting step holds no
//! `max_parallelism` slot; only its polls count (the coordinator counts an async step as
//! taking none, and the runtime's workers bound the polls), so 300 steps that each sleep
//! overlap with `max_parallelism(2)` on a handful of threads.
//!
//! And a blocking form, [`run_async`], which a worker process (the process and Slurm
//! backends, one step per worker) runs: the future on a current-thread runtime of its
//! own, on the worker's thread.
//!
//! Without the feature, `run_async`'s stand-in has a bound no future meets, so an `async
//! fn` step is a compile error that names the feature.

#[cfg(feature = "tokio")]
mod enabled {
    use std::future::Future;

    /// The runtime a run drives its async steps on (`executor/async_steps.rs`): owned by
    /// the run, with `workers` worker threads (the run's `max_parallelism`), so at most
    /// that many async steps are polled at once.
    ///
    /// # Errors
    ///
    /// When the OS refuses the runtime's threads or timers.
    pub(crate) fn run_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("pipeline-async-step")
            .enable_all()
            .build()
    }

    /// Runs an async step's future to completion on a runtime of its own, on this thread,
    /// and returns its output; a panic in the future is resumed here (the executor records
    /// it as the step's failure). For generated code: the blocking form of an async step,
    /// which a worker process (one step at a time) runs. A run's own threads never call
    /// it: they drive the step's future on the run's runtime without waiting for it.
    ///
    /// # Panics
    ///
    /// When the future panics (re-raised on this thread), when the OS refuses a runtime,
    /// or when called from inside a Tokio runtime.
    pub fn run_async<F>(future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Starting a runtime fails only when the OS refuses timers; nothing async can
            // run then.
            .expect("pipeline: cannot start a Tokio runtime for an async step")
            .block_on(future)
    }
}

#[cfg(feature = "tokio")]
pub use enabled::run_async;
#[cfg(feature = "tokio")]
pub(crate) use enabled::run_runtime;

#[cfg(not(feature = "tokio"))]
mod disabled {
    /// Without the `tokio` feature an `async fn` step cannot run: this bound, which no
    /// future meets, turns it into a compile error that names the feature.
    #[diagnostic::on_unimplemented(
        message = "`async fn` steps need the `tokio` feature of `pipeline`",
        label = "this step is `async`",
        note = "enable it in Cargo.toml: `pipeline = {{ package = \"cached-pipeline\", version = \"0.1\", features = [\"tokio\"] }}`, or make the step a plain `fn`"
    )]
    pub trait AsyncStepsNeedTheTokioFeature {}

    /// Stands in for the `tokio` feature's `run_async` (see the trait).
    pub fn run_async<F>(_future: F) -> F::Output
    where
        F: std::future::Future + AsyncStepsNeedTheTokioFeature,
    {
        unreachable!("no future implements AsyncStepsNeedTheTokioFeature")
    }
}

#[cfg(not(feature = "tokio"))]
pub use disabled::run_async;
