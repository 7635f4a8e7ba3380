//! Facts of the local file system that both the store and the cachers need: where the
//! default store lives, and a file's modification time as a number. It sits below both, so
//! that cachers know no store.

use std::fs;
use std::path::PathBuf;

/// Environment variable naming the store directory.
pub const PIPELINE_HOME: &str = "PIPELINE_HOME";

/// `$PIPELINE_HOME` if set and non-empty, else `./.pipeline`.
pub fn default_path() -> PathBuf {
    match std::env::var_os(PIPELINE_HOME) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(".pipeline"),
    }
}

/// Modification time in nanoseconds since the epoch, 0 when unknown.
pub(crate) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
