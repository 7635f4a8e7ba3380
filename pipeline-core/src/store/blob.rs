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

/// How a store names blobs: the hash of their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentHash {
    /// xxh3-128: very fast, not cryptographic. The default.
    #[default]
    Xxh3,
    /// BLAKE3 truncated to 128 bits: cryptographic, for stores shared between people who
    /// do not trust each other (nobody can craft bytes that collide with a blob).
    Blake3,
}

impl ContentHash {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContentHash::Xxh3 => "xxh3-128",
            ContentHash::Blake3 => "blake3-128",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "xxh3-128" => Some(ContentHash::Xxh3),
            "blake3-128" => Some(ContentHash::Blake3),
            _ => None,
        }
    }
}

/// A running hash of either kind.
pub(crate) enum Hasher {
    Xxh3(Box<Xxh3>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub(crate) fn new(kind: ContentHash) -> Self {
        match kind {
            ContentHash::Xxh3 => Hasher::Xxh3(Box::new(Xxh3::new())),
            ContentHash::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Xxh3(h) => h.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    pub(crate) fn finish(&self) -> Hash128 {
        match self {
            Hasher::Xxh3(h) => Hash128(h.digest128()),
            Hasher::Blake3(h) => {
                let mut first = [0u8; 16];
                first.copy_from_slice(&h.finalize().as_bytes()[..16]);
                Hash128(u128::from_be_bytes(first))
            }
        }
    }
}

/// Path of the blob with hash `hash` under `artifacts`.
pub(crate) fn blob_path(artifacts: &Path, hash: Hash128) -> PathBuf {
    let hex = hash.to_hex();
    artifacts.join(&hex[..2]).join(hex)
}

/// Writes a blob: hashes and counts bytes on the way to a temporary file.
pub(crate) struct BlobWriter {
    file: Option<BufWriter<File>>,
    hasher: Hasher,
    size: u64,
    tmp: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobWriter {
    pub(crate) fn create(artifacts: &Path, kind: ContentHash) -> io::Result<Self> {
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
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Hasher::new(kind),
            size: 0,
            tmp,
        })
    }

    /// Syncs the bytes, renames the file to its content address and returns (hash, size).
    pub(crate) fn finish(mut self, artifacts: &Path) -> io::Result<(Hash128, u64)> {
        let Some(mut file) = self.file.take() else {
            return Err(io::Error::other("blob writer already finished"));
        };
        file.flush()?;
        let file = file
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        file.sync_all()?;
        drop(file);
        let hash = self.hasher.finish();
        let path = blob_path(artifacts, hash);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // Rename over any existing blob: same name means same bytes, unless the old file was
        // damaged, in which case this repairs it.
        fs::rename(&self.tmp, &path)?;
        self.tmp = PathBuf::new(); // renamed: nothing for Drop to remove
        if let Some(dir) = path.parent() {
            // Make the rename durable before the metadata commit refers to it.
            File::open(dir)?.sync_all()?;
        }
        Ok((hash, self.size))
    }

    /// Removes the temporary file after a failed save.
    pub(crate) fn abandon(self) {
        drop(self); // Drop removes the temporary file
    }
}

impl Drop for BlobWriter {
    /// A writer dropped before `finish` (a failing or panicking cacher) leaves no file.
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Reads a blob while hashing it, so the caller can verify the content address.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    pub(crate) bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, kind: ContentHash) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(kind),
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
        Ok((self.hasher.finish(), self.bytes))
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
pub(crate) fn hash_file(path: &Path, kind: ContentHash) -> io::Result<(Hash128, u64)> {
    HashingReader::new(File::open(path)?, kind).finish()
}

/// Modification time in nanoseconds since the epoch, 0 when unknown.
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
