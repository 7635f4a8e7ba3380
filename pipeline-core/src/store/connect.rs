//! Opening the store a configuration names ([`StoreConfig`]): the local default, SQLite
//! with artifact bytes elsewhere (another folder, an S3 bucket), and PostgreSQL metadata
//! (feature `postgres`) with artifact bytes in a folder or an S3 bucket.
//!
//! A store whose metadata is in PostgreSQL still needs a local folder: the read-through
//! cache of S3 downloads (`<local>/artifacts/cache/`) and nothing else of the store (blobs
//! being written go straight to their backend's own temporary names). That folder is
//! [`StoreOptions::local_dir`], by default `$PIPELINE_HOME`, else `./.pipeline`
//! ([`default_path`](super::default_path)), and [`Store::path`] returns it.

use std::sync::Arc;

use super::artifacts::LocalArtifacts;
use super::{Store, StoreOptions};
use crate::config::{ArtifactLocation, ConfigError, MetadataLocation, StoreConfig};
use crate::error::{Error, Result};

impl Store {
    /// Opens the store the environment and `pipeline.toml` name (see
    /// [`config`](crate::config) for the variables, keys and their precedence). Without any
    /// setting this is `./.pipeline`, or `$PIPELINE_HOME`, as [`Store::open_default`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a wrong or incomplete setting, or a backend this version or
    /// build cannot use; otherwise as [`Store::connect`].
    pub fn from_env() -> Result<Store> {
        Store::connect(&StoreConfig::from_env()?)
    }

    /// Opens the store `config` names, with default options.
    ///
    /// ```no_run
    /// use pipeline_core::config::StoreConfig;
    /// use pipeline_core::Store;
    ///
    /// // Metadata in a local SQLite file, artifact bytes in a bucket (AWS_* variables
    /// // give the endpoint, region and keys).
    /// let config = StoreConfig::new("sqlite:/data/run/metadata.sqlite", Some("s3://team/runs"))?;
    /// let store = Store::connect(&config)?;
    /// # Ok::<(), pipeline_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the metadata file is not named `metadata.sqlite`, or names a
    /// backend this build lacks (it names the cargo feature); [`Error::Remote`] when the S3
    /// client cannot be set up, or when PostgreSQL cannot be reached within 10 s, refuses
    /// the credentials (the error names the user, never the password) or has no such
    /// database; [`Error::StoreTooNew`] for a PostgreSQL database written by a newer
    /// version; with [`StoreOptions::read_only`], [`Error::NotAStore`] for a PostgreSQL
    /// database holding no store (nothing is created in it) and [`Error::ReadOnly`] for
    /// one whose schema needs an upgrade; otherwise as [`Store::open_with`].
    pub fn connect(config: &StoreConfig) -> Result<Store> {
        Store::connect_with(config, StoreOptions::default())
    }

    /// [`Store::connect`] with options; `options.artifacts`, when set, wins over the
    /// configured artifact location.
    ///
    /// # Errors
    ///
    /// As [`Store::connect`].
    pub fn connect_with(config: &StoreConfig, options: StoreOptions) -> Result<Store> {
        // Artifacts given in code are not where the configuration says: a worker process
        // could not find them again.
        let described = options.artifacts.is_none();
        let store = Store::connect_configured(config, options)?;
        Ok(if described {
            store.opened_from(config)
        } else {
            store
        })
    }

    fn connect_configured(config: &StoreConfig, mut options: StoreOptions) -> Result<Store> {
        let dir = match config.metadata() {
            MetadataLocation::Sqlite { path } => {
                if path.file_name() != Some("metadata.sqlite".as_ref()) {
                    return Err(Error::Config(ConfigError {
                        origin: config.origin().clone(),
                        message: format!(
                            "the SQLite metadata file must be called `metadata.sqlite` (the store is the folder holding it); got {}",
                            path.display()
                        ),
                    }));
                }
                path.parent().map(|p| p.to_path_buf()).unwrap_or_default()
            }
            MetadataLocation::Postgres(url) => return postgres(config, url, options),
        };
        if config.local_dir().is_some() || options.artifacts.is_some() {
            return Store::open_with(dir, options);
        }
        match config.artifacts() {
            ArtifactLocation::Folder { path } => {
                // Temporary files are named after the process, so concurrent writers never
                // share one.
                let owner = format!("p{}", std::process::id());
                options.artifacts = Some(Arc::new(LocalArtifacts::new(path.clone(), owner)));
                Store::open_with(dir, options)
            }
            ArtifactLocation::S3 { bucket, prefix } => {
                let blobs = s3(config, bucket, prefix, &dir)?;
                options.artifacts = Some(blobs.store());
                let store = Store::open_with(dir, options)?;
                // The cache verifies downloads with the store's hash from the first one on.
                blobs.learn_content_hash(store.content_hash_algorithm());
                Ok(store)
            }
        }
    }
}

/// Opens a store whose metadata is in the PostgreSQL database `url` names, with its
/// artifact bytes where `config` says (or in `options.artifacts`), and its local folder
/// (the S3 read cache) at `$PIPELINE_HOME` or `./.pipeline`.
#[cfg(feature = "postgres")]
fn postgres(
    config: &StoreConfig,
    url: &crate::config::PostgresUrl,
    options: StoreOptions,
) -> Result<Store> {
    use super::PostgresMetadata;

    let local = options
        .local_dir
        .clone()
        .unwrap_or_else(super::default_path);
    // A read-only handle creates nothing: not the schema of an empty database, not the
    // setting naming the blobs' hash.
    let (meta, content_hash) = if options.read_only {
        let meta = PostgresMetadata::connect_read_only(url)?;
        let content_hash = meta.recorded_content_hash()?;
        (meta, content_hash)
    } else {
        let meta = PostgresMetadata::connect(url, options.lease_ttl)?;
        let content_hash = meta.content_hash(options.content_hash)?;
        (meta, content_hash)
    };
    let blobs: Arc<dyn super::artifacts::ArtifactStore> =
        match (&options.artifacts, config.artifacts()) {
            (Some(blobs), _) => Arc::clone(blobs),
            (None, ArtifactLocation::Folder { path }) => {
                let owner = format!("p{}", std::process::id());
                Arc::new(LocalArtifacts::new(path.clone(), owner))
            }
            (None, ArtifactLocation::S3 { bucket, prefix }) => {
                let blobs = s3(config, bucket, prefix, &local)?;
                blobs.learn_content_hash(content_hash);
                blobs.store()
            }
        };
    let read_only = options
        .read_only
        .then_some(crate::error::ReadOnlyCause::Requested);
    Ok(Store::from_backend(
        Arc::new(meta),
        blobs,
        content_hash,
        local,
        url.to_string(),
        read_only,
        options.lease_ttl,
    ))
}

#[cfg(not(feature = "postgres"))]
fn postgres(
    config: &StoreConfig,
    url: &crate::config::PostgresUrl,
    _options: StoreOptions,
) -> Result<Store> {
    Err(Error::Config(ConfigError {
        origin: config.origin().clone(),
        message: format!(
            "metadata in PostgreSQL ({url}) needs the `postgres` feature of cached-pipeline, which this build lacks; enable it in Cargo.toml"
        ),
    }))
}

/// The S3 backend for bucket `bucket` under `prefix`, with downloaded blobs kept in
/// `local/artifacts/cache/` (the read-through cache, see
/// [`ObjectArtifacts::with_read_cache`](super::artifacts::ObjectArtifacts::with_read_cache)).
#[cfg(feature = "s3")]
fn s3(config: &StoreConfig, bucket: &str, prefix: &str, local: &std::path::Path) -> Result<S3> {
    let blobs = super::artifacts::ObjectArtifacts::s3(bucket, prefix)
        .map_err(|e| Error::Remote {
            location: config.artifacts().to_string(),
            problem: "cannot set up the S3 client; check AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            source: Some(Box::new(e)),
        })?
        .with_read_cache(local.join("artifacts").join("cache"));
    Ok(S3(blobs))
}

/// An S3 artifact backend being set up.
#[cfg(feature = "s3")]
struct S3(super::artifacts::ObjectArtifacts);

#[cfg(feature = "s3")]
impl S3 {
    fn store(&self) -> Arc<dyn super::artifacts::ArtifactStore> {
        Arc::new(self.0.clone())
    }

    /// The cache verifies downloads with the store's hash from the first one on.
    fn learn_content_hash(&self, kind: super::ContentHash) {
        self.0.learn_content_hash(kind);
    }
}

/// No S3 backend in this build.
#[cfg(not(feature = "s3"))]
enum S3 {}

#[cfg(not(feature = "s3"))]
impl S3 {
    fn store(&self) -> Arc<dyn super::artifacts::ArtifactStore> {
        match *self {}
    }

    fn learn_content_hash(&self, _kind: super::ContentHash) {
        match *self {}
    }
}

#[cfg(not(feature = "s3"))]
fn s3(config: &StoreConfig, _bucket: &str, _prefix: &str, _local: &std::path::Path) -> Result<S3> {
    Err(Error::Config(ConfigError {
        origin: config.origin().clone(),
        message: format!(
            "artifacts in S3 ({}) need the `s3` feature of cached-pipeline, which this build lacks; enable it in Cargo.toml",
            config.artifacts()
        ),
    }))
}
