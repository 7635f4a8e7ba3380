//! Content-addressed blobs: named by the hash (xxh3-128 by default) of their bytes, which
//! is computed while they are written ([`HashingWriter`]) and checked while they are read
//! ([`HashingReader`]). Where the bytes go is the business of an
//! [`ArtifactStore`](super::artifacts::ArtifactStore).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
    /// Every algorithm, in the order above.
    pub const ALL: [ContentHash; 2] = [ContentHash::Xxh3, ContentHash::Blake3];

    /// The stored name: the one table [`Display`](std::fmt::Display) and
    /// [`FromStr`](std::str::FromStr) share.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContentHash::Xxh3 => "xxh3-128",
            ContentHash::Blake3 => "blake3-128",
        }
    }
}

/// `xxh3-128` or `blake3-128`, as the store records it.
impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContentHash {
    type Err = crate::error::UnknownValue;

    /// Reads an algorithm name as [`Display`](std::fmt::Display) writes it.
    ///
    /// # Errors
    ///
    /// [`UnknownValue`](crate::UnknownValue) for a name this version does not know.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| crate::error::UnknownValue::new("hash algorithm", s))
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
