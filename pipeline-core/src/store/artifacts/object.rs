//! Artifact bytes in any [`object_store`] backend: S3-compatible servers
//! (`ObjectArtifacts::s3` (feature `s3`)) or its `LocalFileSystem`, on a small Tokio runtime of its own,
//! so callers see no async.
//!
//! Layout under the prefix: `ab/ab12...` (blobs), `ab/ab12....json` (sidecars) and
//! `tmp/...` (writes in progress). A put streams through [`BufWriter`], hashed on the
//! caller's thread while the runtime uploads: one `PUT` for a blob smaller than a part, a
//! multipart upload (parts of [`PART_SIZE`], up to [`UPLOAD_CONCURRENCY`] at once) for
//! larger ones. Since the hash is known only at the end, the bytes go to a temporary object
//! first, which is then renamed (copied and deleted on S3) to the blob's name, unless a blob
//! of that name exists already: content addressing makes the existing one identical, so it
//! is not overwritten. (Two writers of the same bytes may both find the name free and both
//! copy: the second copy writes identical bytes. S3 servers such as Garage ignore
//! conditional writes, so nothing stricter is possible, and nothing stricter is needed.)
//!
//! Loads can go through a local read-through cache ([`ObjectArtifacts::with_read_cache`],
//! `cache.rs`): a blob downloaded once is read from a verified local copy afterwards,
//! without a request. [`ArtifactStore::open_uncached`] (verify, re-hashing) always asks the
//! server.
//!
//! Errors say what went wrong in the user's terms: a bucket that does not exist (a missing
//! object is reported as missing only once the bucket has been seen to exist), a server
//! that cannot be reached (the S3 client gives up after [`CONNECT_TIMEOUT`](ObjectArtifacts::CONNECT_TIMEOUT) per attempt and
//! [`RETRY_TIMEOUT`](ObjectArtifacts::RETRY_TIMEOUT) in all). They never hold a credential: S3 requests carry their
//! signature in headers, which no error shows, and endpoints are shown without user info.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

use super::cache::{Fill, ReadCache};
use super::{
    invalid_claim_id, valid_claim_id, ArtifactStore, BlobPut, BlobStat, ListedBlob, CLAIMS_DIR,
};
use crate::key::Hash128;
use crate::store::blob::HashingWriter;
use crate::store::ContentHash;

/// Size of one part of a multipart upload (and the largest blob sent in one `PUT`).
pub const PART_SIZE: usize = 8 << 20;

/// Parts of one blob uploaded at once.
pub const UPLOAD_CONCURRENCY: usize = 4;

/// Blobs in an [`ObjectStore`] under a prefix.
#[derive(Clone)]
pub struct ObjectArtifacts {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// How locations are shown: `file:///dir` or `s3://bucket/prefix`, without credentials.
    url: String,
    runtime: Arc<Runtime>,
    /// The folder behind a `LocalFileSystem` store, whose files and directories a commit
    /// syncs (object_store 0.13 does not), so that a blob is durable before its row.
    local_root: Option<PathBuf>,
    /// Local copies of downloaded blobs, if enabled.
    cache: Option<Arc<ReadCache>>,
    /// The bucket, for a backend on one: lets a missing bucket be told from a missing
    /// object.
    bucket: Option<Arc<Bucket>>,
}

/// The bucket an S3 backend writes to.
#[derive(Debug)]
struct Bucket {
    name: String,
    /// The server, as messages show it (without user info), and what its errors hide.
    endpoint: Endpoint,
    /// The bucket answered a request: it exists.
    seen: AtomicBool,
}

impl Bucket {
    fn server(&self) -> String {
        match &self.endpoint.shown {
            Some(e) => format!("the S3 server at {e}"),
            None => "the S3 server".to_string(),
        }
    }
}

/// What the S3 client of a backend was configured with, as far as its errors go: the
/// endpoint without user info (for messages), the password of any user info (hidden from
/// every error text), and the settings that explain its failures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Endpoint {
    /// `AWS_ENDPOINT` without user info; `None` for AWS itself.
    shown: Option<String>,
    /// The user info's password, as given and percent-decoded (never shown; `Debug` of
    /// [`Hidden`] prints `***`).
    hidden: Hidden,
    /// The endpoint is plain `http://` but `AWS_ALLOW_HTTP` does not allow it: every
    /// request fails before it leaves.
    http_refused: bool,
    /// Neither `AWS_ACCESS_KEY_ID` nor `AWS_SECRET_ACCESS_KEY` is set, so the client asks
    /// the cloud's instance metadata service for credentials.
    no_keys: bool,
}

/// Texts to hide from error messages.
#[derive(Clone, Default)]
struct Hidden(Vec<String>);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "[]" } else { "[***]" })
    }
}

/// `text` with the user info of every URL in it shown as `***` (`http://u:p@host` becomes
/// `http://***@host`) and every text of `hidden` replaced by `***`.
fn redact(text: &str, hidden: &Hidden) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends where the path, query or fragment starts, or the URL ends.
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '(' | ')' | '<' | '>' | ',' | ';'
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo) => {
                out.push_str("***");
                out.push_str(&authority[userinfo..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    for secret in &hidden.0 {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// An error of the S3 client, with credentials hidden (see [`redact`]) from its text, its
/// debug form and those of its sources, which it keeps as text.
struct Redacted {
    display: String,
    debug: String,
    source: Option<Box<Redacted>>,
}

impl Redacted {
    fn of(e: &(dyn std::error::Error + 'static), hidden: &Hidden) -> Redacted {
        let mut chain = Vec::new();
        let mut next = Some(e);
        while let Some(err) = next {
            chain.push((
                redact(&err.to_string(), hidden),
                redact(&format!("{err:?}"), hidden),
            ));
            next = err.source();
        }
        let mut source = None;
        while let Some((display, debug)) = chain.pop() {
            source = Some(Box::new(Redacted {
                display,
                debug,
                source,
            }));
        }
        *source.expect("an error is at least itself")
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.debug)
    }
}

impl std::error::Error for Redacted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The I/O error kind of an object store error.
fn kind_of(e: &object_store::Error) -> io::ErrorKind {
    match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    }
}

/// An object store error with what it means for the user first (the error, credentials
/// hidden, stays the source).
#[derive(Debug)]
struct RemoteError {
    message: String,
    source: Redacted,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Debug for ObjectArtifacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectArtifacts")
            .field("url", &self.url)
            .field("cache", &self.cache.as_ref().map(|c| c.dir()))
            .finish()
    }
}

impl ObjectArtifacts {
    /// How long the S3 client of `ObjectArtifacts::s3` (feature `s3`) waits for a connection, per
    /// attempt (`AWS_CONNECT_TIMEOUT` overrides it; object_store's default is 5 s).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    /// After how long since its first attempt the S3 client of `ObjectArtifacts::s3` (feature `s3`)
    /// stops retrying a request (object_store's default, 3 minutes, looks like a hang).
    pub const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

    /// Retries of one request by the S3 client of `ObjectArtifacts::s3` (feature `s3`), within
    /// [`RETRY_TIMEOUT`](Self::RETRY_TIMEOUT).
    pub const MAX_RETRIES: usize = 5;

    /// Blobs in `store` under `prefix` (`""` for the root). `url` names the place in
    /// messages and [`ArtifactStore::location`] (e.g. `s3://bucket/prefix`); it must hold
    /// no credentials.
    ///
    /// # Errors
    ///
    /// When the Tokio runtime that drives the store cannot be started.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: impl Into<String>,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pipeline-object-store")
            .enable_all()
            .build()?;
        Ok(ObjectArtifacts {
            store,
            prefix: ObjectPath::from(prefix),
            url: url.into().trim_end_matches('/').to_string(),
            runtime: Arc::new(runtime),
            local_root: None,
            cache: None,
            bucket: None,
        })
    }

    /// Keeps a verified copy of every blob downloaded in folder `dir` (created when first
    /// needed), and loads a blob from its copy without a request. [`Store::connect`] uses
    /// `artifacts/cache/` in the store's directory for S3 artifacts.
    ///
    /// A copy is written to a temporary file while the blob streams to its reader and put
    /// in place only when its size and hash are the blob's; a copy whose size is wrong or
    /// whose bytes changed is removed and not used (the blob is downloaded again). The folder is not
    /// bounded: a blob's copy goes when the blob is deleted (garbage collection), and the
    /// folder may be emptied at any time.
    ///
    /// [`Store::connect`]: crate::Store::connect
    pub fn with_read_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(Arc::new(ReadCache::new(dir.into())));
        self
    }

    /// The read cache's folder, if there is one.
    pub fn read_cache(&self) -> Option<&Path> {
        self.cache.as_deref().map(ReadCache::dir)
    }

    /// Tells the read cache how the store names blobs, so that it can verify downloads
    /// before the first put (until then it learns it from the first download that hashes
    /// to its name).
    #[cfg(feature = "s3")]
    pub(crate) fn learn_content_hash(&self, kind: ContentHash) {
        if let Some(cache) = &self.cache {
            cache.learn(kind);
        }
    }

    /// Blobs in folder `dir` through `object_store`'s `LocalFileSystem` (created if
    /// missing). A commit syncs the blob and its directory, as [`LocalArtifacts`] does.
    ///
    /// [`LocalArtifacts`]: super::LocalArtifacts
    ///
    /// # Errors
    ///
    /// When `dir` cannot be created or is not a directory, or the runtime cannot start.
    pub fn local(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(io::Error::other)?
            .with_automatic_cleanup(true);
        let url = format!("file://{}", dir.display());
        let mut store = ObjectArtifacts::new(Arc::new(fs), "", url)?;
        store.local_root = Some(dir);
        Ok(store)
    }

    /// `Ok(None)` for a missing object (once the bucket is known to exist), the error
    /// otherwise.
    fn found<T>(&self, r: object_store::Result<T>) -> io::Result<Option<T>> {
        match r {
            Ok(v) => {
                if let Some(b) = &self.bucket {
                    b.seen.store(true, Ordering::Relaxed);
                }
                Ok(Some(v))
            }
            Err(object_store::Error::NotFound { .. }) => self.check_bucket().map(|()| None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// `e` as an [`io::Error`] that says what it means: a missing bucket, a server that
    /// cannot be reached, or the client's error as it is.
    fn error(&self, e: object_store::Error) -> io::Error {
        if matches!(e, object_store::Error::NotFound { .. }) {
            if let Err(missing) = self.check_bucket() {
                return missing;
            }
            return io::Error::new(io::ErrorKind::NotFound, self.redacted(&e));
        }
        self.plain_error(e)
    }

    /// `e` with credentials hidden from all its texts.
    fn redacted(&self, e: &object_store::Error) -> Redacted {
        Redacted::of(e, self.hidden())
    }

    fn hidden(&self) -> &Hidden {
        static NONE: Hidden = Hidden(Vec::new());
        self.bucket.as_ref().map_or(&NONE, |b| &b.endpoint.hidden)
    }

    /// As [`error`](Self::error), without asking whether the bucket exists.
    fn plain_error(&self, e: object_store::Error) -> io::Error {
        let source = self.redacted(&e);
        let Some(bucket) = &self.bucket else {
            return io::Error::new(kind_of(&e), source);
        };
        let endpoint = &bucket.endpoint;
        let (kind, message) = if endpoint.http_refused {
            (
                io::ErrorKind::PermissionDenied,
                format!(
                    "the S3 endpoint {} is plain http://, which the S3 client refuses unless told otherwise (artifacts at {}); set AWS_ALLOW_HTTP=true, or use an https:// endpoint",
                    endpoint.shown.as_deref().unwrap_or("AWS_ENDPOINT"),
                    self.url
                ),
            )
        } else if endpoint.no_keys {
            (
                io::ErrorKind::PermissionDenied,
                format!(
                    "no S3 credentials for {}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and the client found none elsewhere (it asks the cloud's instance metadata service then); set both variables",
                    self.url,
                ),
            )
        } else if let Some(refusal) = refused_credentials(&e) {
            (
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} refused the credentials for {} ({refusal}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that this key may use the bucket `{}`",
                    bucket.server(),
                    self.url,
                    bucket.name,
                ),
            )
        } else if let Some(kind) = unreachable(&e) {
            (
                kind,
                format!(
                    "cannot reach {} for {} ({source}); check AWS_ENDPOINT and that the server is up",
                    bucket.server(),
                    self.url
                ),
            )
        } else {
            return io::Error::new(kind_of(&e), source);
        };
        io::Error::new(kind, RemoteError { message, source })
    }

    /// Fails when the backend's bucket does not exist. Asked once, at the first "not
    /// found": S3 answers a request about an object of a missing bucket with "not found"
    /// too (HEAD has no body to tell the two apart), and a missing bucket must not pass
    /// for missing blobs, which the store would record as damage.
    fn check_bucket(&self) -> io::Result<()> {
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        if bucket.seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        match self
            .runtime
            .block_on(self.store.list_with_delimiter(prefix))
        {
            Ok(_) => {
                bucket.seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if no_such_bucket(&e) => {
                let message = format!(
                    "the bucket `{}` does not exist on {} (artifacts at {}); create it, or correct PIPELINE_ARTIFACTS",
                    bucket.name,
                    bucket.server(),
                    self.url
                );
                let source = self.redacted(&e);
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    RemoteError { message, source },
                ))
            }
            Err(e) => Err(self.plain_error(e)),
        }
    }

    fn blob(&self, hash: Hash128) -> ObjectPath {
        let (fanout, name) = blob_name(hash);
        self.prefix.clone().join(fanout).join(name)
    }

    fn sidecar(&self, hash: Hash128) -> ObjectPath {
        let (fanout, name) = blob_name(hash);
        self.prefix
            .clone()
            .join(fanout)
            .join(format!("{name}.json"))
    }

    /// Replaces blob `hash`'s bytes with `bytes` directly (tests damage blobs this way).
    #[cfg(test)]
    pub(crate) fn overwrite(&self, hash: Hash128, bytes: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
        self.runtime
            .block_on(self.store.put(&self.blob(hash), payload))
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn head(&self, path: &ObjectPath) -> io::Result<Option<ObjectMeta>> {
        self.found(self.runtime.block_on(self.store.head(path)))
    }

    /// Opens blob `hash` on the server; a download for the read cache fills a copy on the
    /// way when `fill` is set.
    fn get(&self, hash: Hash128, fill: bool) -> io::Result<Option<Box<dyn Read + Send>>> {
        let path = self.blob(hash);
        let Some(got) = self.found(self.runtime.block_on(self.store.get(&path)))? else {
            return Ok(None);
        };
        let size = got.meta.size;
        Ok(Some(match got.payload {
            // `LocalFileSystem` hands over the open file: read it directly.
            GetResultPayload::File(file, _) => {
                Box::new(io::BufReader::with_capacity(1 << 20, file))
            }
            GetResultPayload::Stream(stream) => Box::new(StreamReader {
                stream,
                chunk: Bytes::new(),
                runtime: Arc::clone(&self.runtime),
                bucket: self.bucket.clone(),
                fill: match &self.cache {
                    Some(cache) if fill => cache.fill(hash, size).map(|f| (f, Arc::clone(cache))),
                    _ => None,
                },
            }),
        }))
    }
}

/// The S3 client `ObjectArtifacts::s3` (feature `s3`) uses for `bucket`, configured from the `AWS_*`
/// variables (see [`s3_client_from`]).
#[cfg(feature = "s3")]
pub(crate) fn s3_client(
    bucket: &str,
) -> object_store::Result<(object_store::aws::AmazonS3, Endpoint)> {
    // Endpoint, region, keys and `AWS_ALLOW_HTTP` come from the standard `AWS_*`
    // variables, read by object_store itself. Path-style requests (object_store's default)
    // suit S3-compatible servers such as Garage and MinIO.
    s3_client_from(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket))
}

/// The client `builder` configures, with bounded waits
/// ([`CONNECT_TIMEOUT`](ObjectArtifacts::CONNECT_TIMEOUT) unless `AWS_CONNECT_TIMEOUT` is
/// set, [`RETRY_TIMEOUT`](ObjectArtifacts::RETRY_TIMEOUT),
/// [`MAX_RETRIES`](ObjectArtifacts::MAX_RETRIES)), and what its errors must hide and can
/// explain ([`Endpoint`]). A configuration error has its credentials hidden too.
#[cfg(feature = "s3")]
pub(crate) fn s3_client_from(
    builder: object_store::aws::AmazonS3Builder,
) -> object_store::Result<(object_store::aws::AmazonS3, Endpoint)> {
    use object_store::aws::AmazonS3ConfigKey;
    use object_store::{ClientConfigKey, RetryConfig};

    let mut builder = builder.with_retry(RetryConfig {
        max_retries: ObjectArtifacts::MAX_RETRIES,
        retry_timeout: ObjectArtifacts::RETRY_TIMEOUT,
        ..RetryConfig::default()
    });
    if std::env::var_os("AWS_CONNECT_TIMEOUT").is_none() {
        builder = builder.with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            format!("{}ms", ObjectArtifacts::CONNECT_TIMEOUT.as_millis()),
        );
    }
    let mut endpoint = Endpoint::default();
    let configured = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if let Some(e) = &configured {
        endpoint.shown = Some(match url::Url::parse(e) {
            Ok(mut u) => {
                if let Some(password) = u.password().filter(|p| !p.is_empty()) {
                    let decoded = percent_decode(password);
                    endpoint.hidden.0.push(password.to_string());
                    if decoded != password {
                        endpoint.hidden.0.push(decoded);
                    }
                }
                if !u.username().is_empty() || u.password().is_some() {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    u.to_string().trim_end_matches('/').to_string()
                } else {
                    e.clone()
                }
            }
            Err(_) => "(an endpoint that is not a URL)".to_string(),
        });
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "1" | "true" | "on" | "yes" | "y"
                )
            });
        endpoint.http_refused = e.to_ascii_lowercase().starts_with("http://") && !allow_http;
    }
    let set = |key: AmazonS3ConfigKey| {
        builder
            .get_config_value(&key)
            .is_some_and(|v| !v.is_empty())
    };
    endpoint.no_keys = !set(AmazonS3ConfigKey::AccessKeyId)
        && !set(AmazonS3ConfigKey::SecretAccessKey)
        // Other sources of credentials the client knows, set on purpose.
        && std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
        && std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
        && std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none();
    match builder.build() {
        Ok(client) => Ok((client, endpoint)),
        Err(e) => Err(object_store::Error::Generic {
            store: "S3",
            source: Box::new(Redacted::of(&e, &endpoint.hidden)),
        }),
    }
}

/// `text` with its `%XX` escapes decoded (bytes that are not UTF-8 are replaced).
#[cfg(feature = "s3")]
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// If `e` says that the server refused the request's credentials (HTTP 401 or 403, or S3's
/// codes `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`), what it said, as a
/// sentence: never the raw XML of the answer.
fn refused_credentials(e: &object_store::Error) -> Option<String> {
    let mut text = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        text.push_str(&err.to_string());
        text.push('\n');
        next = err.source();
    }
    let code = xml_element(&text, "Code");
    let said = |code: &str| match code {
        "InvalidAccessKeyId" => {
            "it does not know the access key id (InvalidAccessKeyId)".to_string()
        }
        "SignatureDoesNotMatch" => {
            "the secret access key does not match the access key id (SignatureDoesNotMatch)"
                .to_string()
        }
        "AccessDenied" => {
            "access denied: the key may not make this request (AccessDenied)".to_string()
        }
        other => format!("error code {other}"),
    };
    let denied = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || text.contains("403 Forbidden")
        || text.contains("401 Unauthorized");
    match code.as_deref() {
        Some(c @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) => {
            Some(said(c))
        }
        Some(c) if denied => Some(said(c)),
        _ if denied => Some(if text.contains("401 Unauthorized") {
            "HTTP 401 Unauthorized".to_string()
        } else {
            "HTTP 403 Forbidden".to_string()
        }),
        _ => None,
    }
}

/// The text of the first `<name>..</name>` element in `text`, if any.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{name}>"))?;
    let value = text[start..start + len].trim();
    (!value.is_empty() && value.len() <= 64 && !value.contains('<')).then(|| value.to_string())
}

/// Whether `e`, the answer to a request on a bucket, says that the bucket does not exist.
/// object_store keeps the HTTP status of such an error private (its listing errors are
/// "generic"), so its text is what tells: S3's error code `NoSuchBucket`, or a plain
/// `404` (servers that send no body).
fn no_such_bucket(e: &object_store::Error) -> bool {
    let text = e.to_string();
    matches!(e, object_store::Error::NotFound { .. })
        || text.contains("NoSuchBucket")
        || text.contains("404 Not Found")
}

/// Without the `s3` feature no request goes over the network.
#[cfg(not(feature = "s3"))]
fn unreachable(_e: &object_store::Error) -> Option<io::ErrorKind> {
    None
}

/// The I/O error kind for a request that never reached the server, if `e` is one.
#[cfg(feature = "s3")]
fn unreachable(e: &object_store::Error) -> Option<io::ErrorKind> {
    use object_store::client::{HttpError, HttpErrorKind};

    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Timeout => Some(io::ErrorKind::TimedOut),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                    Some(io::ErrorKind::ConnectionRefused)
                }
                _ => None,
            };
        }
        next = err.source();
    }
    None
}

#[cfg(feature = "s3")]
impl ObjectArtifacts {
    /// Blobs in S3 bucket `bucket` under `prefix` (`""` for the whole bucket), through an
    /// S3 client configured by the standard `AWS_*` variables (`AWS_ENDPOINT`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, and
    /// object_store's others such as `AWS_TIMEOUT`). Waits are bounded: a connection
    /// attempt gives up after [`CONNECT_TIMEOUT`](ObjectArtifacts::CONNECT_TIMEOUT) and a request stops retrying after
    /// [`RETRY_TIMEOUT`](ObjectArtifacts::RETRY_TIMEOUT). No request is made until the first use; a missing bucket is then
    /// an error that names it.
    ///
    /// # Errors
    ///
    /// When the client cannot be configured from the variables (a malformed value), or its
    /// runtime cannot start.
    pub fn s3(bucket: &str, prefix: &str) -> io::Result<Self> {
        let (client, endpoint) = s3_client(bucket).map_err(io::Error::other)?;
        Self::s3_over(Arc::new(client), bucket, prefix, endpoint)
    }

    /// Blobs under `prefix` through `store`, a client of S3 bucket `bucket` (tests wrap the
    /// client to count its requests).
    pub(crate) fn s3_over(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        prefix: &str,
        endpoint: Endpoint,
    ) -> io::Result<Self> {
        let prefix = prefix.trim_matches('/');
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut me = ObjectArtifacts::new(store, prefix, url)?;
        me.bucket = Some(Arc::new(Bucket {
            name: bucket.to_string(),
            endpoint,
            seen: AtomicBool::new(false),
        }));
        Ok(me)
    }
}

/// Fan-out directory and name of a blob: `ab/ab12...`, as in the local folder.
fn blob_name(hash: Hash128) -> (String, String) {
    let hex = hash.to_hex();
    (hex[..2].to_string(), hex)
}

fn stat_of(meta: &ObjectMeta) -> BlobStat {
    // Whole seconds: S3 gives an object's time in milliseconds when listing but in whole
    // seconds on HEAD (an HTTP date), and `list` must agree with `stat` (the contract
    // suite caught this against Garage). Objects are never rewritten, so nothing is lost.
    let nanos = meta.last_modified.timestamp() * 1_000_000_000;
    BlobStat {
        size: meta.size,
        modified_ns: nanos,
        last_used: u64::try_from(nanos)
            .ok()
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
    }
}

impl ObjectArtifacts {
    /// Starts a put; with `replace`, its commit replaces a blob of the same name.
    fn start_put(&self, kind: ContentHash, replace: bool) -> io::Result<Box<dyn BlobPut>> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = self
            .prefix
            .clone()
            .join("tmp")
            .join(format!("{}-{nanos}-{n}", std::process::id()));
        let writer = BufWriter::with_capacity(Arc::clone(&self.store), tmp.clone(), PART_SIZE)
            .with_max_concurrency(UPLOAD_CONCURRENCY);
        if let Some(cache) = &self.cache {
            cache.learn(kind);
        }
        let sink = Upload {
            writer: Some(writer),
            backend: self.clone(),
        };
        Ok(Box::new(ObjectPut {
            out: Some(HashingWriter::with_hash(sink, kind)),
            tmp,
            backend: self.clone(),
            replace,
        }))
    }
}

impl ArtifactStore for ObjectArtifacts {
    fn put(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
        self.start_put(kind, false)
    }

    fn put_replacing(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
        self.start_put(kind, true)
    }

    fn open(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
        if let Some(copy) = self.cache.as_ref().and_then(|c| c.open(hash)) {
            return Ok(Some(copy));
        }
        self.get(hash, true)
    }

    fn open_uncached(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
        self.get(hash, false)
    }

    fn stat(&self, hash: Hash128) -> io::Result<Option<BlobStat>> {
        Ok(self.head(&self.blob(hash))?.as_ref().map(stat_of))
    }

    /// Only in a local folder: elsewhere a stat is a request per output.
    fn stat_on_hit(&self) -> bool {
        self.local_root.is_some()
    }

    fn delete(&self, hash: Hash128) -> io::Result<bool> {
        let path = self.blob(hash);
        // S3 answers a delete of a missing key with success: ask first.
        if self.head(&path)?.is_none() {
            return Ok(false);
        }
        self.found(self.runtime.block_on(self.store.delete(&path)))?;
        let _ = self
            .runtime
            .block_on(self.store.delete(&self.sidecar(hash)));
        if let Some(cache) = &self.cache {
            cache.remove(hash);
        }
        Ok(true)
    }

    fn list(&self) -> io::Result<Vec<ListedBlob>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<object_store::Result<ObjectMeta>> = self
            .runtime
            .block_on(self.store.list(prefix).collect::<Vec<_>>());
        let mut out = Vec::new();
        for meta in metas {
            let meta = meta.map_err(|e| self.error(e))?;
            let parts: Vec<_> = match prefix {
                Some(p) => match meta.location.prefix_match(p) {
                    Some(parts) => parts.collect(),
                    None => continue,
                },
                None => meta.location.parts().collect(),
            };
            // `ab/ab12...` only: not `tmp/..`, not sidecars.
            let [fanout, name] = parts.as_slice() else {
                continue;
            };
            let Some(hash) = Hash128::from_hex(name.as_ref()) else {
                continue;
            };
            if blob_name(hash).0 != fanout.as_ref() {
                continue;
            }
            out.push(ListedBlob {
                hash,
                stat: stat_of(&meta),
            });
        }
        Ok(out)
    }

    fn remove_stale_temporaries(&self, older_than: Duration, dry_run: bool) -> io::Result<usize> {
        // A temporary object exists only between the end of its upload and its rename, so
        // one older than `older_than` belongs to a writer that died in between.
        let tmp = self.prefix.clone().join("tmp");
        let metas: Vec<object_store::Result<ObjectMeta>> = self
            .runtime
            .block_on(self.store.list(Some(&tmp)).collect::<Vec<_>>());
        let now = SystemTime::now();
        // And copies the read cache was filling when their reader was killed.
        let mut removed = self
            .cache
            .as_ref()
            .map_or(0, |c| c.remove_stale_fills(older_than, dry_run));
        for meta in metas {
            let meta = meta.map_err(|e| self.error(e))?;
            let old = stat_of(&meta)
                .last_used
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= older_than);
            if !old {
                continue;
            }
            removed += 1;
            if !dry_run {
                self.found(self.runtime.block_on(self.store.delete(&meta.location)))?;
            }
        }
        Ok(removed)
    }

    fn put_claim(&self, store_id: &str, doc: &[u8]) -> io::Result<()> {
        if !valid_claim_id(store_id) {
            return Err(invalid_claim_id(store_id));
        }
        let path = self
            .prefix
            .clone()
            .join(CLAIMS_DIR)
            .join(format!("{store_id}.json"));
        let payload = PutPayload::from(Bytes::copy_from_slice(doc));
        self.runtime
            .block_on(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.error(e))?;
        if let Some(root) = &self.local_root {
            let dir = root.join(CLAIMS_DIR);
            std::fs::File::open(dir.join(format!("{store_id}.json")))?.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }

    fn claims(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let dir = self.prefix.clone().join(CLAIMS_DIR);
        let metas: Vec<object_store::Result<ObjectMeta>> = self
            .runtime
            .block_on(self.store.list(Some(&dir)).collect::<Vec<_>>());
        let mut out = Vec::new();
        for meta in metas {
            let meta = meta.map_err(|e| self.error(e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_claim_id(id)) else {
                continue;
            };
            let id = id.to_string();
            let Some(got) = self.found(self.runtime.block_on(self.store.get(&meta.location)))?
            else {
                continue; // removed since the listing
            };
            if let Some(doc) = self.found(self.runtime.block_on(got.bytes()))? {
                out.push((id, doc.to_vec()));
            }
        }
        Ok(out)
    }

    fn put_sidecar(&self, hash: Hash128, doc: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(Bytes::copy_from_slice(doc));
        self.runtime
            .block_on(self.store.put(&self.sidecar(hash), payload))
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn get_sidecar(&self, hash: Hash128) -> io::Result<Option<Vec<u8>>> {
        let path = self.sidecar(hash);
        let Some(got) = self.found(self.runtime.block_on(self.store.get(&path)))? else {
            return Ok(None);
        };
        self.found(self.runtime.block_on(got.bytes()))
            .map(|b| b.map(|b| b.to_vec()))
    }

    fn location(&self, hash: Hash128) -> PathBuf {
        // `url` names the prefix already.
        let (fanout, name) = blob_name(hash);
        PathBuf::from(format!("{}/{fanout}/{name}", self.url))
    }
}

/// The upload under the hashing writer: each chunk goes to the [`BufWriter`] on the
/// backend's runtime.
struct Upload {
    /// `None` once shut down or aborted.
    writer: Option<BufWriter>,
    backend: ObjectArtifacts,
}

impl Upload {
    fn finish(&mut self) -> io::Result<()> {
        let Some(mut writer) = self.writer.take() else {
            return Err(io::Error::other("upload already finished"));
        };
        let b = &self.backend;
        b.runtime.block_on(writer.shutdown()).map_err(|e| {
            // `shutdown` wraps the store's error in an `io::Error`: unwrap it to say what
            // it means.
            if e.get_ref()
                .is_some_and(|inner| inner.is::<object_store::Error>())
            {
                if let Some(Ok(inner)) = e.into_inner().map(|i| i.downcast::<object_store::Error>())
                {
                    return b.error(*inner);
                }
                return io::Error::other("upload failed");
            }
            e
        })
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("upload already finished"));
        };
        let b = &self.backend;
        b.runtime
            .block_on(writer.put(Bytes::copy_from_slice(buf)))
            .map_err(|e| b.error(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // parts go up as they fill; `finish` sends the rest
    }
}

impl Drop for Upload {
    /// An upload dropped before it finished is aborted: its parts are removed.
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = self.backend.runtime.block_on(writer.abort());
        }
    }
}

/// A blob being written: hashed on its way to a temporary object.
struct ObjectPut {
    out: Option<HashingWriter<Upload>>,
    tmp: ObjectPath,
    backend: ObjectArtifacts,
    /// Replace a blob of the same name ([`ArtifactStore::put_replacing`]).
    replace: bool,
}

impl ObjectPut {
    fn out(&mut self) -> io::Result<&mut HashingWriter<Upload>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))
    }
}

impl Write for ObjectPut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl BlobPut for ObjectPut {
    fn commit_with(
        mut self: Box<Self>,
        before_place: &mut dyn FnMut(Hash128) -> io::Result<()>,
    ) -> io::Result<(Hash128, u64)> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("blob writer already finished"));
        };
        let (mut upload, hash, size) = out.finish()?;
        upload.finish()?;
        let b = &self.backend;
        if let Err(e) = before_place(hash) {
            let _ = b.runtime.block_on(b.store.delete(&self.tmp));
            return Err(e);
        }
        let target = b.blob(hash);
        let keep = !self.replace && b.head(&target)?.is_some();
        let placed = if keep {
            // Same name, same bytes: keep the object that is there.
            b.runtime.block_on(b.store.delete(&self.tmp))
        } else {
            // A new blob, or one whose stored bytes were found damaged: these replace them.
            b.runtime.block_on(b.store.rename(&self.tmp, &target))
        };
        if self.replace {
            if let Some(cache) = &b.cache {
                cache.remove(hash); // a local copy of the damaged bytes, if any
            }
        }
        if let Err(e) = placed {
            // Best effort: a temporary object left behind is never taken for a blob.
            let _ = b.runtime.block_on(b.store.delete(&self.tmp));
            return Err(b.error(e));
        }
        if let Some(root) = &b.local_root {
            // The bytes, then the rename, durable before the metadata commit refers to them.
            let (fanout, name) = blob_name(hash);
            let dir = root.join(fanout);
            std::fs::File::open(dir.join(name))?.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok((hash, size))
    }
}

// A put dropped before `commit` aborts its upload through `Upload`'s `Drop`.

/// Reads an object's byte stream on the backend's runtime, filling a copy for the read
/// cache on the way if asked to.
struct StreamReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    runtime: Arc<Runtime>,
    /// What the stream's errors hide.
    bucket: Option<Arc<Bucket>>,
    fill: Option<(Fill, Arc<ReadCache>)>,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => {
                    if let Some((fill, _)) = &mut self.fill {
                        fill.add(&chunk);
                    }
                    self.chunk = chunk;
                }
                Some(Err(e)) => {
                    self.fill = None; // no copy of a download that failed
                    let hidden = self.bucket.as_ref().map(|b| &b.endpoint.hidden);
                    let source = Redacted::of(&e, hidden.unwrap_or(&Hidden::default()));
                    return Err(io::Error::new(kind_of(&e), source));
                }
                None => {
                    if let Some((fill, cache)) = self.fill.take() {
                        if let Some(kind) = fill.finish() {
                            cache.learn(kind);
                        }
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_dead_writers_are_removed_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectArtifacts::local(dir.path()).unwrap();
        // What a writer killed between its upload and its rename leaves.
        let left = store.prefix.clone().join("tmp").join("12345-0-0");
        let payload = PutPayload::from(Bytes::from_static(b"half a blob"));
        store
            .runtime
            .block_on(store.store.put(&left, payload))
            .unwrap();
        let (hash, _) = {
            let mut w = store.put(ContentHash::Xxh3).unwrap();
            w.write_all(b"a blob").unwrap();
            w.commit().unwrap()
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(
            store.remove_stale_temporaries(hour, false).unwrap(),
            0,
            "too young"
        );
        assert_eq!(
            store
                .remove_stale_temporaries(Duration::ZERO, true)
                .unwrap(),
            1
        );
        assert!(
            store.head(&left).unwrap().is_some(),
            "a dry run removes nothing"
        );
        assert_eq!(
            store
                .remove_stale_temporaries(Duration::ZERO, false)
                .unwrap(),
            1
        );
        assert!(store.head(&left).unwrap().is_none(), "the leftover is gone");
        assert!(
            store.stat(hash).unwrap().is_some(),
            "blobs are not temporaries"
        );
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
