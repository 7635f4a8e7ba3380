//! Content-addressed blobs: `artifacts/ab/ab12...` named by the xxh3-128 of their bytes.
//!
//! Bytes are hashed while they are written to a temporary file in `artifacts/tmp/`, which is
//! synced and renamed into place; the metadata commit comes after, so a completed execution
//! never points at a half-written blob.

use std::fs::{self, File};
use std::io::{self, Read, Write};
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
    out: Option<HashingWriter<File>>,
    tmp: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobWriter {
    /// A writer whose temporary file is named after `owner`, the writing handle's owner
    /// token, so that the file of a process that died is recognised and removed.
    pub(crate) fn create(artifacts: &Path, kind: ContentHash, owner: &str) -> io::Result<Self> {
        let dir = artifacts.join("tmp");
        fs::create_dir_all(&dir)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{owner}-{n}.tmp"));
        let file = File::create(&tmp)?;
        Ok(BlobWriter {
            out: Some(HashingWriter::with_hash(file, kind)),
            tmp,
        })
    }

    /// Syncs the bytes, renames the file to its content address and returns (hash, size).
    pub(crate) fn finish(self, artifacts: &Path) -> io::Result<(Hash128, u64)> {
        self.finish_with(artifacts, |_| Ok(()))
    }

    /// As [`finish`](Self::finish), calling `before_place` with the content hash once the
    /// bytes are synced and before the file takes its content address (a lease holds the
    /// blob there, so that gc spares it from the moment it is in place). An error of
    /// `before_place` leaves no file.
    pub(crate) fn finish_with(
        mut self,
        artifacts: &Path,
        before_place: impl FnOnce(Hash128) -> io::Result<()>,
    ) -> io::Result<(Hash128, u64)> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("blob writer already finished"));
        };
        let (file, hash, size) = out.finish()?;
        file.sync_all()?;
        drop(file);
        before_place(hash)?;
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
        Ok((hash, size))
    }

    /// Removes the temporary file after a failed save.
    pub(crate) fn abandon(self) {
        drop(self); // Drop removes the temporary file
    }

    fn out(&mut self) -> io::Result<&mut HashingWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))
    }
}

impl Drop for BlobWriter {
    /// A writer dropped before `finish` (a failing or panicking cacher) leaves no file.
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for BlobWriter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out()?.write(buf)
    }

    #[inline]
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

/// Bytes gathered before they are hashed and written: big enough to amortize the calls,
/// small enough to still be in the CPU cache when they are written after hashing.
const CHUNK: usize = 256 << 10;

/// Hashes and counts the bytes written through it on their way to `inner`: the content hash
/// of a blob is computed this way while the blob is written.
///
/// Cachers may write a value in many small pieces; hashing and writing each piece on its own
/// costs far more than the bytes themselves, so pieces are gathered into chunks that are
/// hashed and written at once (writes of a chunk or more go straight through).
#[doc(hidden)]
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    buf: Vec<u8>,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes with xxh3-128, the default content hash.
    pub fn new(inner: W) -> Self {
        Self::with_hash(inner, ContentHash::Xxh3)
    }

    /// Hashes with `kind`.
    pub fn with_hash(inner: W, kind: ContentHash) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(kind),
            buf: Vec::with_capacity(CHUNK),
            size: 0,
        }
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.hasher.update(&self.buf);
            let written = self.inner.write_all(&self.buf);
            self.buf.clear();
            written?;
        }
        Ok(())
    }

    /// Writes out what is gathered; returns the inner writer, the hash and the byte count.
    ///
    /// # Errors
    ///
    /// The inner writer's [`io::Error`] for the last bytes (e.g. a full disk).
    pub fn finish(mut self) -> io::Result<(W, Hash128, u64)> {
        self.write_chunk()?;
        self.inner.flush()?;
        let hash = self.hasher.finish();
        Ok((self.inner, hash, self.size))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.len() <= CHUNK - self.buf.len() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.write_chunk()?;
            if bytes.len() >= CHUNK {
                self.hasher.update(bytes);
                self.inner.write_all(bytes)?;
            } else {
                self.buf.extend_from_slice(bytes);
            }
        }
        self.size += bytes.len() as u64;
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_chunk()?;
        self.inner.flush()
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
