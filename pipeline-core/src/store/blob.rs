//! Content-addressed blobs: `artifacts/ab/ab12...` named by the xxh3-128 of their bytes.
//!
//! Bytes are hashed while they are written to a temporary file in `artifacts/tmp/`, which is
//! synced and renamed into place; the metadata commit comes after, so a completed execution
//! never points at a half-written blob.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::Xxh3;

use crate::key::Hash128;

/// Path of the blob with hash `hash` under `artifacts`.
pub(crate) fn blob_path(artifacts: &Path, hash: Hash128) -> PathBuf {
    let hex = hash.to_hex();
    artifacts.join(&hex[..2]).join(hex)
}

/// Writes a blob: hashes and counts bytes on the way to a temporary file.
pub(crate) struct BlobWriter {
    file: BufWriter<File>,
    hasher: Xxh3,
    size: u64,
    tmp: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobWriter {
    pub(crate) fn create(artifacts: &Path) -> io::Result<Self> {
        let dir = artifacts.join("tmp");
        fs::create_dir_all(&dir)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            "{}-{}-{n}.tmp",
            std::process::id(),
            crate::time::now_micros()
        ));
        let file = File::create(&tmp)?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Xxh3::new(),
            size: 0,
            tmp,
        })
    }

    /// Syncs the bytes, renames the file to its content address and returns (hash, size).
    pub(crate) fn finish(mut self, artifacts: &Path) -> io::Result<(Hash128, u64)> {
        self.file.flush()?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        file.sync_all()?;
        drop(file);
        let hash = Hash128(self.hasher.digest128());
        let path = blob_path(artifacts, hash);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // Rename over any existing blob: same name means same bytes, unless the old file was
        // damaged, in which case this repairs it.
        fs::rename(&self.tmp, &path)?;
        if let Some(dir) = path.parent() {
            // Make the rename durable before the metadata commit refers to it.
            File::open(dir)?.sync_all()?;
        }
        Ok((hash, self.size))
    }

    /// Removes the temporary file after a failed save.
    pub(crate) fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self.file);
        let _ = fs::remove_file(tmp);
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads a blob while hashing it, so the caller can verify the content address.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Xxh3,
    pub(crate) bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Xxh3::new(),
            bytes: 0,
        }
    }

    /// Reads what the consumer left unread and returns the hash of everything.
    pub(crate) fn finish(mut self) -> io::Result<(Hash128, u64)> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                break;
            }
        }
        Ok((Hash128(self.hasher.digest128()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Hashes a whole file (used to re-check a blob whose size or mtime changed).
pub(crate) fn hash_file(path: &Path) -> io::Result<(Hash128, u64)> {
    HashingReader::new(File::open(path)?).finish()
}

/// Modification time in nanoseconds since the epoch, 0 when unknown.
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
