//! The contract every [`ArtifactStore`] keeps, as tests any implementation can run:
//! [`artifact_store`] takes a factory of fresh, empty backends and panics at the first
//! broken promise, naming it.
//!
//! ```
//! use std::sync::Arc;
//! use pipeline_core::store::artifacts::{contract, LocalArtifacts};
//!
//! contract::artifact_store(|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     contract::Backend {
//!         store: Arc::new(LocalArtifacts::new(dir.path().join("artifacts"), "test")),
//!         tamper: None,
//!         guard: Some(Box::new(dir)),
//!     }
//! });
//! ```

use std::any::Any;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::{hash_blob, ArtifactStore, BlobPut};
use crate::key::Hash128;
use crate::store::blob::Hasher;
use crate::store::ContentHash;

/// Replaces the stored bytes of a blob behind the backend's back (to show that damage is
/// detected on read). Returns an error when it cannot.
pub type Tamper = Box<dyn Fn(Hash128, &[u8]) -> io::Result<()> + Send + Sync>;

/// A fresh, empty backend for one test of the suite.
pub struct Backend {
    /// The backend under test.
    pub store: Arc<dyn ArtifactStore>,
    /// Overwrites a blob's bytes directly (a file write, a raw `PUT`), if the test can;
    /// `None` skips the damage test.
    pub tamper: Option<Tamper>,
    /// Whatever must live as long as the backend (a temporary directory, a bucket that is
    /// emptied on drop); dropped after the test.
    pub guard: Option<Box<dyn Any>>,
}

/// One test of the suite.
type Test = fn(&Backend);

/// Runs every test of the artifact-bytes contract, each on a backend fresh from `factory`.
///
/// Tests: a put/get round trip (with both content hashes), a put of the same bytes twice,
/// concurrent puts of one blob, an abandoned put leaving nothing visible, the hold hook of
/// `commit_with` (before the blob is visible; its error aborts), a missing blob's
/// `stat`/`open`/`delete`, delete, list, a stat that does not move while the bytes do not
/// (and a `touch` that leaves it alone), sidecars, a large value written in uneven pieces,
/// damage found by hashing on read and healed by [`ArtifactStore::put_replacing`] (when
/// the backend provides [`Backend::tamper`]), and the claims of stores on the location.
///
/// # Panics
///
/// When the backend breaks the contract or fails; the message names the test and the
/// promise.
pub fn artifact_store<F: Fn() -> Backend>(factory: F) {
    let tests: &[(&str, Test)] = &[
        ("round_trip", round_trip),
        ("round_trip_blake3", round_trip_blake3),
        ("same_bytes_twice", same_bytes_twice),
        ("concurrent_puts_of_one_blob", concurrent_puts_of_one_blob),
        ("abandoned_put_leaves_nothing", abandoned_put_leaves_nothing),
        ("hold_before_place", hold_before_place),
        ("missing_blob", missing_blob),
        ("delete", delete),
        ("list", list),
        ("stat_is_stable", stat_is_stable),
        ("sidecars", sidecars),
        ("large_value_in_pieces", large_value_in_pieces),
        ("damage_is_detected_on_read", damage_is_detected_on_read),
        ("a_replacing_put_heals_damage", a_replacing_put_heals_damage),
        ("claims", claims),
    ];
    for (name, test) in tests {
        let backend = factory();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&backend)));
        drop(backend);
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("artifact store contract, test `{name}`: {message}");
        }
    }
}

/// `commit_with` names the hash before the blob is visible under it, and a refusal there
/// aborts the put: the store's leases hold a blob at that moment (`store/guard.rs`).
fn hold_before_place(b: &Backend) {
    let store = &*b.store;
    let bytes = bytes_of(77, 4096);
    let hash = expected(&bytes, ContentHash::Xxh3);
    let mut w = store.put(ContentHash::Xxh3).expect("put starts");
    w.write_all(&bytes).expect("bytes are written");
    let mut seen = None;
    let refused = w.commit_with(&mut |h| {
        seen = Some((h, store.stat(h).expect("stat succeeds").is_some()));
        Err(io::Error::other("refused"))
    });
    assert_eq!(
        seen,
        Some((hash, false)),
        "called with the hash, before the blob is visible"
    );
    assert!(refused.is_err(), "the hook's error is returned");
    assert!(read(store, hash).is_none(), "a refused put leaves nothing");
    let mut w = store.put(ContentHash::Xxh3).expect("put starts");
    w.write_all(&bytes).expect("bytes are written");
    let mut called = false;
    let done = w
        .commit_with(&mut |_| {
            called = true;
            Ok(())
        })
        .expect("put commits");
    assert!(called && done == (hash, 4096));
    assert_eq!(read(store, hash), Some(bytes));
}

/// The hash the store must name `bytes` by.
fn expected(bytes: &[u8], kind: ContentHash) -> Hash128 {
    let mut h = Hasher::new(kind);
    h.update(bytes);
    h.finish()
}

/// Deterministic bytes that differ with `seed` (no two seeds give the same blob).
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

fn put(store: &dyn ArtifactStore, bytes: &[u8], kind: ContentHash) -> (Hash128, u64) {
    let mut w = store.put(kind).expect("put starts");
    w.write_all(bytes).expect("bytes are written");
    w.commit().expect("put commits")
}

fn read(store: &dyn ArtifactStore, hash: Hash128) -> Option<Vec<u8>> {
    store.open(hash).expect("open succeeds").map(|mut r| {
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("the blob reads to its end");
        out
    })
}

fn hashes(store: &dyn ArtifactStore) -> HashSet<Hash128> {
    let listed = store.list().expect("list succeeds");
    let set: HashSet<_> = listed.iter().map(|b| b.hash).collect();
    assert_eq!(
        set.len(),
        listed.len(),
        "list names each blob once: {listed:?}"
    );
    set
}

fn round_trip_with(b: &Backend, kind: ContentHash) {
    let store = b.store.as_ref();
    let bytes = bytes_of(1, 10_000);
    let (hash, size) = put(store, &bytes, kind);
    assert_eq!(
        hash,
        expected(&bytes, kind),
        "commit returns the hash of the bytes"
    );
    assert_eq!(size, bytes.len() as u64, "commit returns the byte count");
    assert_eq!(
        read(store, hash).as_deref(),
        Some(&bytes[..]),
        "open gives the bytes back"
    );
    let stat = store.stat(hash).unwrap().expect("stat finds the blob");
    assert_eq!(stat.size, bytes.len() as u64, "stat gives the size");
    let (empty, n) = put(store, b"", kind);
    assert_eq!(
        (empty, n),
        (expected(b"", kind), 0),
        "an empty blob is a blob"
    );
    assert_eq!(read(store, empty).as_deref(), Some(&[][..]));
}

fn round_trip(b: &Backend) {
    round_trip_with(b, ContentHash::Xxh3);
}

fn round_trip_blake3(b: &Backend) {
    round_trip_with(b, ContentHash::Blake3);
}

fn same_bytes_twice(b: &Backend) {
    let store = b.store.as_ref();
    let bytes = bytes_of(2, 5000);
    let first = put(store, &bytes, ContentHash::Xxh3);
    let second = put(store, &bytes, ContentHash::Xxh3);
    assert_eq!(first, second, "the same bytes get the same name");
    assert_eq!(
        hashes(store),
        HashSet::from([first.0]),
        "one blob, listed once"
    );
    assert_eq!(read(store, first.0).as_deref(), Some(&bytes[..]));
}

fn concurrent_puts_of_one_blob(b: &Backend) {
    let bytes = Arc::new(bytes_of(3, 3 << 20));
    let want = expected(&bytes, ContentHash::Xxh3);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&b.store);
            let bytes = Arc::clone(&bytes);
            std::thread::spawn(move || {
                let mut w = store.put(ContentHash::Xxh3)?;
                for piece in bytes.chunks(100_003) {
                    w.write_all(piece)?;
                }
                w.commit()
            })
        })
        .collect();
    for t in threads {
        let (hash, size) = t
            .join()
            .expect("no put panics")
            .expect("every concurrent put commits");
        assert_eq!((hash, size), (want, bytes.len() as u64));
    }
    let store = b.store.as_ref();
    assert_eq!(
        hashes(store),
        HashSet::from([want]),
        "one blob after concurrent puts"
    );
    let back = read(store, want).expect("the blob is there");
    assert!(back == *bytes, "the blob holds the bytes, whole");
}

fn abandoned_put_leaves_nothing(b: &Backend) {
    let store = b.store.as_ref();
    // Larger than a part of an object store's multipart upload, so that one is started.
    let bytes = bytes_of(4, 12 << 20);
    let whole = expected(&bytes, ContentHash::Xxh3);
    let half = expected(&bytes[..6 << 20], ContentHash::Xxh3);
    let mut w = store.put(ContentHash::Xxh3).unwrap();
    w.write_all(&bytes[..6 << 20]).unwrap();
    drop(w); // a cacher failed halfway
    let mut w = store.put(ContentHash::Xxh3).unwrap();
    w.write_all(&bytes).unwrap();
    w.flush().unwrap();
    drop(w); // every byte written, but never committed
    for hash in [whole, half] {
        assert_eq!(
            store.stat(hash).unwrap(),
            None,
            "an abandoned put is not visible"
        );
        assert!(
            read(store, hash).is_none(),
            "an abandoned put cannot be opened"
        );
    }
    assert!(hashes(store).is_empty(), "an abandoned put is not listed");
    // The backend still works after aborted puts.
    let (hash, _) = put(store, &bytes, ContentHash::Xxh3);
    assert_eq!(hash, whole);
}

fn missing_blob(b: &Backend) {
    let store = b.store.as_ref();
    let hash = expected(b"never stored", ContentHash::Xxh3);
    assert_eq!(
        store.stat(hash).unwrap(),
        None,
        "stat of a missing blob is None"
    );
    assert!(
        read(store, hash).is_none(),
        "open of a missing blob is None"
    );
    assert!(
        !store.delete(hash).unwrap(),
        "deleting a missing blob says so"
    );
    assert_eq!(store.get_sidecar(hash).unwrap(), None);
    assert_eq!(
        hash_blob(store, hash, ContentHash::Xxh3).unwrap(),
        None,
        "hashing a missing blob finds nothing"
    );
}

fn delete(b: &Backend) {
    let store = b.store.as_ref();
    let keep = put(store, &bytes_of(5, 1000), ContentHash::Xxh3).0;
    let gone = put(store, &bytes_of(6, 1000), ContentHash::Xxh3).0;
    store.put_sidecar(gone, b"{}").unwrap();
    assert!(
        store.delete(gone).unwrap(),
        "delete reports the blob it removed"
    );
    assert_eq!(store.stat(gone).unwrap(), None, "a deleted blob is gone");
    assert!(read(store, gone).is_none());
    assert_eq!(
        store.get_sidecar(gone).unwrap(),
        None,
        "its sidecar goes with it"
    );
    assert!(
        !store.delete(gone).unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(hashes(store), HashSet::from([keep]), "other blobs stay");
    assert!(store.stat(keep).unwrap().is_some());
}

fn list(b: &Backend) {
    let store = b.store.as_ref();
    assert!(hashes(store).is_empty(), "a fresh backend lists nothing");
    let blobs: Vec<(Hash128, u64)> = (10..15)
        .map(|seed| {
            put(
                store,
                &bytes_of(seed, 100 * seed as usize),
                ContentHash::Xxh3,
            )
        })
        .collect();
    for (hash, _) in &blobs {
        store.put_sidecar(*hash, b"{}").unwrap();
    }
    let listed = store.list().unwrap();
    assert_eq!(
        listed.len(),
        blobs.len(),
        "every blob listed, sidecars not: {listed:?}"
    );
    for (hash, size) in blobs {
        let entry = listed
            .iter()
            .find(|l| l.hash == hash)
            .expect("each blob listed");
        assert_eq!(entry.stat.size, size, "list gives sizes");
        assert_eq!(
            Some(entry.stat),
            store.stat(hash).unwrap(),
            "list agrees with stat"
        );
    }
}

fn stat_is_stable(b: &Backend) {
    let store = b.store.as_ref();
    let bytes = bytes_of(20, 4096);
    let (hash, _) = put(store, &bytes, ContentHash::Xxh3);
    let first = store.stat(hash).unwrap().unwrap();
    assert_ne!(
        first.modified_ns, 0,
        "stat tells when the bytes were written"
    );
    assert!(
        first.last_used.is_some(),
        "stat tells when the blob was last used"
    );
    assert!(read(store, hash).is_some());
    store.touch(hash).expect("touch succeeds");
    put(store, &bytes, ContentHash::Xxh3); // an identical put (a repaired or raced write)
    let later = store.stat(hash).unwrap().unwrap();
    assert_eq!(later.size, first.size);
    // What a cache hit compares: a read or a touch must not look like new bytes. (An
    // identical put may replace the blob, and then it may.)
    let after_read = {
        assert!(read(store, hash).is_some());
        store.touch(hash).unwrap();
        store.stat(hash).unwrap().unwrap()
    };
    assert_eq!(
        after_read.modified_ns, later.modified_ns,
        "reading or touching a blob leaves its modified time alone"
    );
    assert!(
        after_read.last_used >= first.last_used,
        "last use does not go back"
    );
}

fn sidecars(b: &Backend) {
    let store = b.store.as_ref();
    let (hash, _) = put(store, &bytes_of(30, 100), ContentHash::Xxh3);
    assert_eq!(
        store.get_sidecar(hash).unwrap(),
        None,
        "no sidecar until one is put"
    );
    store.put_sidecar(hash, br#"{"a":1}"#).unwrap();
    store.put_sidecar(hash, br#"{"a":2}"#).unwrap();
    assert_eq!(
        store.get_sidecar(hash).unwrap().as_deref(),
        Some(&br#"{"a":2}"#[..]),
        "the last sidecar put is the one read"
    );
    let location = store.location(hash);
    assert!(
        location.to_string_lossy().ends_with(&hash.to_hex()),
        "a blob's location ends with its name: {}",
        location.display()
    );
}

fn large_value_in_pieces(b: &Backend) {
    let store = b.store.as_ref();
    // 24 MiB in uneven pieces: several multipart parts and chunk boundaries.
    let bytes = bytes_of(40, 24 << 20);
    let mut w: Box<dyn BlobPut> = store.put(ContentHash::Xxh3).unwrap();
    let mut rest = &bytes[..];
    let mut step = 1usize;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        w.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
        step = (step * 7 + 13) % 1_500_000 + 1;
    }
    let (hash, size) = w.commit().unwrap();
    assert_eq!(
        hash,
        expected(&bytes, ContentHash::Xxh3),
        "the hash of all the bytes"
    );
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        hash_blob(store, hash, ContentHash::Xxh3).unwrap(),
        Some((hash, size)),
        "the stored bytes hash to the blob's name"
    );
    let back = read(store, hash).unwrap();
    assert!(back == bytes, "the large value reads back whole");
}

fn damage_is_detected_on_read(b: &Backend) {
    let Some(tamper) = &b.tamper else {
        eprintln!("artifact store contract: no `tamper` given, damage test not run");
        return;
    };
    let store = b.store.as_ref();
    let bytes = bytes_of(50, 50_000);
    let (hash, _) = put(store, &bytes, ContentHash::Xxh3);
    let mut damaged = bytes.clone();
    damaged[1234] ^= 0xff;
    tamper(hash, &damaged).expect("the test can damage a blob");
    let (actual, size) = hash_blob(store, hash, ContentHash::Xxh3)
        .unwrap()
        .expect("a damaged blob is still there");
    assert_ne!(actual, hash, "damaged bytes do not hash to the blob's name");
    assert_eq!(
        actual,
        expected(&damaged, ContentHash::Xxh3),
        "open returns what is stored"
    );
    assert_eq!(size, bytes.len() as u64);
}

/// [`ArtifactStore::put_replacing`] puts the correct bytes in place of damaged ones of the
/// same name (a plain put may keep what is there).
fn a_replacing_put_heals_damage(b: &Backend) {
    let Some(tamper) = &b.tamper else {
        eprintln!("artifact store contract: no `tamper` given, healing test not run");
        return;
    };
    let store = b.store.as_ref();
    let bytes = bytes_of(51, 30_000);
    let (hash, _) = put(store, &bytes, ContentHash::Xxh3);
    let mut damaged = bytes.clone();
    damaged[77] ^= 0xff;
    tamper(hash, &damaged).expect("the test can damage a blob");
    assert_eq!(
        read(store, hash),
        Some(damaged),
        "the damage is what is stored"
    );
    let mut w = store.put_replacing(ContentHash::Xxh3).unwrap();
    w.write_all(&bytes).unwrap();
    assert_eq!(w.commit().unwrap(), (hash, bytes.len() as u64));
    assert_eq!(
        hash_blob(store, hash, ContentHash::Xxh3).unwrap(),
        Some((hash, bytes.len() as u64)),
        "the replacing put healed the stored bytes"
    );
    assert!(read(store, hash) == Some(bytes), "and loads read them");
}

/// Claims of stores on the location: one per id, replaced by the same id, not blobs. A
/// backend that keeps the defaults (no claims) passes, saying so.
fn claims(b: &Backend) {
    let store = b.store.as_ref();
    match store.claims() {
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("artifact store contract: the backend records no claims (gc cannot tell whether stores share it)");
            return;
        }
        other => assert!(other.unwrap().is_empty(), "a fresh backend has no claims"),
    }
    let (hash, _) = put(store, &bytes_of(52, 100), ContentHash::Xxh3);
    store.put_claim("store-a", b"{\"a\":1}").unwrap();
    store.put_claim("store_b", b"{}").unwrap();
    store.put_claim("store-a", b"{\"a\":2}").unwrap();
    let mut found = store.claims().unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("store-a".to_string(), b"{\"a\":2}".to_vec()),
            ("store_b".to_string(), b"{}".to_vec())
        ],
        "one claim per store, the latest"
    );
    assert_eq!(hashes(store), HashSet::from([hash]), "claims are not blobs");
    assert!(
        store.put_claim("../x", b"{}").is_err(),
        "a claim id is one plain name"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::artifacts::LocalArtifacts;

    fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("artifacts");
        let store = Arc::new(LocalArtifacts::new(&root, "contract"));
        let files = LocalArtifacts::new(&root, "tamper");
        Backend {
            store,
            tamper: Some(Box::new(move |hash, bytes| {
                std::fs::write(files.location(hash), bytes)
            })),
            guard: Some(Box::new(dir)),
        }
    }

    #[test]
    fn local_folder_keeps_the_contract() {
        artifact_store(local);
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn object_store_local_file_system_keeps_the_contract() {
        use crate::store::artifacts::ObjectArtifacts;
        artifact_store(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("objects");
            let store = ObjectArtifacts::local(&root).unwrap();
            let raw = store.clone();
            Backend {
                store: Arc::new(store),
                // Through object_store itself, as a raw `PUT` to S3 would.
                tamper: Some(Box::new(move |hash, bytes| raw.overwrite(hash, bytes))),
                guard: Some(Box::new(dir)),
            }
        });
    }

    #[test]
    #[should_panic(expected = "abandoned_put_leaves_nothing")]
    fn a_backend_that_leaks_abandoned_puts_fails_the_suite() {
        /// Commits on drop: the fault the suite must catch.
        #[derive(Debug)]
        struct Leaky(LocalArtifacts);
        struct LeakyPut(Option<Box<dyn BlobPut>>);
        impl Write for LeakyPut {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.as_mut().unwrap().write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0.as_mut().unwrap().flush()
            }
        }
        impl BlobPut for LeakyPut {
            fn commit_with(
                mut self: Box<Self>,
                before_place: &mut dyn FnMut(Hash128) -> io::Result<()>,
            ) -> io::Result<(Hash128, u64)> {
                self.0.take().unwrap().commit_with(before_place)
            }
        }
        impl Drop for LeakyPut {
            fn drop(&mut self) {
                if let Some(put) = self.0.take() {
                    let _ = put.commit();
                }
            }
        }
        impl ArtifactStore for Leaky {
            fn put(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
                Ok(Box::new(LeakyPut(Some(self.0.put(kind)?))))
            }
            fn open(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
                self.0.open(hash)
            }
            fn stat(&self, hash: Hash128) -> io::Result<Option<super::super::BlobStat>> {
                self.0.stat(hash)
            }
            fn delete(&self, hash: Hash128) -> io::Result<bool> {
                self.0.delete(hash)
            }
            fn list(&self) -> io::Result<Vec<super::super::ListedBlob>> {
                self.0.list()
            }
            fn put_sidecar(&self, hash: Hash128, doc: &[u8]) -> io::Result<()> {
                self.0.put_sidecar(hash, doc)
            }
            fn get_sidecar(&self, hash: Hash128) -> io::Result<Option<Vec<u8>>> {
                self.0.get_sidecar(hash)
            }
            fn location(&self, hash: Hash128) -> std::path::PathBuf {
                self.0.location(hash)
            }
        }
        artifact_store(|| {
            let dir = tempfile::tempdir().unwrap();
            Backend {
                store: Arc::new(Leaky(LocalArtifacts::new(dir.path(), "leaky"))),
                tamper: None,
                guard: Some(Box::new(dir)),
            }
        });
    }
}
