//! [`StoredArtifact`]: one recorded artifact, found by run + step + output or by content
//! hash, and the one general way to load it.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ArtifactRecord, Store};
use crate::cacher::{Bincode, Cacher, Json};
use crate::error::{Error, Result};
use crate::key::Hash128;

/// A recorded artifact: its [`ArtifactRecord`], where it came from, and loading.
///
/// Found by [`Store::artifact`] (run, step and output name) or [`Store::artifact_by_hash`]
/// (content hash). Holds the metadata only; [`load`](Self::load) and
/// [`load_with`](Self::load_with) read and verify the bytes.
///
/// ```no_run
/// # fn main() -> pipeline::Result<()> {
/// let store = pipeline::Store::open(".pipeline")?;
/// let x_train = store.artifact("last-run", "normalizer", "x_train")?;
/// println!("{} bytes, {}", x_train.size(), x_train.content_hash());
/// let values: Vec<f64> = x_train.load()?;
/// // The same bytes, found by their hash:
/// let again: Vec<f64> = store.artifact_by_hash(x_train.content_hash())?.load()?;
/// assert_eq!(values, again);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub(super) store: Store,
    pub(super) record: ArtifactRecord,
    /// Name of the step call that wrote (or reused) it, within its run.
    pub(super) step: String,
    /// The execution that wrote the bytes (the reused one for a cached step).
    pub(super) execution: i64,
    /// The recorded fingerprint of the output type's serde shape; empty when unknown.
    pub(super) shape: String,
}

impl StoredArtifact {
    /// The record: output name, content hash, size, type, cacher, metadata.
    pub fn record(&self) -> &ArtifactRecord {
        &self.record
    }

    /// The record, by value.
    pub fn into_record(self) -> ArtifactRecord {
        self.record
    }

    /// Hash of the stored bytes.
    pub fn content_hash(&self) -> Hash128 {
        self.record.content_hash
    }

    /// Output name within its step (`output` for a single-output step).
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Name of the step call that produced it, within its run.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Id of the execution that wrote the bytes (for a cached step, the reused one).
    pub fn execution_id(&self) -> i64 {
        self.execution
    }

    /// Rust type name of the value, as recorded.
    pub fn type_name(&self) -> &str {
        &self.record.type_name
    }

    /// Size of the stored bytes, in bytes.
    pub fn size(&self) -> u64 {
        self.record.size
    }

    /// Id of the cacher that stored it (`bincode`, `json`, ...).
    pub fn cacher(&self) -> &str {
        &self.record.cacher
    }

    /// Path of the blob holding the bytes (inside the store's `artifacts/` folder).
    pub fn path(&self) -> PathBuf {
        self.store.blob_path(self.record.content_hash)
    }

    /// Loads the value as `T` with the built-in cacher it was stored with (bincode or
    /// JSON), verifying the content hash.
    ///
    /// # Errors
    ///
    /// - [`Error::TypeMismatch`] when the artifact was stored as another type, or as a type
    ///   of the same name whose serde shape differs from `T`'s (the type was edited since:
    ///   the bytes would decode into the wrong fields, or not at all);
    /// - [`Error::Cacher`] when it was stored by a cacher other than `bincode` or `json`
    ///   (use [`load_with`](Self::load_with) and that cacher);
    /// - [`Error::Undecodable`] when the bytes do not decode as `T` (recorded, so the next
    ///   run executes the step again);
    /// - [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged;
    /// - [`Error::Io`] when the blob cannot be read.
    pub fn load<T>(&self) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.check_type::<T>()?;
        let shape = crate::shape::shape_of::<T>();
        let known = |s: &str| !s.is_empty() && s != crate::shape::UNTRACED;
        if known(&self.shape) && known(shape.fingerprint()) && self.shape != shape.fingerprint() {
            let short = |s: &str| s.get(..8).unwrap_or(s).to_string();
            return Err(Error::TypeMismatch {
                artifact: self.describe(),
                stored: format!(
                    "{} (serde shape {})",
                    self.record.type_name,
                    short(&self.shape)
                ),
                requested: format!(
                    "{} (serde shape {}, edited since)",
                    self.record.type_name,
                    short(shape.fingerprint())
                ),
            });
        }
        let loaded = match self.record.cacher.as_str() {
            "bincode" => self.read(&Bincode),
            "json" => self.read(&Json),
            other => {
                return Err(Error::Cacher {
                    cacher: other.to_string(),
                    action: "load",
                    what: self.describe(),
                    source: "not a built-in cacher; load it with `.load_with(&YourCacher)`".into(),
                })
            }
        };
        match loaded {
            Err(Error::Cacher { cacher, source, .. }) => Err(self.store.undecodable(
                self.execution,
                &self.step,
                &self.record.name,
                &self.record.type_name,
                &cacher,
                source,
            )),
            other => other,
        }
    }

    /// Loads the value as `T` with `cacher`, verifying the content hash: for outputs stored
    /// by a cacher of your own.
    ///
    /// # Errors
    ///
    /// - [`Error::TypeMismatch`] when `T` is not the recorded type;
    /// - [`Error::Cacher`] when the cacher cannot read the bytes (its error is the source);
    /// - [`Error::BlobMissing`] or [`Error::BlobCorrupt`] when the bytes are gone or damaged;
    /// - [`Error::Io`] when the blob cannot be read.
    pub fn load_with<T: 'static, C: Cacher<T>>(&self, cacher: &C) -> Result<T> {
        self.check_type::<T>()?;
        self.read(cacher)
    }

    fn check_type<T>(&self) -> Result<()> {
        let requested = std::any::type_name::<T>();
        if self.record.type_name != requested {
            return Err(Error::TypeMismatch {
                artifact: self.describe(),
                stored: self.record.type_name.clone(),
                requested: requested.to_string(),
            });
        }
        Ok(())
    }

    fn read<T, C: Cacher<T>>(&self, cacher: &C) -> Result<T> {
        self.store
            .read_blob(self.record.content_hash, cacher.id(), |input| {
                cacher.load(input)
            })
    }

    /// `` `x_train` of step `normalizer` (3f1c...) ``
    fn describe(&self) -> String {
        format!(
            "`{}` of step `{}` ({})",
            self.record.name, self.step, self.record.content_hash
        )
    }
}
