//! The step context: what a running step can ask of the run and tell it.
//!
//! Inside a `#[step]` body, [`context()`] returns a [`StepContext`]: the step's name, the
//! run's id, the attempt, a scratch directory removed after the attempt, and a place to log
//! metadata and metrics that are recorded with the execution (as ZenML's `log_metadata` and
//! Curifactory's `extra_metadata`) and shown by `pipeline show`, `pipeline diff` and the
//! lineage page. Nothing logged here enters a cache key; a cached step shows what the
//! execution it reused logged.
//!
//! ```
//! use pipeline::prelude::*;
//!
//! #[step]
//! fn evaluate(predictions: &[u8], labels: &[u8]) -> f64 {
//!     let hits = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
//!     let accuracy = hits as f64 / labels.len().max(1) as f64;
//!     if let Ok(ctx) = pipeline::context() {
//!         ctx.log_metric("accuracy", accuracy).ok();
//!         ctx.log_metadata("rows", labels.len());
//!     }
//!     accuracy
//! }
//! # fn main() {}
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

thread_local! {
    /// The context of the step body running on this thread, if any.
    static CURRENT: RefCell<Option<StepContext>> = const { RefCell::new(None) };
}

/// The context of the running step (see the [module docs](self)).
///
/// # Errors
///
/// [`Error::Context`] when no step body runs on this thread: outside a step, or on a thread
/// the step started itself (get the context on the step's thread and move a clone).
pub fn context() -> Result<StepContext> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        Error::Context(
            "pipeline::context() was called outside a running step; call it in a `#[step]` \
             body, on the thread that runs it (clone the context into threads you start)"
                .into(),
        )
    })
}

/// What a running step can ask and tell: see [`context()`]. Cheap to clone, and `Send +
/// Sync`, so a step can hand it to threads it starts.
#[derive(Clone)]
pub struct StepContext {
    inner: Arc<Inner>,
}

struct Inner {
    step_name: String,
    run_id: String,
    attempt: u32,
    outputs: Vec<String>,
    scratch: OnceLock<std::result::Result<tempfile::TempDir, String>>,
    logged: Mutex<Logged>,
}

/// What the step logged during one attempt.
#[derive(Default)]
pub(crate) struct Logged {
    pub(crate) metadata: serde_json::Map<String, serde_json::Value>,
    pub(crate) metrics: BTreeMap<String, f64>,
    /// Per output name, the entries for its sidecar.
    pub(crate) outputs: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("step_name", &self.inner.step_name)
            .field("run_id", &self.inner.run_id)
            .field("attempt", &self.inner.attempt)
            .finish_non_exhaustive()
    }
}

impl StepContext {
    pub(crate) fn new(step_name: &str, run_id: &str, attempt: u32, outputs: Vec<String>) -> Self {
        StepContext {
            inner: Arc::new(Inner {
                step_name: step_name.to_string(),
                run_id: run_id.to_string(),
                attempt,
                outputs,
                scratch: OnceLock::new(),
                logged: Mutex::new(Logged::default()),
            }),
        }
    }

    /// The step call's name in its pipeline (`train`, `train_2` for a second call).
    pub fn step_name(&self) -> &str {
        &self.inner.step_name
    }

    /// The id of the run the step belongs to.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Which attempt this is: 1 for the first, 2 for the first retry
    /// (`#[step(retries = N)]`).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// A directory of this attempt's own, created on first call in the system's temporary
    /// directory (on a cluster node, the node's), and removed with everything in it when
    /// the attempt ends.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory cannot be created.
    pub fn scratch_dir(&self) -> Result<&Path> {
        let made = self.inner.scratch.get_or_init(|| {
            tempfile::Builder::new()
                .prefix(&format!("pipeline-scratch-{}-", self.inner.step_name))
                .tempdir()
                .map_err(|e| e.to_string())
        });
        match made {
            Ok(dir) => Ok(dir.path()),
            Err(e) => Err(Error::Io {
                path: std::env::temp_dir(),
                source: std::io::Error::other(format!("cannot create a scratch directory: {e}")),
            }),
        }
    }

    /// Records `key = value` with the execution (a later value for the same key replaces
    /// the earlier one). `value` is anything JSON can hold: `ctx.log_metadata("rows", 1200)`,
    /// `ctx.log_metadata("source", serde_json::json!({"url": url}))`.
    pub fn log_metadata(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.logged().metadata.insert(key.into(), value.into());
    }

    /// Records metric `name = value` with the execution (a later value replaces the earlier
    /// one). Metrics are numbers that runs are compared by: `pipeline diff` shows them side
    /// by side, and [`Store::metric`](crate::Store::metric) reads one metric of every run of
    /// a pipeline.
    ///
    /// # Errors
    ///
    /// [`Error::Context`] when `value` is not finite (NaN or infinite): nothing is recorded.
    pub fn log_metric(&self, name: impl Into<String>, value: f64) -> Result<()> {
        let name = name.into();
        if !value.is_finite() {
            return Err(Error::Context(format!(
                "metric `{name}` of step `{}` is {value}, not a finite number; nothing was recorded",
                self.inner.step_name
            )));
        }
        self.logged().metrics.insert(name, value);
        Ok(())
    }

    /// Records `key = value` in the sidecar (and the artifact record) of output `output`,
    /// beside what its cacher wrote. `output` is the output's name: `output` for a step
    /// with one, or a name of `#[step(outputs(..))]`.
    ///
    /// # Errors
    ///
    /// [`Error::Context`] when the step has no output of that name.
    pub fn output_metadata(
        &self,
        output: &str,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Result<()> {
        if !self.inner.outputs.iter().any(|o| o == output) {
            return Err(Error::Context(format!(
                "step `{}` has no output `{output}`; its outputs are: {}",
                self.inner.step_name,
                self.inner.outputs.join(", ")
            )));
        }
        self.logged()
            .outputs
            .entry(output.to_string())
            .or_default()
            .insert(key.into(), value.into());
        Ok(())
    }

    fn logged(&self) -> std::sync::MutexGuard<'_, Logged> {
        // A step thread that panicked while logging leaves the entries as they were.
        self.inner
            .logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What was logged so far.
    pub(crate) fn take_logged(&self) -> Logged {
        std::mem::take(&mut *self.logged())
    }

    /// What was logged for the outputs' sidecars so far, by output name.
    pub(crate) fn take_output_metadata(
        &self,
    ) -> BTreeMap<String, serde_json::Map<String, serde_json::Value>> {
        std::mem::take(&mut self.logged().outputs)
    }

    /// The scratch directory's path, if one was made.
    pub(crate) fn scratch_path(&self) -> Option<PathBuf> {
        match self.inner.scratch.get() {
            Some(Ok(dir)) => Some(dir.path().to_path_buf()),
            _ => None,
        }
    }
}

/// Makes `ctx` the current context of this thread until the guard drops.
pub(crate) fn enter(ctx: StepContext) -> Entered {
    let previous = CURRENT.with(|c| c.replace(Some(ctx)));
    Entered { previous }
}

/// Restores the thread's previous context (a step run by a step: none in practice).
pub(crate) struct Entered {
    previous: Option<StepContext>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Removes an attempt's scratch directory now, even if the step kept a clone of its
/// context (the directory belongs to the attempt, not to the context value).
pub(crate) fn remove_scratch(ctx: &StepContext) {
    if let Some(path) = ctx.scratch_path() {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(target: "pipeline", "Could not remove scratch directory {}: {e}", path.display());
            }
        }
    }
}

/// Merges the entries a step logged for one output into what its cacher reported: an
/// object gains the keys (the step's win), anything else is kept under `cacher`.
pub(crate) fn merge_output_metadata(
    cacher: Option<serde_json::Value>,
    logged: Option<serde_json::Map<String, serde_json::Value>>,
) -> Option<serde_json::Value> {
    let Some(logged) = logged else {
        return cacher;
    };
    let mut map = match cacher {
        Some(serde_json::Value::Object(map)) => map,
        Some(other) => {
            let mut m = serde_json::Map::new();
            m.insert("cacher".into(), other);
            m
        }
        None => serde_json::Map::new(),
    };
    map.extend(logged);
    Some(serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_step_is_an_error() {
        let e = context().unwrap_err();
        assert!(e.to_string().contains("outside a running step"), "{e}");
    }

    #[test]
    fn logs_reach_the_executor_and_the_scratch_dir_goes() {
        let ctx = StepContext::new("train", "run-1", 2, vec!["model".into()]);
        {
            let _in = enter(ctx.clone());
            let c = context().unwrap();
            assert_eq!(
                (c.step_name(), c.run_id(), c.attempt()),
                ("train", "run-1", 2)
            );
            c.log_metadata("rows", 12);
            c.log_metric("accuracy", 0.5).unwrap();
            assert!(c.log_metric("loss", f64::NAN).is_err());
            c.output_metadata("model", "layers", 3).unwrap();
            assert!(c.output_metadata("nope", "k", 1).is_err());
            let dir = c.scratch_dir().unwrap().to_path_buf();
            std::fs::write(dir.join("x"), b"1").unwrap();
            assert!(dir.exists());
        }
        assert!(context().is_err(), "the context ends with the guard");
        let logged = ctx.take_logged();
        assert_eq!(logged.metadata["rows"], 12);
        assert_eq!(logged.metrics["accuracy"], 0.5);
        assert!(!logged.metrics.contains_key("loss"));
        let dir = ctx.scratch_path().unwrap();
        remove_scratch(&ctx);
        assert!(!dir.exists());
    }

    #[test]
    fn output_metadata_merges_with_the_cachers() {
        let mut logged = serde_json::Map::new();
        logged.insert("k".into(), 1.into());
        let merged = merge_output_metadata(
            Some(serde_json::json!({"shape": [2]})),
            Some(logged.clone()),
        );
        assert_eq!(merged, Some(serde_json::json!({"shape": [2], "k": 1})));
        let merged = merge_output_metadata(Some(serde_json::json!(7)), Some(logged));
        assert_eq!(merged, Some(serde_json::json!({"cacher": 7, "k": 1})));
        assert_eq!(merge_output_metadata(None, None), None);
    }
}
