//! `Artifact<T>`: a typed handle to a step output, unbound while a pipeline is built and
//! bound to stored bytes once a run has produced (or reused) them.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::key::Hash128;
use crate::output::{NodeId, OutputSpec};
use crate::store::Store;

/// A step output: `Artifact<T>` in a pipeline body, and a loadable handle in a [`Run`](crate::Run).
///
/// Handles cannot be dereferenced: a pipeline body only wires steps together, so branching
/// on an artifact's value there is a compile error. Branch inside a step instead.
pub struct Artifact<T> {
    pub(crate) graph: u64,
    pub(crate) node: NodeId,
    pub(crate) output: usize,
    pub(crate) bound: Option<Arc<BoundArtifact>>,
    // `fn() -> T` keeps the handle `Send + Sync` whatever `T` is: it holds no `T`.
    _type: PhantomData<fn() -> T>,
}

/// Where a bound artifact's bytes live and how to read them.
pub(crate) struct BoundArtifact {
    pub(crate) store: Store,
    pub(crate) hash: Hash128,
    pub(crate) size: u64,
    pub(crate) step: String,
    pub(crate) output_name: String,
    pub(crate) type_name: String,
    pub(crate) spec: Arc<OutputSpec>,
    /// The execution that wrote the bytes (the reused one for a cached step); 0 if unknown.
    pub(crate) execution: i64,
}

impl<T> Artifact<T> {
    pub(crate) fn unbound(graph: u64, node: NodeId, output: usize) -> Self {
        Artifact {
            graph,
            node,
            output,
            bound: None,
            _type: PhantomData,
        }
    }

    pub(crate) fn with_binding(&self, bound: Arc<BoundArtifact>) -> Self {
        Artifact {
            bound: Some(bound),
            ..self.clone()
        }
    }

    fn bound(&self) -> Result<&BoundArtifact> {
        self.bound
            .as_deref()
            .ok_or_else(|| Error::Unbound(format!("output {} of node {}", self.output, self.node)))
    }

    /// The hash of the stored bytes (`Display` writes it as 32 hex digits).
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] when the handle is not bound to a run yet (inside a pipeline body).
    pub fn content_hash(&self) -> Result<Hash128> {
        Ok(self.bound()?.hash)
    }

    /// Path of the blob holding the bytes: inside the store's `artifacts/` folder, or with
    /// another artifact backend ([`StoreOptions::artifacts`](crate::store::StoreOptions)),
    /// its location there (a URL for remote ones).
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] when the handle is not bound to a run yet (inside a pipeline body).
    pub fn path(&self) -> Result<PathBuf> {
        let bound = self.bound()?;
        Ok(bound.store.blob_path(bound.hash))
    }

    /// Size of the stored bytes, in bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] when the handle is not bound to a run yet (inside a pipeline body).
    pub fn size(&self) -> Result<u64> {
        Ok(self.bound()?.size)
    }

    /// Name of the step that produced the artifact.
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] when the handle is not bound to a run yet (inside a pipeline body).
    pub fn step(&self) -> Result<&str> {
        Ok(&self.bound()?.step)
    }

    /// Name of the output within its step (`output` for single-output steps).
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] when the handle is not bound to a run yet (inside a pipeline body).
    pub fn output_name(&self) -> Result<&str> {
        Ok(&self.bound()?.output_name)
    }

    /// Whether the handle is bound to stored bytes.
    pub fn is_bound(&self) -> bool {
        self.bound.is_some()
    }

    /// Labels the step call that returned this handle, in a `#[pipeline]` body: the label
    /// is the call's name in place of the generated `step`, `step_2`, ... Use it for calls
    /// in a loop, so each call's name says which it is and stays the same when the loop
    /// changes: `fit_ridge(&x, lambda).named(format!("fit_ridge[{lambda}]"))`.
    ///
    /// The name shows in the run's records ([`StepRecord::name`](crate::StepRecord)),
    /// [`Run::step`](crate::Run::step), `pipeline show` and the dashboard, and `diff`,
    /// `explain` and the dashboard's compare page pair calls across runs by it. It does
    /// not enter the cache key: relabelling a call reuses its cached outputs.
    ///
    /// A label is non-empty, at most 200 characters, without `/` or control characters
    /// (brackets, spaces and `=` are fine), and unique within the pipeline. A label that
    /// breaks these rules fails the run with [`Error::Graph`] naming the calls involved,
    /// as other wiring mistakes do. Labelling a call again replaces its label. For a step
    /// with several outputs, `.named(..)` on its `Outputs` struct does the same
    /// ([`Named`](crate::Named)).
    ///
    /// # Panics
    /// Outside a `#[pipeline]` body (there is no call to name).
    #[must_use = "`.named(..)` returns the handle it was called on"]
    pub fn named(self, label: impl Into<String>) -> Self {
        crate::graph::name_call((self.graph, self.node), label.into());
        self
    }
}

impl<T: 'static> Artifact<T> {
    /// Reads the value from the store, verifying its content hash.
    ///
    /// # Errors
    ///
    /// [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged,
    /// [`Error::Undecodable`] when they do not decode as `T` (the store then records that,
    /// so the next run executes the producing step again), [`Error::TypeMismatch`] when `T`
    /// is not the type the step returned.
    pub fn load(&self) -> Result<T> {
        // Only the downcast depends on `T`: the rest is compiled once, here, not in every
        // crate that loads a `T` (BENCHMARKS.md, figure 7).
        let bound = self.bound()?;
        bound
            .load_any()?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| bound.type_mismatch(std::any::type_name::<T>()))
    }
}

impl BoundArtifact {
    /// The stored value, decoded by the output's cacher (see [`Artifact::load`]).
    fn load_any(&self) -> Result<Box<dyn Any + Send + Sync>> {
        match self
            .store
            .read_blob(self.hash, self.spec.cacher_id(), |input| {
                self.spec.load(input)
            }) {
            Ok(value) => Ok(value),
            Err(Error::Cacher { source, .. }) => Err(self.store.undecodable(
                self.execution,
                &self.step,
                &self.output_name,
                &self.type_name,
                self.spec.cacher_id(),
                source,
            )),
            Err(e) => Err(e),
        }
    }

    /// The error for a load as the type named `requested`, which the step did not return.
    fn type_mismatch(&self, requested: &str) -> Error {
        Error::TypeMismatch {
            artifact: format!("`{}` of step `{}`", self.output_name, self.step),
            stored: self.type_name.clone(),
            requested: requested.to_string(),
        }
    }
}

impl<T> Clone for Artifact<T> {
    fn clone(&self) -> Self {
        Artifact {
            graph: self.graph,
            node: self.node,
            output: self.output,
            bound: self.bound.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Artifact<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Artifact");
        d.field("type", &std::any::type_name::<T>());
        match &self.bound {
            Some(b) => d
                .field("step", &b.step)
                .field("output", &b.output_name)
                .field("content_hash", &b.hash.to_hex())
                .field("size", &b.size),
            None => d.field("node", &self.node).field("output", &self.output),
        };
        d.finish()
    }
}
