//! The artifact-bytes contract against a real S3 server (Garage, started by
//! `scripts/services.sh`): `PIPELINE_TEST_S3=s3://BUCKET/PREFIX` and the standard `AWS_*`
//! variables name it. Without the variable these tests say so and pass, unless
//! `PIPELINE_TEST_REQUIRE_SERVICES=1`, which makes a missing server a failure.
//!
//! Besides the contract: the read-through cache (a second load makes no request), what a
//! cache hit asks of the server (nothing), a missing object found on load, a
//! missing bucket and an unreachable server.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::cache::HEADER;
use super::contract::{artifact_store, Backend};
use super::object::{s3_client, s3_client_from, PART_SIZE};
use super::{ArtifactStore, ObjectArtifacts};
use crate::cacher::Bincode;
use crate::config::{ArtifactLocation, StoreConfig};
use crate::error::Error;
use crate::key::Hash128;
use crate::status::StepStatus;
use crate::store::contract::{claim, start, step};
use crate::store::{
    Begin, Completion, ContentHash, Damage, MetadataStore, StepOutput, Store, StoreOptions,
};

/// The test bucket and a prefix of this process, or `None` (skip) without a server.
fn test_bucket(test: &str) -> Option<(String, String)> {
    let Some(url) = std::env::var("PIPELINE_TEST_S3")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if std::env::var("PIPELINE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{test}: PIPELINE_TEST_S3 is not set but PIPELINE_TEST_REQUIRE_SERVICES=1; start Garage with scripts/services.sh");
        }
        eprintln!("{test}: skipped, PIPELINE_TEST_S3 is not set (scripts/test.sh starts Garage and sets it)");
        return None;
    };
    let config = StoreConfig::new("sqlite:/unused/metadata.sqlite", Some(&url)).unwrap();
    let ArtifactLocation::S3 { bucket, prefix } = config.artifacts() else {
        panic!("PIPELINE_TEST_S3 is not an s3:// URL");
    };
    Some((bucket.clone(), prefix.clone()))
}

/// A prefix of its own for one test in this process.
fn own_prefix(prefix: &str, test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}/{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn s3_backend(bucket: &str, prefix: &str) -> ObjectArtifacts {
    ObjectArtifacts::s3(bucket, prefix).expect("S3 client from AWS_* variables")
}

/// Requests an [`ObjectStore`] received, by kind.
#[derive(Debug, Default)]
struct Requests {
    get: AtomicUsize,
    head: AtomicUsize,
    put: AtomicUsize,
    multipart: AtomicUsize,
    list: AtomicUsize,
    copy: AtomicUsize,
    delete: AtomicUsize,
}

impl Requests {
    fn total(&self) -> usize {
        [
            &self.get,
            &self.head,
            &self.put,
            &self.multipart,
            &self.list,
            &self.copy,
            &self.delete,
        ]
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .sum()
    }

    fn gets(&self) -> usize {
        self.get.load(Ordering::SeqCst)
    }

    fn heads(&self) -> usize {
        self.head.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        for n in [
            &self.get,
            &self.head,
            &self.put,
            &self.multipart,
            &self.list,
            &self.copy,
            &self.delete,
        ] {
            n.store(0, Ordering::SeqCst);
        }
    }
}

/// The S3 client, counting every request made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    requests: Arc<Requests>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

fn count(n: &AtomicUsize) {
    n.fetch_add(1, Ordering::SeqCst);
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        count(&self.requests.put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        count(&self.requests.multipart);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        count(if options.head {
            &self.requests.head
        } else {
            &self.requests.get
        });
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        count(&self.requests.get);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        count(&self.requests.delete);
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        count(&self.requests.list);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        count(&self.requests.list);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        count(&self.requests.copy);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        // object_store's rename: a copy and a delete, each counted.
        count(&self.requests.copy);
        count(&self.requests.delete);
        self.inner.rename_opts(from, to, options).await
    }
}

/// An S3 backend under `prefix` whose requests are counted.
fn counted_backend(bucket: &str, prefix: &str) -> (ObjectArtifacts, Arc<Requests>) {
    let (client, endpoint) = s3_client(bucket).expect("S3 client from AWS_* variables");
    let requests = Arc::new(Requests::default());
    let counting = Counting {
        inner: Arc::new(client),
        requests: Arc::clone(&requests),
    };
    let backend = ObjectArtifacts::s3_over(Arc::new(counting), bucket, prefix, endpoint).unwrap();
    (backend, requests)
}

/// Empties its prefix when the test ends.
struct Cleanup(ObjectArtifacts);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(blobs) = self.0.list() {
            for b in blobs {
                let _ = self.0.delete(b.hash);
            }
        }
    }
}

fn put(store: &dyn ArtifactStore, bytes: &[u8]) -> Hash128 {
    let mut w = store.put(ContentHash::Xxh3).unwrap();
    w.write_all(bytes).unwrap();
    w.commit().unwrap().0
}

fn read(store: &dyn ArtifactStore, hash: Hash128) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store
        .open(hash)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Deterministic bytes that differ with `seed`.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garage_keeps_the_artifact_store_contract() {
    let Some((bucket, prefix)) = test_bucket("garage_keeps_the_artifact_store_contract") else {
        return;
    };
    let caches = tempfile::tempdir().unwrap();
    for cached in [false, true] {
        artifact_store(|| {
            let prefix = own_prefix(&prefix, "contract");
            let mut store = s3_backend(&bucket, &prefix);
            if cached {
                store = store.with_read_cache(caches.path().join(prefix.replace('/', "-")));
            }
            let raw = store.clone();
            Backend {
                store: Arc::new(store.clone()),
                // A raw `PUT` over the blob, as someone with bucket access could do.
                tamper: Some(Box::new(move |hash, bytes| raw.overwrite(hash, bytes))),
                guard: Some(Box::new(Cleanup(store))),
            }
        });
    }
}

#[test]
fn a_second_load_comes_from_the_read_cache_without_a_request() {
    let Some((bucket, prefix)) = test_bucket("a_second_load_comes_from_the_read_cache") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let own = own_prefix(&prefix, "cache");
    let (backend, requests) = counted_backend(&bucket, &own);
    let backend = backend.with_read_cache(&cache);
    assert_eq!(
        backend.location(Hash128(0xab << 120)),
        std::path::PathBuf::from(format!("s3://{bucket}/{own}/ab/ab{}", "0".repeat(30))),
        "locations name the object"
    );
    let _cleanup = Cleanup(backend.clone());
    let store: &dyn ArtifactStore = &backend;

    // Larger than a part: the put goes up as a multipart upload.
    let bytes = bytes_of(1, PART_SIZE + PART_SIZE / 2);
    requests.reset();
    let hash = put(store, &bytes);
    assert_eq!(
        requests.multipart.load(Ordering::SeqCst),
        1,
        "a blob larger than a part goes up in a multipart upload"
    );
    let copy = cache.join(&hash.to_hex()[..2]).join(hash.to_hex());
    assert!(!copy.exists(), "a put does not fill the cache");
    let placed = store.stat(hash).unwrap().unwrap();
    requests.reset();
    assert_eq!(put(store, &bytes), hash);
    assert_eq!(
        requests.copy.load(Ordering::SeqCst),
        0,
        "an existing blob is not written over: {requests:?}"
    );
    assert_eq!(store.stat(hash).unwrap(), Some(placed));

    requests.reset();
    assert_eq!(read(store, hash).unwrap(), bytes);
    assert_eq!(requests.gets(), 1, "the first load downloads the blob");
    assert_eq!(
        std::fs::metadata(&copy).unwrap().len(),
        (HEADER + bytes.len()) as u64,
        "and keeps a copy"
    );

    requests.reset();
    assert_eq!(read(store, hash).unwrap(), bytes);
    assert_eq!(
        requests.total(),
        0,
        "the second load makes no request: {requests:?}"
    );

    // Checks of the stored bytes (verify, re-hashing) ask the server.
    requests.reset();
    let (actual, size) = super::hash_blob(store, hash, ContentHash::Xxh3)
        .unwrap()
        .unwrap();
    assert_eq!((actual, size), (hash, bytes.len() as u64));
    assert_eq!(requests.gets(), 1, "hash_blob reads the stored object");

    // A copy of the wrong size (truncated) is never used: the blob is downloaded again.
    let full = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &full[..full.len() - 1]).unwrap();
    requests.reset();
    assert_eq!(read(store, hash).unwrap(), bytes);
    assert_eq!(requests.gets(), 1, "a truncated copy is not trusted");
    assert_eq!(std::fs::read(&copy).unwrap(), full, "and is filled again");

    // A copy of the right size whose bytes changed is dropped: the load downloads the
    // blob again (the stored object is intact) and fills a good copy.
    let mut changed = full.clone();
    changed[HEADER + 1000] ^= 0xff;
    std::fs::write(&copy, &changed).unwrap();
    requests.reset();
    assert_eq!(
        read(store, hash).unwrap(),
        bytes,
        "a tampered copy is not what the load returns"
    );
    assert_eq!(requests.gets(), 1, "the blob is downloaded again");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        full,
        "and its copy filled again"
    );
    requests.reset();
    assert_eq!(read(store, hash).unwrap(), bytes);
    assert_eq!(requests.total(), 0, "the new copy serves the next load");

    // A download that does not hash to its name fills no copy.
    let other = put(store, &bytes_of(2, 10_000));
    let mut tampered = bytes_of(2, 10_000);
    tampered[5] ^= 1;
    backend.overwrite(other, &tampered).unwrap();
    assert_eq!(read(store, other).unwrap(), tampered, "bytes as stored");
    assert!(
        !cache
            .join(&other.to_hex()[..2])
            .join(other.to_hex())
            .exists(),
        "a damaged download is not cached"
    );

    // Deleting a blob deletes its copy.
    assert!(store.delete(hash).unwrap());
    assert!(!copy.exists());
    assert!(store.open(hash).unwrap().is_none());
}

/// An executed completion whose one output, `output`, is `value` saved by bincode.
fn executed(store: &Store, value: u32) -> Completion {
    let hash = store.save_blob(&value, &Bincode).unwrap();
    Completion {
        details: Default::default(),
        status: StepStatus::Executed,
        reason: None,
        error: None,
        compared: None,
        duration: Duration::from_millis(1),
        outputs: vec![StepOutput {
            name: "output".into(),
            hash,
            size: store.artifact_store().stat(hash).unwrap().unwrap().size,
            type_name: "u32".into(),
            cacher: "bincode".into(),
            cacher_version: 1,
            metadata: None,
        }],
    }
}

#[test]
fn a_hit_reads_nothing_and_an_object_missing_on_load_makes_the_next_lookup_miss() {
    let Some((bucket, prefix)) = test_bucket("a_hit_reads_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (backend, requests) = counted_backend(&bucket, &own_prefix(&prefix, "hits"));
    let backend = backend.with_read_cache(root.join("artifacts").join("cache"));
    let _cleanup = Cleanup(backend.clone());
    let store = Store::open_with(
        &root,
        StoreOptions {
            artifacts: Some(Arc::new(backend)),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let meta = store.metadata_store();
    let h: &dyn MetadataStore = meta.as_ref();

    start(h, "r1");
    let done = executed(&store, 7);
    let hash = done.outputs[0].hash;
    claim(h, "r1", 1).commit(done).unwrap();

    // A hit: no bytes read, no object read.
    start(h, "r2");
    requests.reset();
    let Begin::Hit { outputs, .. } = h.begin_step(&step("r2", 1)).unwrap() else {
        panic!("expected a hit");
    };
    assert_eq!(outputs, vec![(hash, 1)]);
    assert_eq!(requests.gets(), 0, "a hit reads no artifact bytes");
    assert_eq!(store.stats().blob_reads, 0);
    assert_eq!(
        requests.total(),
        0,
        "a hit trusts the recorded stat: no request per output ({} HEAD): {requests:?}",
        requests.heads()
    );

    // Loads verify; the second comes from the read cache.
    requests.reset();
    let load = || store.artifact("r2", "s", "output").unwrap().load::<u32>();
    assert_eq!(load().unwrap(), 7);
    assert_eq!(requests.gets(), 1);
    requests.reset();
    assert_eq!(load().unwrap(), 7);
    assert_eq!(requests.total(), 0, "the second load makes no request");

    // An object deleted behind the store's back, never loaded here.
    start(h, "r3");
    let done = executed(&store, 8);
    let gone = done.outputs[0].hash;
    claim(h, "r3", 2).commit(done).unwrap();
    assert!(store.artifact_store().delete(gone).unwrap());
    let err = store
        .artifact("r3", "s", "output")
        .unwrap()
        .load::<u32>()
        .unwrap_err();
    assert!(matches!(err, Error::BlobMissing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&gone.to_hex()) && message.contains(&format!("s3://{bucket}/")),
        "the error names the blob and where it should be: {message}"
    );
    // The next lookup does not reuse the execution: the step runs again.
    start(h, "r4");
    match h.begin_step(&step("r4", 2)).unwrap() {
        Begin::Claimed { damaged, .. } => assert_eq!(
            damaged,
            Some(Damage::Missing {
                output: "output".into()
            })
        ),
        other => panic!("expected the step to run again, got {other:?}"),
    }
}

/// No credential of the `AWS_*` variables in `text`.
fn assert_no_credentials(text: &str) {
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"] {
        if let Some(value) = std::env::var(var).ok().filter(|v| v.len() >= 8) {
            assert!(!text.contains(&value), "{var} leaked into: {text}");
        }
    }
}

#[test]
fn a_missing_bucket_is_an_error_that_names_it() {
    let Some(_) = test_bucket("a_missing_bucket_is_an_error_that_names_it") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("no-such-bucket-{}", std::process::id());
    let config = StoreConfig::new(
        &format!("sqlite:{}", dir.path().join("metadata.sqlite").display()),
        Some(&format!("s3://{bucket}/x")),
    )
    .unwrap();
    let started = Instant::now();
    let store = Store::connect(&config).unwrap();
    let err = store
        .save_blob(&vec![1u8, 2, 3], &crate::cacher::Raw)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("bucket `{bucket}` does not exist")),
        "{message}"
    );
    assert_no_credentials(&format!("{message} {err:?}"));

    // Reading from it is the same error, not a missing blob (which the store would record
    // as damage).
    let blobs = store.artifact_store();
    for err in [
        blobs.open(Hash128(1)).map(|_| ()).unwrap_err(),
        blobs.stat(Hash128(1)).map(|_| ()).unwrap_err(),
    ] {
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_no_credentials(&format!("{err} {err:?}"));
    }
    let err = store
        .load_blob(Hash128(1), &crate::cacher::Raw)
        .map(|_: Vec<u8>| ())
        .unwrap_err();
    assert!(!matches!(err, Error::BlobMissing { .. }), "{err:?}");
    eprintln!(
        "a missing bucket was reported in {:?}: {message}",
        started.elapsed()
    );
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    // A port nobody listens on: connections are refused at once, every attempt. Runs
    // without Garage.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "not-a-real-secret-0123456789";
    let builder = AmazonS3Builder::new()
        .with_bucket_name("some-bucket")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("garage")
        .with_access_key_id("GKnotarealkeyid0123")
        .with_secret_access_key(secret);
    let (client, endpoint) = s3_client_from(builder).unwrap();
    let backend = ObjectArtifacts::s3_over(Arc::new(client), "some-bucket", "x", endpoint).unwrap();
    let started = Instant::now();
    let err = backend.stat(Hash128(1)).unwrap_err();
    let took = started.elapsed();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "cannot reach the S3 server at http://127.0.0.1:{port}"
        )) && message.contains("s3://some-bucket/x"),
        "{message}"
    );
    let text = format!("{message} {err:?}");
    assert!(
        !text.contains(secret) && !text.contains("GKnotarealkeyid0123"),
        "{text}"
    );
    let mut w = backend.put(ContentHash::Xxh3).unwrap();
    w.write_all(b"bytes").unwrap();
    let err = w.commit().unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
    eprintln!("an unreachable server was reported after {took:?}: {message}");
}

/// Everything an error shows: its text, its debug form, and those of its sources.
fn shown(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

/// A backend of `bucket` under a prefix of its own, through the client `builder`
/// configures (from the `AWS_*` variables, then changed).
fn backend_of(builder: AmazonS3Builder, bucket: &str, prefix: &str) -> ObjectArtifacts {
    let (client, endpoint) = s3_client_from(builder.with_bucket_name(bucket)).unwrap();
    ObjectArtifacts::s3_over(
        Arc::new(client),
        bucket,
        &own_prefix(prefix, "errors"),
        endpoint,
    )
    .unwrap()
}

/// The errors of a stat, a list and a put.
fn failures(backend: &ObjectArtifacts) -> Vec<io::Error> {
    let mut w = backend.put(ContentHash::Xxh3).unwrap();
    w.write_all(b"bytes").unwrap();
    vec![
        backend.stat(Hash128(1)).map(|_| ()).unwrap_err(),
        backend.list().map(|_| ()).unwrap_err(),
        w.commit().map(|_| ()).unwrap_err(),
    ]
}

#[test]
fn a_password_in_the_endpoint_shows_in_no_error() {
    let Some((bucket, prefix)) = test_bucket("a_password_in_the_endpoint_shows_in_no_error") else {
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT names the test server");
    // A password with characters a URL escapes, shown in neither form.
    let (user, password, escaped) = (
        "endpoint-user",
        "pw@in:end/point-0123",
        "pw%40in%3Aend%2Fpoint-0123",
    );
    let with_user = |endpoint: &str| endpoint.replacen("://", &format!("://{user}:{escaped}@"), 1);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut errors = Vec::new();
    // The server is not there.
    let gone = backend_of(
        AmazonS3Builder::from_env().with_endpoint(with_user(&format!("http://127.0.0.1:{closed}"))),
        &bucket,
        &prefix,
    );
    for e in failures(&gone) {
        assert!(e.to_string().contains("cannot reach"), "{e}");
        errors.push(e);
    }
    let debug = format!("{gone:?}");
    // The server refuses the keys.
    let refused = backend_of(
        AmazonS3Builder::from_env()
            .with_endpoint(with_user(&endpoint))
            .with_secret_access_key("not-the-secret-0123456789"),
        &bucket,
        &prefix,
    );
    for e in failures(&refused) {
        assert!(e.to_string().contains("refused the credentials"), "{e}");
        errors.push(e);
    }
    // The bucket does not exist.
    let missing = format!("no-such-bucket-{}", std::process::id());
    let nowhere = backend_of(
        AmazonS3Builder::from_env().with_endpoint(with_user(&endpoint)),
        &missing,
        "x",
    );
    let e = nowhere.stat(Hash128(1)).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    errors.push(e);
    for e in &errors {
        let text = format!("{} {debug}", shown(e));
        for hidden in [password, escaped, user] {
            assert!(!text.contains(hidden), "`{hidden}` shows in: {text}");
        }
        assert_no_credentials(&text);
    }
    assert!(
        errors[0]
            .to_string()
            .contains(&format!("the S3 server at http://127.0.0.1:{closed} ")),
        "the endpoint is named without its user info: {}",
        errors[0]
    );
}

#[test]
fn refused_keys_plain_http_and_missing_keys_are_named_with_their_fix() {
    let Some((bucket, prefix)) =
        test_bucket("refused_keys_plain_http_and_missing_keys_are_named_with_their_fix")
    else {
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT names the test server");
    for builder in [
        AmazonS3Builder::from_env().with_secret_access_key("not-the-secret-0123456789"),
        AmazonS3Builder::from_env().with_access_key_id("GK000000000000000000000000"),
    ] {
        for e in failures(&backend_of(builder, &bucket, &prefix)) {
            let text = e.to_string();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{text}");
            assert!(
                text.contains("refused the credentials")
                    && text.contains("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
                    && !text.contains("cannot reach"),
                "{text}"
            );
            // S3's XML answer is a sentence, not markup.
            assert!(!text.contains('<') && !text.contains("non-2xx"), "{text}");
            assert_no_credentials(&shown(&e));
        }
    }
    // An `http://` endpoint the client was not allowed to use.
    if endpoint.starts_with("http://") {
        let plain = backend_of(
            AmazonS3Builder::from_env().with_allow_http(false),
            &bucket,
            &prefix,
        );
        for e in failures(&plain) {
            let text = e.to_string();
            assert!(
                text.contains("set AWS_ALLOW_HTTP=true") && !text.contains("cannot reach"),
                "{text}"
            );
        }
    }
    // No keys at all: the client asks an instance metadata service, which has none here.
    let keyless = backend_of(
        AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("garage"),
        &bucket,
        &prefix,
    );
    for e in failures(&keyless) {
        let text = e.to_string();
        assert!(
            text.contains("no S3 credentials")
                && text.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
            "{text}"
        );
    }
}
