//! Where a store lives and how steps run, chosen by configuration alone (DESIGN.md §9).
//!
//! The same pipeline code runs on the embedded default (SQLite + a blob folder at
//! `./.pipeline`) or on shared infrastructure; only these settings change:
//!
//! | setting | environment variable | `pipeline.toml` |
//! |---|---|---|
//! | metadata | `PIPELINE_METADATA=postgres://user@host:port/db` or `sqlite:PATH` | `[store] metadata` |
//! | artifact bytes | `PIPELINE_ARTIFACTS=s3://bucket/prefix` or a folder path | `[store] artifacts` |
//! | local store folder | `PIPELINE_HOME=DIR` | — |
//! | executor | `PIPELINE_EXECUTOR=threads \| processes \| slurm` | `[executor] kind` |
//! | Slurm | — | `[slurm] partition, account, extra_args` |
//!
//! Precedence, as cargo resolves its own configuration: the builder
//! ([`Pipeline::store`](crate::Pipeline::store)) wins over environment variables, which win
//! over `pipeline.toml` (the nearest one, searched from the working directory upward, like
//! `Cargo.toml`), which wins over `PIPELINE_HOME`, which wins over `./.pipeline`.
//!
//! * `PIPELINE_METADATA=sqlite:PATH` alone keeps the blobs in `artifacts/` beside the
//!   database file, as a local store does.
//! * A remote location (`postgres://`, `s3://`) needs the other half too: setting only one
//!   is an error that names the missing one.
//! * S3 endpoint, region and keys are not settings of ours: `object_store` reads the
//!   standard `AWS_*` variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
//!
//! Credentials never leave this module in clear: a PostgreSQL password is kept apart from
//! the URL, and [`MetadataLocation`]'s `Display` and `Debug` show `***` in its place.
//!
//! Parsing is hand-written only for the precedence rules; URLs are parsed by the `url`
//! crate and `pipeline.toml` by `toml`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::local_fs::PIPELINE_HOME;

/// `Result` of this module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A setting of the store or executor (environment variable, `pipeline.toml`, code) is
/// wrong or incomplete. The message never contains a credential. Converts into
/// [`Error::Config`](crate::Error::Config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration from {origin}: {message}")]
pub struct ConfigError {
    /// Where the setting came from: `$PIPELINE_METADATA`, a key of a `pipeline.toml`..
    pub origin: Origin,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Environment variable naming the metadata store (`postgres://..` or `sqlite:PATH`).
pub const PIPELINE_METADATA: &str = "PIPELINE_METADATA";
/// Environment variable naming where artifact bytes go (`s3://bucket/prefix` or a folder).
pub const PIPELINE_ARTIFACTS: &str = "PIPELINE_ARTIFACTS";
/// Refuses a store folder given as a URL (`--store postgres://..`, `PIPELINE_HOME=s3://..`):
/// a folder of that name would be created, with any password in the URL in its path.
/// The error shows the URL with its user information replaced by `***`.
///
/// # Errors
///
/// [`ConfigError`] when `path` reads as a URL.
pub fn refuse_url_as_folder(path: &Path, origin: Origin) -> std::result::Result<(), ConfigError> {
    let text = path.to_string_lossy();
    let Some(at) = text.find("://") else {
        return Ok(());
    };
    let scheme = &text[..at];
    let rest = &text[at + 3..];
    let rest = match rest.split('/').next().and_then(|host| host.rfind('@')) {
        Some(end) => format!("***{}", &rest[end..]),
        None => rest.to_string(),
    };
    let hint = match scheme {
        "postgres" | "postgresql" => "PostgreSQL metadata is named by PIPELINE_METADATA (or `[store] metadata` in pipeline.toml, or StoreConfig and Store::connect in code), with PIPELINE_ARTIFACTS for the artifact bytes",
        "s3" => "artifact bytes in a bucket are named by PIPELINE_ARTIFACTS (or `[store] artifacts` in pipeline.toml), beside PIPELINE_METADATA",
        _ => "a store folder is a local path",
    };
    Err(ConfigError {
        origin,
        message: format!("`{scheme}://{rest}` is a URL, not a store folder; {hint}"),
    })
}

/// Environment variable choosing the executor (`threads`, `processes` or `slurm`).
pub const PIPELINE_EXECUTOR: &str = "PIPELINE_EXECUTOR";
/// The configuration file's name, searched from the working directory upward.
pub const CONFIG_FILE: &str = "pipeline.toml";

/// Where runs, executions, leases and lineage are recorded.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataLocation {
    /// An SQLite database file (`metadata.sqlite` of a local store).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

/// A `postgres://` URL whose password is kept out of `Display` and `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL without its password.
    redacted: url::Url,
    /// The password, if the URL had one.
    password: Option<String>,
}

impl PostgresUrl {
    fn parse(text: &str) -> std::result::Result<PostgresUrl, String> {
        let mut url = url::Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host; write postgres://USER@HOST:PORT/DATABASE".into());
        }
        // Kept percent-encoded, as the URL holds it, so `expose` gives the URL back unchanged.
        let password = url.password().map(str::to_owned);
        // `set_password` only fails for URLs that cannot have one, and this one has a host.
        let _ = url.set_password(None);
        Ok(PostgresUrl {
            redacted: url,
            password,
        })
    }

    /// The URL with its password, to hand to the database client. Never log it.
    pub fn expose(&self) -> String {
        let mut url = self.redacted.clone();
        if let Some(p) = &self.password {
            let _ = url.set_password(Some(p));
        }
        url.into()
    }

    /// Host name or address.
    pub fn host(&self) -> &str {
        self.redacted.host_str().unwrap_or_default()
    }

    /// The user name (empty when the URL names none).
    pub fn user(&self) -> &str {
        self.redacted.username()
    }

    /// Whether the URL carries a password (the password itself is not shown).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The URL without its password (to hand to another process, whose environment
    /// gives the password).
    pub(crate) fn without_password(&self) -> String {
        self.redacted.to_string()
    }

    /// The password, percent-encoded as the URL held it. Never log it.
    pub(crate) fn password(&self) -> Option<String> {
        self.password.clone()
    }

    /// This URL with `password` (percent-encoded) when it has none of its own.
    pub(crate) fn with_password(mut self, password: &str) -> PostgresUrl {
        if self.password.is_none() {
            self.password = Some(password.to_string());
        }
        self
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.password.is_some() {
            let mut shown = self.redacted.clone();
            let _ = shown.set_password(Some("***"));
            write!(f, "{shown}")
        } else {
            write!(f, "{}", self.redacted)
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl fmt::Display for MetadataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataLocation::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            MetadataLocation::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for MetadataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetadataLocation({self})")
    }
}

/// Where artifact bytes (content-addressed blobs) are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtifactLocation {
    /// A local folder (`artifacts/` of a local store).
    Folder {
        /// The folder.
        path: PathBuf,
    },
    /// A bucket of an S3-compatible object store, under a key prefix (no leading or
    /// trailing `/`; empty for the bucket's root).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
}

impl fmt::Display for ArtifactLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactLocation::Folder { path } => write!(f, "{}", path.display()),
            ArtifactLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            ArtifactLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Where a setting came from, so an error can say which one to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// No setting: the default `./.pipeline`.
    Default,
    /// An environment variable.
    Env(&'static str),
    /// A key of a `pipeline.toml`.
    File {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `store.metadata`.
        key: &'static str,
    },
    /// Code ([`StoreConfig::new`], [`StoreConfig::local`]).
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::Env(name) => write!(f, "${name}"),
            Origin::File { path, key } => write!(f, "`{key}` in {}", path.display()),
            Origin::Code => write!(f, "code"),
        }
    }
}

/// The two halves of a store: metadata and artifact bytes.
///
/// Built by [`StoreConfig::from_env`] (environment and `pipeline.toml`), or in code with
/// [`StoreConfig::local`] and [`StoreConfig::new`].
///
/// ```
/// use pipeline_core::config::{ArtifactLocation, MetadataLocation, StoreConfig};
///
/// let config = StoreConfig::new("sqlite:/data/meta.sqlite", None)?;
/// assert_eq!(
///     config.artifacts(),
///     &ArtifactLocation::Folder { path: "/data/artifacts".into() }
/// );
///
/// let remote = StoreConfig::new(
///     "postgres://ci:hunter2@db.example:5432/pipeline",
///     Some("s3://team-artifacts/runs"),
/// )?;
/// // The password never shows.
/// assert_eq!(
///     remote.metadata().to_string(),
///     "postgres://ci:***@db.example:5432/pipeline"
/// );
/// # Ok::<(), pipeline_core::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    metadata: MetadataLocation,
    artifacts: ArtifactLocation,
    /// The folder of a local store (`PIPELINE_HOME`, `./.pipeline`, [`StoreConfig::local`]),
    /// when the store is one folder holding both halves.
    local_dir: Option<PathBuf>,
    origin: Origin,
}

impl StoreConfig {
    /// A local store: `DIR/metadata.sqlite` and `DIR/artifacts/`.
    pub fn local(dir: impl Into<PathBuf>) -> StoreConfig {
        let dir = dir.into();
        StoreConfig {
            metadata: MetadataLocation::Sqlite {
                path: dir.join("metadata.sqlite"),
            },
            artifacts: ArtifactLocation::Folder {
                path: dir.join("artifacts"),
            },
            local_dir: Some(dir),
            origin: Origin::Code,
        }
    }

    /// A store from a metadata location (`postgres://..`, `postgresql://..`,
    /// `sqlite:PATH`) and an artifact location (`s3://bucket/prefix` or a folder path).
    /// `artifacts` may be `None` only for `sqlite:PATH`: the blobs then go in `artifacts/`
    /// beside the database file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a location cannot be parsed, or when a remote location lacks
    /// its other half.
    pub fn new(metadata: &str, artifacts: Option<&str>) -> Result<StoreConfig> {
        resolve_parts(
            Some((metadata.to_owned(), Origin::Code)),
            artifacts.map(|a| (a.to_owned(), Origin::Code)),
            None,
        )
    }

    /// The configuration from the environment and the nearest `pipeline.toml` (searched
    /// from the working directory upward), with the precedence the module doc gives.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `pipeline.toml` cannot be read or parsed, when a location
    /// cannot be parsed, or when only one half of a remote store is set.
    pub fn from_env() -> Result<StoreConfig> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError {
            origin: Origin::Default,
            message: format!("cannot read the working directory: {e}"),
        })?;
        Settings::resolve(&|name| std::env::var(name).ok(), &cwd).map(|s| s.store)
    }

    /// Where metadata is recorded.
    pub fn metadata(&self) -> &MetadataLocation {
        &self.metadata
    }

    /// Where artifact bytes are kept.
    pub fn artifacts(&self) -> &ArtifactLocation {
        &self.artifacts
    }

    /// This configuration with `password` for a PostgreSQL URL that has none.
    pub(crate) fn with_password(mut self, password: &str) -> StoreConfig {
        if let MetadataLocation::Postgres(url) = self.metadata {
            self.metadata = MetadataLocation::Postgres(url.with_password(password));
        }
        self
    }

    /// The folder holding both halves, for a local store.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local_dir.as_deref()
    }

    /// Where the metadata setting came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether both halves are on this machine (SQLite and a folder).
    pub fn is_local(&self) -> bool {
        matches!(self.metadata, MetadataLocation::Sqlite { .. })
            && matches!(self.artifacts, ArtifactLocation::Folder { .. })
    }
}

/// How steps are run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// Threads of this process (the default).
    #[default]
    Threads,
    /// One worker process per step on this machine.
    Processes,
    /// One Slurm job per step.
    Slurm,
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutorKind::Threads => "threads",
            ExecutorKind::Processes => "processes",
            ExecutorKind::Slurm => "slurm",
        })
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "threads" => Ok(ExecutorKind::Threads),
            "processes" => Ok(ExecutorKind::Processes),
            "slurm" => Ok(ExecutorKind::Slurm),
            other => Err(format!(
                "unknown executor `{other}`; use one of threads, processes, slurm"
            )),
        }
    }
}

/// Slurm settings (`[slurm]` of `pipeline.toml`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `--partition` of each job.
    pub partition: Option<String>,
    /// `--account` of each job.
    pub account: Option<String>,
    /// More `sbatch` arguments, passed as given.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Where jobs write their stdout and stderr (`<job id>.out` and `.err`); it must be a
    /// folder the compute nodes and the driver both see. Default: `slurm-logs/` in the
    /// store's local folder (`$PIPELINE_HOME`, else `./.pipeline`).
    pub log_dir: Option<PathBuf>,
    /// Declares the store's local files (a SQLite database, a blob folder) visible from
    /// every compute node, e.g. on NFS. Without it, a local store is refused with Slurm.
    #[serde(default)]
    pub shared_store: bool,
}

/// All settings: the store, the executor and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Where the store lives.
    pub store: StoreConfig,
    /// How steps run.
    pub executor: ExecutorKind,
    /// Slurm options, used when `executor` is [`ExecutorKind::Slurm`].
    pub slurm: SlurmConfig,
    /// The `pipeline.toml` that was read, if any.
    pub file: Option<PathBuf>,
}

/// `pipeline.toml`'s shape. Unknown keys are errors, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    executor: FileExecutor,
    #[serde(default)]
    slurm: SlurmConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    metadata: Option<String>,
    artifacts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExecutor {
    kind: Option<String>,
}

impl Settings {
    /// The settings from the environment and the nearest `pipeline.toml`.
    ///
    /// # Errors
    ///
    /// As [`StoreConfig::from_env`], and [`ConfigError`] for an unknown executor.
    pub fn from_env() -> Result<Settings> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError {
            origin: Origin::Default,
            message: format!("cannot read the working directory: {e}"),
        })?;
        Settings::resolve(&|name| std::env::var(name).ok(), &cwd)
    }

    /// The executor alone, as [`Settings::resolve`] reads it: `PIPELINE_EXECUTOR`, else
    /// `[executor] kind` of the nearest `pipeline.toml`, else threads. For a run given its
    /// store in code, whose store settings do not matter: an unreadable `pipeline.toml`
    /// counts as none here (the store settings report it), but a value that names no
    /// executor is an error, never the thread executor in its place.
    pub(crate) fn resolve_executor(
        env: &dyn Fn(&str) -> Option<String>,
        cwd: &Path,
    ) -> Result<ExecutorKind> {
        if let Some(text) = env(PIPELINE_EXECUTOR).filter(|v| !v.trim().is_empty()) {
            return text.parse().map_err(|message| ConfigError {
                origin: Origin::Env(PIPELINE_EXECUTOR),
                message,
            });
        }
        let Some(path) = find_config_file(cwd) else {
            return Ok(ExecutorKind::default());
        };
        match read_config_file(&path).ok().and_then(|f| f.executor.kind) {
            Some(text) => text.parse().map_err(|message| ConfigError {
                origin: Origin::File {
                    path,
                    key: "executor.kind",
                },
                message,
            }),
            None => Ok(ExecutorKind::default()),
        }
    }

    /// Resolution with the environment and working directory given, for tests.
    pub(crate) fn resolve(env: &dyn Fn(&str) -> Option<String>, cwd: &Path) -> Result<Settings> {
        let var = |name: &'static str| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, Origin::Env(name)))
        };
        let file = find_config_file(cwd);
        let parsed = match &file {
            Some(path) => read_config_file(path)?,
            None => FileSettings::default(),
        };
        let base = file
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(cwd)
            .to_path_buf();
        let from_file = |value: Option<String>, key: &'static str| {
            value.map(|v| {
                (
                    v,
                    Origin::File {
                        path: file.clone().unwrap_or_default(),
                        key,
                    },
                )
            })
        };
        let metadata =
            var(PIPELINE_METADATA).or(from_file(parsed.store.metadata, "store.metadata"));
        let artifacts =
            var(PIPELINE_ARTIFACTS).or(from_file(parsed.store.artifacts, "store.artifacts"));
        let home = var(PIPELINE_HOME).map(|(v, _)| PathBuf::from(v));
        let store = resolve_parts(metadata, artifacts, Some((&base, cwd, home)))?;

        let executor =
            match var(PIPELINE_EXECUTOR).or(from_file(parsed.executor.kind, "executor.kind")) {
                Some((text, origin)) => text
                    .parse()
                    .map_err(|message| ConfigError { origin, message })?,
                None => ExecutorKind::default(),
            };
        Ok(Settings {
            store,
            executor,
            slurm: parsed.slurm,
            file,
        })
    }
}

/// The nearest `pipeline.toml` at or above `cwd`.
fn find_config_file(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|candidate| candidate.is_file())
}

fn read_config_file(path: &Path) -> Result<FileSettings> {
    let origin = Origin::File {
        path: path.to_path_buf(),
        key: "(file)",
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        message: format!("cannot read it: {e}"),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError {
        origin,
        // toml's message names the line, column and key; it never quotes a value on its own
        // line only when the value is the error, so strip nothing here.
        message: e.message().to_owned(),
    })
}

/// Local paths of the environment: relative paths in `pipeline.toml` are relative to the
/// file's folder (`base`), others to the working directory; then `PIPELINE_HOME`.
type LocalContext<'a> = (&'a Path, &'a Path, Option<PathBuf>);

fn resolve_parts(
    metadata: Option<(String, Origin)>,
    artifacts: Option<(String, Origin)>,
    local: Option<LocalContext<'_>>,
) -> Result<StoreConfig> {
    let relative_to = |origin: &Origin, path: PathBuf| -> PathBuf {
        match (&local, origin) {
            (_, _) if path.is_absolute() => path,
            (Some((base, _, _)), Origin::File { .. }) => base.join(path),
            (Some((_, cwd, _)), _) => cwd.join(path),
            (None, _) => path,
        }
    };
    let metadata = match metadata {
        Some((text, origin)) => Some((parse_metadata(&text, &origin, &relative_to)?, origin)),
        None => None,
    };
    let artifacts = match artifacts {
        Some((text, origin)) => Some((parse_artifacts(&text, &origin, &relative_to)?, origin)),
        None => None,
    };
    match (metadata, artifacts) {
        (Some((metadata, origin)), Some((artifacts, _))) => {
            let local_dir = local_dir_of(&metadata, &artifacts);
            Ok(StoreConfig {
                metadata,
                artifacts,
                local_dir,
                origin,
            })
        }
        (Some((MetadataLocation::Sqlite { path }, origin)), None) => {
            let dir = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            Ok(StoreConfig {
                artifacts: ArtifactLocation::Folder {
                    path: dir.join("artifacts"),
                },
                local_dir: (path.file_name() == Some("metadata.sqlite".as_ref())).then_some(dir),
                metadata: MetadataLocation::Sqlite { path },
                origin,
            })
        }
        (Some((metadata @ MetadataLocation::Postgres(_), origin)), None) => Err(ConfigError {
            origin,
            message: format!(
                "metadata in PostgreSQL ({metadata}) needs a shared place for artifact bytes too: set {PIPELINE_ARTIFACTS}=s3://BUCKET/PREFIX (or `[store] artifacts` in {CONFIG_FILE})"
            ),
        }),
        (None, Some((artifacts @ ArtifactLocation::S3 { .. }, origin))) => Err(ConfigError {
            origin,
            message: format!(
                "artifacts in S3 ({artifacts}) need shared metadata too: set {PIPELINE_METADATA}=postgres://USER@HOST:PORT/DATABASE (or `[store] metadata` in {CONFIG_FILE})"
            ),
        }),
        (None, Some((artifacts @ ArtifactLocation::Folder { .. }, origin))) => Err(ConfigError {
            origin,
            message: format!(
                "artifacts in {artifacts} need a metadata store: set {PIPELINE_METADATA}=sqlite:PATH or postgres://.. too, or use {PIPELINE_HOME}=DIR for a local store in one folder"
            ),
        }),
        (None, None) => {
            // `PIPELINE_HOME` is used as given, as `Store::open` treats a path: relative to
            // the working directory.
            let (dir, origin) = match local {
                Some((_, _, Some(home))) => (home, Origin::Env(PIPELINE_HOME)),
                Some((_, _, None)) | None => (PathBuf::from(".pipeline"), Origin::Default),
            };
            let mut config = StoreConfig::local(dir);
            config.origin = origin;
            Ok(config)
        }
    }
}

fn local_dir_of(metadata: &MetadataLocation, artifacts: &ArtifactLocation) -> Option<PathBuf> {
    match (metadata, artifacts) {
        (MetadataLocation::Sqlite { path: db }, ArtifactLocation::Folder { path: blobs }) => {
            let dir = db.parent()?;
            (db.file_name() == Some("metadata.sqlite".as_ref())
                && blobs.as_path() == dir.join("artifacts"))
            .then(|| dir.to_path_buf())
        }
        _ => None,
    }
}

fn parse_metadata(
    text: &str,
    origin: &Origin,
    relative_to: &dyn Fn(&Origin, PathBuf) -> PathBuf,
) -> Result<MetadataLocation> {
    let text = text.trim();
    let error = |message: String| ConfigError {
        origin: origin.clone(),
        message,
    };
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return PostgresUrl::parse(text)
            .map(MetadataLocation::Postgres)
            .map_err(|why| error(format!("the PostgreSQL URL {why}")));
    }
    if let Some(path) = text.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(error(
                "`sqlite:` names no file; write sqlite:PATH/metadata.sqlite".into(),
            ));
        }
        return Ok(MetadataLocation::Sqlite {
            path: relative_to(origin, PathBuf::from(path)),
        });
    }
    // Never echo the value: it may be a URL with a password in an unknown scheme.
    let scheme = text.split_once("://").map(|(s, _)| s).unwrap_or("");
    Err(error(if scheme.is_empty() {
        "the metadata location is neither postgres://USER@HOST:PORT/DATABASE nor sqlite:PATH".into()
    } else {
        format!(
            "the metadata location has the unsupported scheme `{scheme}://`; use postgres:// or sqlite:PATH"
        )
    }))
}

fn parse_artifacts(
    text: &str,
    origin: &Origin,
    relative_to: &dyn Fn(&Origin, PathBuf) -> PathBuf,
) -> Result<ArtifactLocation> {
    let text = text.trim();
    let error = |message: String| ConfigError {
        origin: origin.clone(),
        message,
    };
    if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Keys in the URL (`s3://KEY:SECRET@bucket`) are not read from it, and never echoed.
        if bucket.contains('@') {
            return Err(error(
                "an s3:// URL names no credentials (`s3://KEY:SECRET@..` was given; it is not shown here): give the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the bucket as s3://BUCKET/PREFIX".into(),
            ));
        }
        // S3 bucket names: 3-63 characters of lowercase letters, digits, `.` and `-`.
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid {
            return Err(error(format!(
                "`{bucket}` is not a valid bucket name: use 3 to 63 lowercase letters, digits, `.` or `-`, as in s3://BUCKET/PREFIX"
            )));
        }
        return Ok(ArtifactLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        if scheme != "file" {
            return Err(error(format!(
                "the artifact location has the unsupported scheme `{scheme}://`; use s3://BUCKET/PREFIX or a folder path"
            )));
        }
    }
    let path = text.strip_prefix("file://").unwrap_or(text);
    if path.is_empty() {
        return Err(error("the artifact location is empty".into()));
    }
    Ok(ArtifactLocation::Folder {
        path: relative_to(origin, PathBuf::from(path)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)], cwd: &Path) -> Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(&move |name| vars.get(name).cloned(), cwd)
    }

    fn message(e: ConfigError) -> String {
        e.to_string()
    }

    #[test]
    fn no_settings_is_the_local_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(&[], dir.path()).unwrap();
        assert_eq!(s.store, {
            let mut c = StoreConfig::local(".pipeline");
            c.origin = Origin::Default;
            c
        });
        assert_eq!(s.executor, ExecutorKind::Threads);
        assert!(s.store.is_local());
    }

    #[test]
    fn pipeline_home_names_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(&[("PIPELINE_HOME", "/data/store")], dir.path()).unwrap();
        assert_eq!(s.store.local_dir(), Some(Path::new("/data/store")));
        assert_eq!(s.store.origin(), &Origin::Env("PIPELINE_HOME"));
    }

    #[test]
    fn remote_variables_win_over_pipeline_home() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(
            &[
                ("PIPELINE_HOME", "/data/store"),
                (
                    "PIPELINE_METADATA",
                    "postgres://ci@127.0.0.1:54329/postgres",
                ),
                ("PIPELINE_ARTIFACTS", "s3://pipeline-artifacts/pipeline"),
            ],
            dir.path(),
        )
        .unwrap();
        assert!(
            matches!(s.store.metadata(), MetadataLocation::Postgres(u) if u.host() == "127.0.0.1")
        );
        assert_eq!(
            s.store.artifacts(),
            &ArtifactLocation::S3 {
                bucket: "pipeline-artifacts".into(),
                prefix: "pipeline".into()
            }
        );
        assert_eq!(s.store.local_dir(), None);
    }

    #[test]
    fn sqlite_alone_keeps_blobs_beside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(
            &[("PIPELINE_METADATA", "sqlite:/srv/p/metadata.sqlite")],
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            s.store.artifacts(),
            &ArtifactLocation::Folder {
                path: "/srv/p/artifacts".into()
            }
        );
        assert_eq!(s.store.local_dir(), Some(Path::new("/srv/p")));
    }

    #[test]
    fn one_remote_half_is_an_error_naming_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let e = message(
            resolve(&[("PIPELINE_METADATA", "postgres://ci@db/p")], dir.path()).unwrap_err(),
        );
        assert!(e.contains("PIPELINE_ARTIFACTS"), "{e}");
        assert!(e.contains("$PIPELINE_METADATA"), "names the origin: {e}");
        let e =
            message(resolve(&[("PIPELINE_ARTIFACTS", "s3://bucket/x")], dir.path()).unwrap_err());
        assert!(e.contains("PIPELINE_METADATA"), "{e}");
    }

    #[test]
    fn a_url_given_as_a_store_folder_is_refused_without_its_password() {
        let err = refuse_url_as_folder(
            Path::new("postgres://ci:hunter2secret@db.example:5432/pipeline"),
            Origin::Code,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PIPELINE_METADATA"), "{err}");
        assert!(
            err.contains("postgres://***@db.example:5432/pipeline"),
            "{err}"
        );
        assert!(!err.contains("hunter2secret"), "{err}");
        assert!(refuse_url_as_folder(Path::new("/data/store"), Origin::Code).is_ok());
        // Store::open refuses it too, and creates nothing.
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("s3://key:topsecret@bucket/prefix");
        let err = crate::Store::open(&url).unwrap_err();
        assert!(matches!(err, crate::Error::Config(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("topsecret"), "{err}");
        assert!(!dir.path().join("s3:").exists());
    }

    #[test]
    fn credentials_in_an_s3_url_are_refused_and_never_shown() {
        let err = StoreConfig::new(
            "sqlite:/m/metadata.sqlite",
            Some("s3://AKIDEXAMPLE:wJalrXUtnFEMIsecret@bucket-name/prefix"),
        )
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
        assert!(!text.contains("wJalrXUtnFEMIsecret"), "{text}");
        assert!(!text.contains("AKIDEXAMPLE"), "{text}");
    }

    #[test]
    fn passwords_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(
            &[
                ("PIPELINE_METADATA", "postgres://ci:s3cr%40t@db:5432/p"),
                ("PIPELINE_ARTIFACTS", "s3://bucket/x"),
            ],
            dir.path(),
        )
        .unwrap();
        let MetadataLocation::Postgres(url) = s.store.metadata() else {
            panic!("postgres expected")
        };
        for shown in [
            s.store.metadata().to_string(),
            format!("{:?}", s.store),
            format!("{s:?}"),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(url.expose(), "postgres://ci:s3cr%40t@db:5432/p");
        assert!(url.has_password());
        // A malformed URL's error does not echo it either.
        let e = message(
            resolve(
                &[
                    ("PIPELINE_METADATA", "mysql://ci:s3cret@db/p"),
                    ("PIPELINE_ARTIFACTS", "s3://bucket/x"),
                ],
                dir.path(),
            )
            .unwrap_err(),
        );
        assert!(!e.contains("s3cret") && e.contains("mysql://"), "{e}");
    }

    #[test]
    fn the_file_is_found_upward_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[store]\nmetadata = \"sqlite:meta/metadata.sqlite\"\n\n[executor]\nkind = \"slurm\"\n\n[slurm]\npartition = \"debug\"\nextra_args = [\"--qos=low\"]\n",
        )
        .unwrap();
        let s = resolve(&[], &nested).unwrap();
        assert_eq!(
            s.store.metadata(),
            &MetadataLocation::Sqlite {
                path: dir.path().join("meta/metadata.sqlite")
            },
            "relative to the file's folder"
        );
        assert_eq!(s.executor, ExecutorKind::Slurm);
        assert_eq!(s.slurm.partition.as_deref(), Some("debug"));
        assert_eq!(s.slurm.extra_args, ["--qos=low"]);
        assert_eq!(
            s.file.as_deref(),
            Some(dir.path().join(CONFIG_FILE).as_path())
        );

        let s = resolve(
            &[
                ("PIPELINE_METADATA", "sqlite:/elsewhere/metadata.sqlite"),
                ("PIPELINE_EXECUTOR", "threads"),
            ],
            &nested,
        )
        .unwrap();
        assert_eq!(s.store.local_dir(), Some(Path::new("/elsewhere")));
        assert_eq!(s.executor, ExecutorKind::Threads);
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "[store]\nmetdata = \"x\"\n").unwrap();
        let e = message(resolve(&[], dir.path()).unwrap_err());
        assert!(e.contains("metdata") && e.contains(CONFIG_FILE), "{e}");
    }

    #[test]
    fn bad_locations_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        for (vars, expected) in [
            (vec![("PIPELINE_METADATA", "sqlite:")], "names no file"),
            (
                vec![
                    ("PIPELINE_METADATA", "postgres:///db"),
                    ("PIPELINE_ARTIFACTS", "s3://abc"),
                ],
                "names no host",
            ),
            (
                vec![
                    ("PIPELINE_METADATA", "sqlite:/m.sqlite"),
                    ("PIPELINE_ARTIFACTS", "s3://A_b"),
                ],
                "not a valid bucket name",
            ),
            (
                vec![
                    ("PIPELINE_METADATA", "sqlite:/m.sqlite"),
                    ("PIPELINE_ARTIFACTS", "gs://b/x"),
                ],
                "unsupported scheme `gs://`",
            ),
            (
                vec![("PIPELINE_EXECUTOR", "kubernetes")],
                "unknown executor `kubernetes`",
            ),
        ] {
            let e = message(resolve(&vars, dir.path()).unwrap_err());
            assert!(e.contains(expected), "{vars:?}: {e}");
        }
    }

    #[test]
    fn the_executor_alone_is_read_without_the_store_settings() {
        let dir = tempfile::tempdir().unwrap();
        let executor = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Settings::resolve_executor(&move |name| vars.get(name).cloned(), dir.path())
        };
        // A broken store setting does not matter to a run given its store in code.
        let vars = [
            ("PIPELINE_METADATA", "sqlite:"),
            ("PIPELINE_EXECUTOR", "processes"),
        ];
        assert_eq!(executor(&vars), Ok(ExecutorKind::Processes));
        assert_eq!(executor(&[]), Ok(ExecutorKind::Threads));
        // A value that names no executor is an error naming where it came from.
        let e = message(executor(&[("PIPELINE_EXECUTOR", "process")]).unwrap_err());
        assert!(
            e.contains("$PIPELINE_EXECUTOR") && e.contains("unknown executor `process`"),
            "{e}"
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[executor]\nkind = \"slrum\"\n",
        )
        .unwrap();
        let e = message(executor(&[]).unwrap_err());
        assert!(
            e.contains("`executor.kind`") && e.contains("unknown executor `slrum`"),
            "{e}"
        );
        // The variable wins over the file, as in `resolve`.
        assert_eq!(
            executor(&[("PIPELINE_EXECUTOR", "slurm")]),
            Ok(ExecutorKind::Slurm)
        );
    }
}
