//! `async fn` steps (feature `tokio`).
//!
//! A step's future owns its fetched arguments, so it is `'static`; [`run_async`] spawns it
//! on one Tokio runtime per process (a worker thread per core, started on first use) and
//! waits for its output on the thread that runs the step. Waiting takes no
//! `max_parallelism` slot (the coordinator counts an async step as 0 CPUs), so 50 steps
//! that each sleep overlap even with `max_parallelism(2)`; their polls run on the
//! runtime's workers.
//!
//! Not yet thread-free: each async step that is in flight still parks one thread of the
//! run (the thread that waits for its output, saves it and commits the execution).

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
