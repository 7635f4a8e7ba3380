//! Which metadata stores keep blobs in an artifact location.
//!
//! Blobs are content-addressed, so two stores (two SQLite folders, two PostgreSQL
//! databases) may well be pointed at one S3 prefix or one folder: their runs share bytes
//! safely. Garbage collection may not: a store sees only its own rows, and would delete the
//! blobs the other one references. So each metadata store has an id (random, kept in its
//! `settings` table) and writes a claim under the location before its first blob
//! ([`ArtifactStore::put_claim`]: `<location>/.pipeline-stores/<id>.json`, naming the
//! metadata). gc deletes blobs only where every claim is its own; it checks before it
//! starts and again after listing the blobs, so a store that claims the location while gc
//! runs (its blobs are written after its claim, hence after the listing) loses nothing.
//!
//! A store created by an earlier version writes its claim at its next blob write or gc;
//! until both stores sharing a location have done so, neither can see the other.

use std::io;
use std::path::PathBuf;

use serde_json::json;

use super::artifacts::{ArtifactStore, CLAIMS_DIR};
use crate::error::{Error, Result};

/// A new random store id: 32 hex digits.
pub(crate) fn new_store_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let local = 0u8;
    let seed = format!(
        "{}-{}-{}-{:?}-{:p}-{}",
        crate::time::now_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::thread::current().id(),
        &local,
        super::liveness::host_name(),
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hash = xxhash_rust::xxh3::xxh3_128_with_seed(seed.as_bytes(), nanos as u64);
    format!("{hash:032x}")
}

/// Writes the claim of store `id` (whose metadata `describe` names, without credentials)
/// on `blobs`. A backend that records no claims is fine: it cannot be checked either.
pub(crate) fn write_claim(blobs: &dyn ArtifactStore, id: &str, describe: &str) -> io::Result<()> {
    let doc = json!({
        "store_id": id,
        "metadata": describe,
        "claimed_at": crate::time::utc_timestamp(crate::time::now_micros()),
        "note": "A pipeline store keeps blobs here. Garbage collection deletes nothing \
                 while claims of other stores are beside its own.",
    });
    let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    match blobs.put_claim(id, &text) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        other => other,
    }
}

/// Fails with [`Error::SharedArtifacts`] when a store other than `own` (this store's id,
/// `None` when it has none yet) has claimed `blobs`' location. `describe` names this
/// store's metadata, `location` the artifact location, in the error.
pub(crate) fn check_sole_user(
    blobs: &dyn ArtifactStore,
    own: Option<&str>,
    describe: &str,
    location: PathBuf,
) -> Result<()> {
    let claims = match blobs.claims() {
        Ok(claims) => claims,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(()),
        Err(e) => return Err(Error::io(location, e)),
    };
    let mut others: Vec<String> = claims
        .into_iter()
        .filter(|(id, _)| Some(id.as_str()) != own)
        .map(|(id, doc)| {
            let metadata = serde_json::from_slice::<serde_json::Value>(&doc)
                .ok()
                .and_then(|d| d["metadata"].as_str().map(str::to_string));
            match metadata {
                Some(m) => format!("store {id} at {m}"),
                None => format!("store {id}"),
            }
        })
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    others.sort();
    Err(Error::SharedArtifacts {
        claims: location.join(CLAIMS_DIR),
        location,
        this: match own {
            Some(id) => format!("store {id} at {describe}"),
            None => format!("the store at {describe}, which has no id yet"),
        },
        others,
    })
}
