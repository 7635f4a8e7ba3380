//! Opening the store a configuration names ([`StoreConfig`]): the local default, SQLite
//! with artifact bytes elsewhere (another folder, an S3 bucket), and, in time, PostgreSQL.

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
    /// backend this build lacks (it names the cargo feature) or this version cannot use
    /// yet (PostgreSQL); [`Error::Remote`] when the S3 client cannot be set up; otherwise
    /// as [`Store::open_with`].
    pub fn connect(config: &StoreConfig) -> Result<Store> {
        Store::connect_with(config, StoreOptions::default())
    }

    /// [`Store::connect`] with options; `options.artifacts`, when set, wins over the
    /// configured artifact location.
    ///
    /// # Errors
    ///
    /// As [`Store::connect`].
    pub fn connect_with(config: &StoreConfig, mut options: StoreOptions) -> Result<Store> {
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
            MetadataLocation::Postgres(url) => {
                return Err(Error::Config(ConfigError {
                    origin: config.origin().clone(),
                    message: format!(
                        "metadata in PostgreSQL ({url}) is not supported by this version yet: its backend is being built; use sqlite:PATH/metadata.sqlite for now"
                    ),
                }))
            }
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
            ArtifactLocation::S3 { bucket, prefix } => s3(config, bucket, prefix, dir, options),
        }
    }
}

/// Opens the store in `dir` with its artifact bytes in S3 bucket `bucket` under `prefix`,
/// and downloaded blobs kept in `dir/artifacts/cache/` (the read-through cache, see
/// [`ObjectArtifacts::with_read_cache`](super::artifacts::ObjectArtifacts::with_read_cache)).
#[cfg(feature = "s3")]
fn s3(
    config: &StoreConfig,
    bucket: &str,
    prefix: &str,
    dir: std::path::PathBuf,
    mut options: StoreOptions,
) -> Result<Store> {
    let blobs = super::artifacts::ObjectArtifacts::s3(bucket, prefix)
        .map_err(|e| Error::Remote {
            location: config.artifacts().to_string(),
            problem: "cannot set up the S3 client; check AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            source: Some(Box::new(e)),
        })?
        .with_read_cache(dir.join("artifacts").join("cache"));
    options.artifacts = Some(Arc::new(blobs.clone()));
    let store = Store::open_with(dir, options)?;
    // The cache verifies downloads with the store's hash from the first one on.
    blobs.learn_content_hash(store.content_hash_algorithm());
    Ok(store)
}

#[cfg(not(feature = "s3"))]
fn s3(
    config: &StoreConfig,
    _bucket: &str,
    _prefix: &str,
    _dir: std::path::PathBuf,
    _options: StoreOptions,
) -> Result<Store> {
    Err(Error::Config(ConfigError {
        origin: config.origin().clone(),
        message: format!(
            "artifacts in S3 ({}) need the `s3` feature of cached-pipeline, which this build lacks; enable it in Cargo.toml",
            config.artifacts()
        ),
    }))
}
