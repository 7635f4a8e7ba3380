//! Artifact bytes: where a store keeps its blobs, behind one trait.
//!
//! A [`Store`](super::Store) keeps its metadata (runs, executions, lineage) in SQLite and
//! the bytes of its artifacts in an [`ArtifactStore`]: by default the folder beside the
//! database ([`LocalArtifacts`], `artifacts/ab/ab12...`), or any other implementation given
//! in [`StoreOptions::artifacts`](super::StoreOptions::artifacts), such as
//! [`ObjectArtifacts`] on the `object_store` crate.
//!
//! # The contract
//!
//! Blobs are content-addressed: a blob's name is the hash of its bytes, so a name is written
//! once with one content and a duplicate write is harmless.
//!
//! * [`put`](ArtifactStore::put) streams bytes in and hashes them on the way; only
//!   [`commit`](BlobPut::commit) makes the blob visible, complete, under its hash, and it is
//!   durable when `commit` returns (the store commits the metadata row that refers to it
//!   right after). A put dropped before `commit` (a failing cacher, a panic, a killed
//!   process) leaves nothing under any hash.
//! * [`stat`](ArtifactStore::stat) answers without reading bytes: a cache hit checks its
//!   blobs this way, comparing size and [`modified_ns`](BlobStat::modified_ns) with what the
//!   store recorded when the blob was written, and re-hashes only when they differ. So
//!   `modified_ns` must not change while the bytes do not (reading or
//!   [`touch`](ArtifactStore::touch) leaves it alone).
//! * [`open`](ArtifactStore::open) returns the bytes as stored, or a local copy of them
//!   verified when it was made (a read-through cache); the store verifies their hash while
//!   it reads. [`open_uncached`](ArtifactStore::open_uncached) always reads the stored
//!   bytes themselves: [`hash_blob`] (verify, re-hashing) checks them with it.
//! * [`delete`](ArtifactStore::delete) and [`list`](ArtifactStore::list) serve garbage
//!   collection and `verify`.
//!
//! [`contract::artifact_store`] checks all of this against any implementation; both built-in
//! ones pass it in this crate's tests.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::blob::HashingReader;
use super::ContentHash;
use crate::key::Hash128;

#[cfg(feature = "object-store")]
mod cache;
pub mod contract;
mod local;
#[cfg(feature = "object-store")]
mod object;
#[cfg(all(test, feature = "s3"))]
mod s3_tests;

pub use local::LocalArtifacts;
#[cfg(feature = "object-store")]
pub use object::ObjectArtifacts;

/// What a backend knows of a stored blob without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStat {
    /// Size in bytes.
    pub size: u64,
    /// When the bytes were last written, in nanoseconds since the Unix epoch (0 when the
    /// backend cannot tell). Unchanged as long as the bytes are unchanged; a store compares
    /// it with the value it recorded to decide whether a blob must be re-hashed.
    pub modified_ns: i64,
    /// When the blob was last written or marked used ([`ArtifactStore::touch`]), if known.
    /// Garbage collection spares blobs used recently.
    pub last_used: Option<SystemTime>,
}

/// One blob found by [`ArtifactStore::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedBlob {
    /// The blob's name: the hash of its bytes.
    pub hash: Hash128,
    /// Its size and times.
    pub stat: BlobStat,
}

/// Where a store keeps the bytes of its artifacts: a content-addressed blob store.
///
/// Object safe (`Arc<dyn ArtifactStore>`), shared between threads. Errors are
/// [`io::Error`]s; a backend keeps its own error as the source (`io::Error::other(e)`), and
/// a missing blob is `Ok(None)` or `Ok(false)`, never an error. See the [module
/// documentation](self) for the contract and [`contract::artifact_store`] for its tests.
pub trait ArtifactStore: Send + Sync + fmt::Debug {
    /// Starts writing a blob whose bytes are hashed with `kind` as they stream in.
    ///
    /// # Errors
    ///
    /// When the backend cannot start a write (no space for a temporary file, no access).
    fn put(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>>;

    /// The bytes of blob `hash` as stored (not verified: the reader hashes them), or `None`
    /// when there is no such blob.
    ///
    /// # Errors
    ///
    /// When the blob exists but cannot be read.
    fn open(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>>;

    /// As [`open`](ArtifactStore::open), but always the stored bytes themselves, never a
    /// local copy: checks of the store (`verify`, [`hash_blob`]) read through it. The
    /// default is `open`, for backends without a cache.
    ///
    /// # Errors
    ///
    /// When the blob exists but cannot be read.
    fn open_uncached(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
        self.open(hash)
    }

    /// Size and times of blob `hash` without reading it, or `None` when there is no such
    /// blob.
    ///
    /// # Errors
    ///
    /// When the backend cannot be asked (permissions, an unreachable server).
    fn stat(&self, hash: Hash128) -> io::Result<Option<BlobStat>>;

    /// Whether a cache hit confirms each output with [`stat`](ArtifactStore::stat) before
    /// reusing it: `true` (the default) where a stat is cheap, as in a local folder; `false`
    /// where it is a request to a server (S3), and then a hit of SQLite metadata trusts
    /// what the store recorded when the blob was written, as one of PostgreSQL metadata
    /// always does: a blob deleted or damaged behind the store's back is found by the load,
    /// which verifies the hash and tells the metadata, so the next run executes its step
    /// again.
    fn stat_on_hit(&self) -> bool {
        true
    }

    /// Removes blob `hash` and its sidecar; `false` when there was no such blob.
    ///
    /// # Errors
    ///
    /// When the blob exists but cannot be removed.
    fn delete(&self, hash: Hash128) -> io::Result<bool>;

    /// Every blob stored, in no particular order (sidecars and unfinished writes are not
    /// blobs).
    ///
    /// # Errors
    ///
    /// When the backend cannot be listed.
    fn list(&self) -> io::Result<Vec<ListedBlob>>;

    /// Marks blob `hash` as used now (a cache hit relies on it), without changing its
    /// [`modified_ns`](BlobStat::modified_ns). Best effort; backends that cannot record a
    /// use keep the default, which does nothing.
    ///
    /// # Errors
    ///
    /// When the mark cannot be written; callers may ignore it.
    fn touch(&self, _hash: Hash128) -> io::Result<()> {
        Ok(())
    }

    /// Removes what writes that never finished left behind (a process killed between
    /// uploading a temporary object and renaming it) when older than `older_than`, and
    /// returns how many there were; with `dry_run`, only counts them. Garbage collection
    /// calls it. The default does nothing: [`LocalArtifacts`]' temporary files are
    /// removed by the store, which knows whether their writer is alive.
    ///
    /// # Errors
    ///
    /// When the leftovers cannot be listed or removed.
    fn remove_stale_temporaries(
        &self,
        _older_than: std::time::Duration,
        _dry_run: bool,
    ) -> io::Result<usize> {
        Ok(0)
    }

    /// As [`put`](ArtifactStore::put), but [`commit`](BlobPut::commit) replaces a blob of
    /// the same name that is already there instead of keeping it: the store writes this
    /// way when a step executes again because its stored output was found damaged, so that
    /// the correct bytes take the place of the corrupt ones. The default is `put`, right
    /// for backends whose commit always replaces (such as [`LocalArtifacts`]); a backend
    /// that keeps existing blobs must override it, or a corrupt blob never heals.
    ///
    /// # Errors
    ///
    /// As for [`put`](ArtifactStore::put).
    fn put_replacing(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
        self.put(kind)
    }

    /// Records that the metadata store `store_id` keeps blobs here (`doc`: a small JSON
    /// document naming it), replacing an earlier claim of the same id. Each store writes
    /// its own claim before its first blob, so that garbage collection of any store sharing
    /// the location can tell it is not alone (and then deletes nothing: the other store's
    /// rows are out of its sight). The built-in backends keep claims in
    /// `<location>/.pipeline-stores/<id>.json`. The default fails with
    /// [`io::ErrorKind::Unsupported`]: the store then cannot tell whether another one
    /// shares the location, and gc assumes it does not.
    ///
    /// # Errors
    ///
    /// When the claim cannot be written; [`io::ErrorKind::Unsupported`] by default.
    fn put_claim(&self, store_id: &str, doc: &[u8]) -> io::Result<()> {
        let _ = (store_id, doc);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this artifact backend does not record which stores use it",
        ))
    }

    /// The claims written by [`put_claim`](ArtifactStore::put_claim): `(store id,
    /// document)` of every metadata store that keeps blobs here, in no particular order.
    ///
    /// # Errors
    ///
    /// When they cannot be listed or read; [`io::ErrorKind::Unsupported`] by default.
    fn claims(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this artifact backend does not record which stores use it",
        ))
    }

    /// Stores `doc` (a JSON document describing blob `hash`: type, cacher, producer) beside
    /// the blob, replacing an earlier one, so the store can be browsed without this library.
    ///
    /// # Errors
    ///
    /// When it cannot be written.
    fn put_sidecar(&self, hash: Hash128, doc: &[u8]) -> io::Result<()>;

    /// The sidecar document of blob `hash`, `None` when it has none.
    ///
    /// # Errors
    ///
    /// When it exists but cannot be read.
    fn get_sidecar(&self, hash: Hash128) -> io::Result<Option<Vec<u8>>>;

    /// Where blob `hash` is (or would be), for messages and [`Artifact::path`]: a file path
    /// for local backends, the object's URL (e.g. `s3://bucket/prefix/ab/ab12...`) for
    /// others. Its sidecar is the same location with the extension `.json`.
    ///
    /// [`Artifact::path`]: crate::Artifact::path
    fn location(&self, hash: Hash128) -> PathBuf;
}

/// A blob being written by [`ArtifactStore::put`]: bytes go in through [`Write`] and are
/// hashed on the way.
///
/// Dropping it without [`commit`](BlobPut::commit) aborts the write: nothing becomes visible
/// under any hash, and what was written so far is removed (best effort; a process that is
/// killed may leave a temporary file or object behind, never a blob).
pub trait BlobPut: Write + Send {
    /// As [`commit`](BlobPut::commit), calling `before_place` with the content hash once
    /// every byte is written and durable under a temporary name, and before the blob
    /// appears under its hash (or an existing blob of that hash is kept). The metadata
    /// store holds the blob for the writing lease there, so that gc, which deletes only
    /// unheld blobs, spares it from the moment it is visible (`store/guard.rs`).
    ///
    /// # Errors
    ///
    /// As for [`commit`](BlobPut::commit); an error of `before_place` aborts the put
    /// (nothing new becomes visible) and is returned.
    fn commit_with(
        self: Box<Self>,
        before_place: &mut dyn FnMut(Hash128) -> io::Result<()>,
    ) -> io::Result<(Hash128, u64)>;

    /// Finishes the write: the blob appears, complete and durable, under the hash of the
    /// bytes written, which is returned with their count. If a blob of that hash exists
    /// already, it is kept or replaced by identical bytes.
    ///
    /// # Errors
    ///
    /// When the last bytes cannot be written or the blob cannot be put in place; nothing
    /// is visible under the hash then, unless it was there before.
    fn commit(self: Box<Self>) -> io::Result<(Hash128, u64)> {
        self.commit_with(&mut |_| Ok(()))
    }
}

/// The folder (or object prefix) under a backend's location that holds the claims of the
/// stores using it ([`ArtifactStore::put_claim`]).
pub const CLAIMS_DIR: &str = ".pipeline-stores";

/// Whether `id` may name a claim: what [`ArtifactStore::put_claim`] accepts (letters,
/// digits, `-` and `_`, at most 64), so that it is one safe file or object name.
pub(crate) fn valid_claim_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The error for a claim id that [`valid_claim_id`] refuses.
pub(crate) fn invalid_claim_id(id: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("`{id}` is not a store id (letters, digits, `-` and `_`, at most 64)"),
    )
}

/// The location of a blob backend as a whole (the folder or prefix above its fan-out
/// folders), for I/O errors that concern no single blob; `fallback` when it has none.
pub(crate) fn backend_location(store: &dyn ArtifactStore, fallback: &Path) -> PathBuf {
    store
        .location(Hash128(0))
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.to_path_buf())
}

/// Hashes blob `hash` of `store` with `kind`, reading all of its stored bytes
/// ([`ArtifactStore::open_uncached`]): `(actual hash, size)`, or `None` when the blob is
/// missing. A blob is intact when the actual hash equals `hash`.
///
/// # Errors
///
/// When the blob exists but cannot be read to the end.
pub fn hash_blob(
    store: &dyn ArtifactStore,
    hash: Hash128,
    kind: ContentHash,
) -> io::Result<Option<(Hash128, u64)>> {
    let Some(reader) = store.open_uncached(hash)? else {
        return Ok(None);
    };
    match HashingReader::new(reader, kind).finish() {
        Ok(h) => Ok(Some(h)),
        // Removed between `open` and the end of the read (garbage collection).
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
