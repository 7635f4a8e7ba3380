//! Artifact bytes in any [`object_store`] backend: its `LocalFileSystem` now, S3-compatible
//! servers next (the issue "Beyond one machine"), on a small Tokio runtime of its own, so
//! callers see no async.
//!
//! Layout under the prefix: `ab/ab12...` (blobs), `ab/ab12....json` (sidecars) and
//! `tmp/...` (writes in progress). A put streams through [`BufWriter`]: one `PUT` for a blob
//! smaller than a part, a multipart upload (parts of [`PART_SIZE`], up to
//! [`UPLOAD_CONCURRENCY`] at once) for larger ones. Since the hash is known only at the end,
//! the bytes go to a temporary object first, which is then renamed (copied and deleted on
//! S3) to the blob's name, unless a blob of that name exists already: content addressing
//! makes the existing one identical, so it is not overwritten.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

use super::{ArtifactStore, BlobPut, BlobStat, ListedBlob};
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
}

impl fmt::Debug for ObjectArtifacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectArtifacts")
            .field("url", &self.url)
            .finish()
    }
}

impl ObjectArtifacts {
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
        })
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
            .map_err(io::Error::other)
    }

    fn head(&self, path: &ObjectPath) -> io::Result<Option<ObjectMeta>> {
        match self.runtime.block_on(self.store.head(path)) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
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

/// A missing object as `Ok(None)`, any other error as an `io::Error` with it as source.
fn found<T>(r: object_store::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io::Error::other(e)),
    }
}

impl ArtifactStore for ObjectArtifacts {
    fn put(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
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
        let sink = Upload {
            writer: Some(writer),
            runtime: Arc::clone(&self.runtime),
        };
        Ok(Box::new(ObjectPut {
            out: Some(HashingWriter::with_hash(sink, kind)),
            tmp,
            backend: self.clone(),
        }))
    }

    fn open(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
        let path = self.blob(hash);
        let Some(got) = found(self.runtime.block_on(self.store.get(&path)))? else {
            return Ok(None);
        };
        Ok(Some(match got.payload {
            // `LocalFileSystem` hands over the open file: read it directly.
            GetResultPayload::File(file, _) => {
                Box::new(io::BufReader::with_capacity(1 << 20, file))
            }
            GetResultPayload::Stream(stream) => Box::new(StreamReader {
                stream,
                chunk: Bytes::new(),
                runtime: Arc::clone(&self.runtime),
            }),
        }))
    }

    fn stat(&self, hash: Hash128) -> io::Result<Option<BlobStat>> {
        Ok(self.head(&self.blob(hash))?.as_ref().map(stat_of))
    }

    fn delete(&self, hash: Hash128) -> io::Result<bool> {
        let path = self.blob(hash);
        // S3 answers a delete of a missing key with success: ask first.
        if self.head(&path)?.is_none() {
            return Ok(false);
        }
        found(self.runtime.block_on(self.store.delete(&path)))?;
        let _ = self
            .runtime
            .block_on(self.store.delete(&self.sidecar(hash)));
        Ok(true)
    }

    fn list(&self) -> io::Result<Vec<ListedBlob>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<object_store::Result<ObjectMeta>> = self
            .runtime
            .block_on(self.store.list(prefix).collect::<Vec<_>>());
        let mut out = Vec::new();
        for meta in metas {
            let meta = meta.map_err(io::Error::other)?;
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
        let mut removed = 0;
        for meta in metas {
            let meta = meta.map_err(io::Error::other)?;
            let old = stat_of(&meta)
                .last_used
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= older_than);
            if !old {
                continue;
            }
            removed += 1;
            if !dry_run {
                found(self.runtime.block_on(self.store.delete(&meta.location)))?;
            }
        }
        Ok(removed)
    }

    fn put_sidecar(&self, hash: Hash128, doc: &[u8]) -> io::Result<()> {
        let payload = PutPayload::from(Bytes::copy_from_slice(doc));
        self.runtime
            .block_on(self.store.put(&self.sidecar(hash), payload))
            .map(|_| ())
            .map_err(io::Error::other)
    }

    fn get_sidecar(&self, hash: Hash128) -> io::Result<Option<Vec<u8>>> {
        let path = self.sidecar(hash);
        let Some(got) = found(self.runtime.block_on(self.store.get(&path)))? else {
            return Ok(None);
        };
        found(self.runtime.block_on(got.bytes())).map(|b| b.map(|b| b.to_vec()))
    }

    fn location(&self, hash: Hash128) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.url, self.blob(hash)))
    }
}

/// The upload under the hashing writer: each chunk goes to the [`BufWriter`] on the
/// backend's runtime.
struct Upload {
    /// `None` once shut down or aborted.
    writer: Option<BufWriter>,
    runtime: Arc<Runtime>,
}

impl Upload {
    fn finish(&mut self) -> io::Result<()> {
        let Some(mut writer) = self.writer.take() else {
            return Err(io::Error::other("upload already finished"));
        };
        self.runtime.block_on(writer.shutdown())
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
        self.runtime
            .block_on(writer.put(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // parts go up as they fill; `finish` sends the rest
    }
}

impl Drop for Upload {
    /// An upload dropped before it finished is aborted: its parts are removed.
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = self.runtime.block_on(writer.abort());
        }
    }
}

/// A blob being written: hashed on its way to a temporary object.
struct ObjectPut {
    out: Option<HashingWriter<Upload>>,
    tmp: ObjectPath,
    backend: ObjectArtifacts,
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
        let placed = match b.head(&target)? {
            // Same name, same bytes: keep the object that is there (never overwritten).
            Some(_) => b.runtime.block_on(b.store.delete(&self.tmp)),
            None => b.runtime.block_on(b.store.rename(&self.tmp, &target)),
        };
        if let Err(e) = placed {
            // Best effort: a temporary object left behind is never taken for a blob.
            let _ = b.runtime.block_on(b.store.delete(&self.tmp));
            return Err(io::Error::other(e));
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

/// Reads an object's byte stream on the backend's runtime.
struct StreamReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    runtime: Arc<Runtime>,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(0),
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
