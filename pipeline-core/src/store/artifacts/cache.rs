//! The local read-through cache of a remote blob store ([`ObjectArtifacts::with_read_cache`]):
//! a blob downloaded once is kept in a folder, so loading it again costs no request.
//!
//! Layout: `<dir>/ab/ab12...` (one file per blob) and `<dir>/tmp/` (copies being filled).
//! A copy is filled while the blob streams to its reader: the bytes go to a temporary
//! file and are hashed on the way; only a copy whose byte count equals the object's size
//! and whose hash is the blob's name is renamed into place. A copy starts with a header
//! ([`HEADER`] bytes: a magic, the hash kind, the size and the hash), so one whose length
//! is wrong (a truncated file, another file put there) is never used and is removed on
//! sight; a copy is hashed when it is opened, and one whose bytes changed since it was
//! filled is removed and not used: the load downloads the blob again (and verifies it), so
//! a damaged local copy never fails a load nor passes for damage of the stored object. (It
//! is hashed once more while it is read: bytes changed in between fail that read.) Nothing
//! in the folder is needed: delete it, or any file in it, at any time.
//!
//! The cache is not bounded: a blob leaves it when it is deleted from the store
//! ([`ArtifactStore::delete`], which garbage collection calls) or when the folder is
//! emptied by hand.
//!
//! [`ObjectArtifacts::with_read_cache`]: super::ObjectArtifacts::with_read_cache
//! [`ArtifactStore::delete`]: super::ArtifactStore::delete

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::key::Hash128;
use crate::store::blob::{blob_path, Hasher};
use crate::store::ContentHash;

/// Length of a cached copy's header: magic (7 bytes), hash kind (1), size (8, little
/// endian), hash (16, big endian).
pub(super) const HEADER: usize = 32;

/// The first bytes of every cached copy (format 1).
const MAGIC: &[u8; 7] = b"ppcach1";

/// A folder of verified copies of remote blobs.
#[derive(Debug)]
pub(super) struct ReadCache {
    dir: PathBuf,
    /// How blobs are named, once known: from the first put, from the store that opened the
    /// backend, or from the first download that hashed to its name under one of the kinds.
    kind: OnceLock<ContentHash>,
}

fn kind_byte(kind: ContentHash) -> u8 {
    match kind {
        ContentHash::Xxh3 => 1,
        ContentHash::Blake3 => 2,
    }
}

fn kind_of(byte: u8) -> Option<ContentHash> {
    ContentHash::ALL.into_iter().find(|k| kind_byte(*k) == byte)
}

fn header(kind: ContentHash, size: u64, hash: Hash128) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..7].copy_from_slice(MAGIC);
    h[7] = kind_byte(kind);
    h[8..16].copy_from_slice(&size.to_le_bytes());
    h[16..].copy_from_slice(&hash.0.to_be_bytes());
    h
}

impl ReadCache {
    pub(super) fn new(dir: PathBuf) -> Self {
        ReadCache {
            dir,
            kind: OnceLock::new(),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records how the store names blobs (the first kind given wins).
    pub(super) fn learn(&self, kind: ContentHash) {
        let _ = self.kind.set(kind);
    }

    fn path(&self, hash: Hash128) -> PathBuf {
        blob_path(&self.dir, hash)
    }

    /// The cached copy of blob `hash`, positioned at its first byte, or `None` when there
    /// is none. A file whose header does not name `hash` or whose length differs from the
    /// size its header records is removed and not used.
    pub(super) fn open(&self, hash: Hash128) -> Option<Box<dyn Read + Send>> {
        let path = self.path(hash);
        let mut file = File::open(&path).ok()?;
        let mut head = [0u8; HEADER];
        let checked = (|| -> io::Result<Option<(ContentHash, u64)>> {
            file.read_exact(&mut head)?;
            let size = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            let named = Hash128(u128::from_be_bytes(
                head[16..].try_into().unwrap_or_default(),
            ));
            let len = file.metadata()?.len();
            let Some(kind) = kind_of(head[7]) else {
                return Ok(None);
            };
            let intact = &head[..7] == MAGIC && named == hash && len == HEADER as u64 + size;
            Ok(intact.then_some((kind, size)))
        })();
        let Ok(Some((kind, size))) = checked else {
            // Truncated, of another format, or not the copy of this blob: never used.
            let _ = fs::remove_file(&path);
            return None;
        };
        // Hashed before it is handed out: a copy whose bytes changed on the local disk
        // since it was filled is not the blob (the stored object may well be intact), so it
        // is dropped and the caller downloads the blob again, rather than failing a load
        // whose reader has already consumed the bytes.
        let mut hasher = Hasher::new(kind);
        let mut reader = io::BufReader::with_capacity(1 << 20, &mut file);
        let hashed = io::copy(&mut reader, &mut HashSink(&mut hasher));
        drop(reader);
        if !matches!(hashed, Ok(n) if n == size) || hasher.finish() != hash {
            let _ = fs::remove_file(&path);
            return None;
        }
        if file.seek(SeekFrom::Start(HEADER as u64)).is_err() {
            return None;
        }
        Some(Box::new(CachedCopy {
            file: io::BufReader::with_capacity(1 << 20, file),
            hasher: Hasher::new(kind),
            hash,
            size,
            read: 0,
            path,
        }))
    }

    /// Starts filling a copy of blob `hash`, whose object holds `size` bytes.
    pub(super) fn fill(&self, hash: Hash128, size: u64) -> Option<Fill> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp_dir = self.dir.join("tmp");
        fs::create_dir_all(&tmp_dir).ok()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}-{n}-{}", std::process::id(), hash.to_hex()));
        let mut file = io::BufWriter::with_capacity(1 << 20, File::create(&tmp).ok()?);
        // The header is written again once the kind is certain (see `Fill::finish`).
        let kind = self.kind.get().copied().unwrap_or_default();
        if file.write_all(&header(kind, size, hash)).is_err() {
            let _ = fs::remove_file(&tmp);
            return None;
        }
        let hashers = match self.kind.get() {
            Some(kind) => vec![(*kind, Hasher::new(*kind))],
            // Not known yet: the kind under which the bytes hash to their name is the one.
            None => ContentHash::ALL
                .into_iter()
                .map(|k| (k, Hasher::new(k)))
                .collect(),
        };
        Some(Fill {
            file: Some(file),
            tmp,
            target: self.path(hash),
            hash,
            size,
            written: 0,
            hashers,
        })
    }

    /// Removes the copy of blob `hash`, if there is one.
    pub(super) fn remove(&self, hash: Hash128) {
        let _ = fs::remove_file(self.path(hash));
    }

    /// Removes copies being filled that are older than `older_than` (their reader was
    /// killed); returns how many there were (only counts them with `dry_run`).
    pub(super) fn remove_stale_fills(&self, older_than: Duration, dry_run: bool) -> usize {
        let Ok(entries) = fs::read_dir(self.dir.join("tmp")) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= older_than);
            if old {
                removed += 1;
                if !dry_run {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        removed
    }
}

/// A copy being filled from a download (see [`ReadCache::fill`]).
pub(super) struct Fill {
    /// `None` once finished or given up.
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    hash: Hash128,
    size: u64,
    written: u64,
    hashers: Vec<(ContentHash, Hasher)>,
}

impl Fill {
    /// Adds the next bytes of the download; a failed write gives the copy up (the reader
    /// is not disturbed: the cache is an optimization).
    pub(super) fn add(&mut self, bytes: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if file.write_all(bytes).is_err() {
            self.give_up();
            return;
        }
        for (_, h) in &mut self.hashers {
            h.update(bytes);
        }
        self.written += bytes.len() as u64;
    }

    /// The download ended: puts the copy in place when it is the blob, complete, and
    /// returns the kind that named it.
    pub(super) fn finish(mut self) -> Option<ContentHash> {
        let mut file = self.file.take()?;
        let kind = self
            .hashers
            .iter()
            .find(|(_, h)| h.finish() == self.hash)
            .map(|(k, _)| *k);
        let placed = (|| -> io::Result<Option<ContentHash>> {
            let Some(kind) = kind.filter(|_| self.written == self.size) else {
                return Ok(None);
            };
            file.flush()?;
            let mut file = file.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header(kind, self.size, self.hash))?;
            drop(file);
            if let Some(parent) = self.target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&self.tmp, &self.target)?;
            Ok(Some(kind))
        })();
        match placed {
            Ok(Some(kind)) => Some(kind),
            _ => {
                let _ = fs::remove_file(&self.tmp);
                None
            }
        }
    }

    fn give_up(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for Fill {
    /// A download that did not reach its end leaves no copy.
    fn drop(&mut self) {
        self.give_up();
    }
}

/// Feeds what is written to a [`Hasher`].
struct HashSink<'a>(&'a mut Hasher);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A cached copy being read, checked when it was opened ([`ReadCache::open`]) and hashed
/// again on the way, so bytes changed on the local disk between the two end the read with
/// an error instead of reaching the caller as the blob (the copy is removed; the next load
/// downloads the blob again).
struct CachedCopy {
    file: io::BufReader<File>,
    hasher: Hasher,
    hash: Hash128,
    size: u64,
    read: u64,
    path: PathBuf,
}

impl Read for CachedCopy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if n == 0 && (self.read != self.size || self.hasher.finish() != self.hash) {
            let _ = fs::remove_file(&self.path);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the local cached copy of blob {} at {} changed since it was downloaded; it was removed, load again to download the blob",
                    self.hash,
                    self.path.display()
                ),
            ));
        }
        Ok(n)
    }
}
