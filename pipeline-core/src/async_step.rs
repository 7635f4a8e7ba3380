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
    use std::sync::OnceLock;

    /// The runtime async steps run on: one per process, a worker per core.
    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("pipeline-async-step")
                .enable_all()
                .build()
                // Starting a runtime fails only when the OS refuses threads or timers;
                // nothing async can run then.
                .expect("pipeline: cannot start the Tokio runtime for async steps")
        })
    }

    /// Runs an async step's future to completion on the step runtime and returns its
    /// output; a panic in the future is resumed here (the executor records it as the
    /// step's failure). For generated code.
    ///
    /// # Panics
    ///
    /// When the future panics (re-raised on this thread), or when called on a thread of
    /// the step runtime itself.
    pub fn run_async<F>(future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = runtime();
        let handle = rt.spawn(future);
        match rt.block_on(handle) {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the async step was cancelled: {e}"),
        }
    }
}

#[cfg(feature = "tokio")]
pub use enabled::run_async;

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
