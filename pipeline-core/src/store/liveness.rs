//! Which processes using a store are alive, proven by OS file locks (as cargo's
//! `util/flock.rs` does), never by probing process ids.
//!
//! Every writable [`Store`](super::Store) handle holds an exclusive lock on a file of its
//! own, `artifacts/tmp/<owner>-owner.lock`, for as long as the handle lives. `<owner>` is an
//! *owner token* that is unique to the handle: it names the host, the process id and a
//! random nonce. Everything the handle leaves in the store while it works carries that token:
//! its runs and its leases (`owner` columns) and its temporary blob files (file name
//! prefix `<owner>-`).
//!
//! The kernel releases a lock when its process ends, however it ends (`kill -9` included).
//! So a lock that another process *can* take proves that its holder is gone, and what the
//! holder left can be cleaned up at once. A reused process id cannot fool this: a new
//! process gets a new token and a new file.
//!
//! What cannot be proven stays alive ([`Liveness::Unknown`]): a token of another host (hosts
//! share no file locks; a lease of such a holder still expires by heartbeat), a handle whose
//! file system does not support locks, a lock file that cannot be opened.
//!
//! The lock file appears under its final name only once it is locked (it is locked under a
//! hidden name and then renamed), so an unlocked file under that name is never a holder that
//! has not locked yet.

use std::collections::HashSet;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The suffix of a lock file after its owner token.
const LOCK_SUFFIX: &str = "-owner.lock";

/// Tokens held by open handles of this process. They are alive without a look at their
/// files: opening and closing our own lock file could release it where locks are
/// per-process (`fcntl`, as NFS emulates `flock`).
fn live_tokens() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

fn lock_live() -> std::sync::MutexGuard<'static, HashSet<String>> {
    live_tokens().lock().unwrap_or_else(|p| p.into_inner())
}

/// This machine's name, as recorded with runs and leases.
pub(crate) fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| gethostname::gethostname().to_string_lossy().into_owned())
}

/// Eight hex digits naming this host inside owner tokens (file names cannot hold every
/// host name).
fn host_tag(host: &str) -> String {
    format!("{:08x}", xxhash_rust::xxh3::xxh3_64(host.as_bytes()) as u32)
}

/// Whether the process behind an owner token is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Its lock is held: it is running.
    Alive,
    /// Its lock is free or gone: it has ended, and what it left may be cleaned up.
    Dead,
    /// It cannot be told here (another host, no lock support, an unreadable lock file).
    Unknown,
}

/// The lock a writable store handle holds while it lives; released (and its file removed)
/// on drop.
#[derive(Debug)]
pub(crate) struct OwnerLock {
    token: String,
    /// The locked file; `None` where the file system supports no locks.
    file: Option<(File, PathBuf)>,
}

impl OwnerLock {
    /// Takes a new owner token and locks its file in `tmp_dir` (created if missing).
    ///
    /// Where the file system supports no locks the token says so, and other processes treat
    /// this handle's runs and leases as [`Liveness::Unknown`] (leases then expire by
    /// heartbeat only).
    pub(crate) fn acquire(tmp_dir: &Path) -> io::Result<OwnerLock> {
        fs::create_dir_all(tmp_dir)?;
        let id = handle_id();
        let locked_token = format!("L{id}");
        let path = tmp_dir.join(format!("{locked_token}{LOCK_SUFFIX}"));
        // Locked under a name no scan looks at, then renamed into view.
        let hidden = tmp_dir.join(format!(".{locked_token}{LOCK_SUFFIX}"));
        let file = File::create(&hidden)?;
        let owner = match file.try_lock() {
            Ok(()) => {
                fs::rename(&hidden, &path)?;
                OwnerLock {
                    token: locked_token,
                    file: Some((file, path)),
                }
            }
            Err(TryLockError::WouldBlock) => {
                let _ = fs::remove_file(&hidden);
                return Err(io::Error::other(
                    "a freshly created lock file is locked by another process",
                ));
            }
            Err(TryLockError::Error(_)) => {
                drop(file);
                let _ = fs::remove_file(&hidden);
                OwnerLock {
                    token: format!("U{id}"),
                    file: None,
                }
            }
        };
        lock_live().insert(owner.token.clone());
        Ok(owner)
    }

    /// The owner token recorded with this handle's runs, leases and temporary files.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        lock_live().remove(&self.token);
        if let Some((file, path)) = self.file.take() {
            // Remove while still locked, so no one sees the file unlocked and in place.
            let _ = fs::remove_file(&path);
            drop(file);
        }
    }
}

/// `<host tag>.<pid>.<nonce>`: names one store handle of this process, unlike any other
/// handle of any process (the body of an owner token).
pub(crate) fn handle_id() -> String {
    format!(
        "{}.{}.{:016x}",
        host_tag(host_name()),
        std::process::id(),
        new_nonce()
    )
}

/// A nonce that differs between handles and processes (a reused pid gets a new one).
fn new_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let stack_probe = 0u8;
    let seed = format!(
        "{}-{}-{}-{:?}-{:p}-{:?}",
        crate::time::now_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::thread::current().id(),
        &stack_probe,
        std::time::Instant::now(),
    );
    xxhash_rust::xxh3::xxh3_64(seed.as_bytes())
}

/// What a file name in `artifacts/tmp/` says about its owner.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TempOwner<'a> {
    /// Written by the owner with this token.
    Token(&'a str),
    /// Written by a version that named temporary files by process id only. Such a process
    /// cannot be using this store any more: its schema was migrated past its version.
    Legacy,
    /// Not a file of ours (a hidden lock file being created, or a stranger's file).
    Foreign,
}

/// The owner of a file in `artifacts/tmp/`, from its name (`<token>-...`).
pub(crate) fn temp_owner(file_name: &str) -> TempOwner<'_> {
    let prefix = file_name.split('-').next().unwrap_or("");
    if is_token(prefix) {
        TempOwner::Token(prefix)
    } else if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) {
        TempOwner::Legacy
    } else {
        TempOwner::Foreign
    }
}

/// `L` or `U`, then `<host tag>.<pid>.<nonce>`.
fn is_token(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('L').or_else(|| s.strip_prefix('U')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    matches!(parts.as_slice(), [host, pid, nonce]
        if host.len() == 8 && host.bytes().all(|b| b.is_ascii_hexdigit())
            && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            && nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the owner of `token` is alive, checked through its lock file in `tmp_dir`.
///
/// `host` is the host recorded beside the token where there is one (runs and leases).
/// With `clean_up`, a lock file proven dead is removed.
pub(crate) fn liveness(
    tmp_dir: &Path,
    token: &str,
    host: Option<&str>,
    clean_up: bool,
) -> Liveness {
    if !is_token(token) {
        // Recorded by an earlier version, which no longer writes to this store.
        return Liveness::Dead;
    }
    if lock_live().contains(token) {
        return Liveness::Alive;
    }
    if token.starts_with('U') {
        return Liveness::Unknown;
    }
    let ours = host_tag(host_name());
    if host.is_some_and(|h| h != host_name()) || token.get(1..9) != Some(ours.as_str()) {
        return Liveness::Unknown;
    }
    let path = tmp_dir.join(format!("{token}{LOCK_SUFFIX}"));
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::Dead,
        Err(_) => return Liveness::Unknown,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            if clean_up {
                // Still locked by us: no one else is using this file any more.
                let _ = fs::remove_file(&path);
            }
            Liveness::Dead
        }
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(_)) => Liveness::Unknown,
    }
}

/// A token as another process on this host would take.
#[cfg(test)]
pub(crate) fn token_of_another_process(pid: u32) -> String {
    format!("L{}.{pid}.{:016x}", host_tag(host_name()), new_nonce())
}

/// Locks `token`'s file in `tmp_dir` through a file of its own, as the process owning
/// `token` would; the lock lasts as long as the returned file.
#[cfg(test)]
pub(crate) fn hold_as_another_process(tmp_dir: &Path, token: &str) -> File {
    fs::create_dir_all(tmp_dir).unwrap();
    let file = File::create(tmp_dir.join(format!("{token}{LOCK_SUFFIX}"))).unwrap();
    file.try_lock().unwrap();
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_released_one_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let owner = OwnerLock::acquire(dir.path()).unwrap();
        let token = owner.token().to_string();
        assert!(token.starts_with('L'), "{token}");
        assert_eq!(
            temp_owner(&format!("{token}-3.tmp")),
            TempOwner::Token(&token)
        );
        assert_eq!(
            liveness(dir.path(), &token, Some(host_name()), true),
            Liveness::Alive
        );
        // Seen from outside this process's registry, the file's lock says the same.
        lock_live().remove(&token);
        assert_eq!(
            liveness(dir.path(), &token, None, true),
            Liveness::Alive,
            "a lock held through another open file is alive"
        );
        lock_live().insert(token.clone());
        drop(owner);
        assert_eq!(
            liveness(dir.path(), &token, None, true),
            Liveness::Dead,
            "the file is gone with its handle"
        );
    }

    #[test]
    fn an_unlocked_lock_file_is_dead_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("L{}.42.0123456789abcdef", host_tag(host_name()));
        let path = dir.path().join(format!("{token}{LOCK_SUFFIX}"));
        fs::write(&path, b"").unwrap();
        assert_eq!(liveness(dir.path(), &token, None, false), Liveness::Dead);
        assert!(path.exists(), "kept without clean_up");
        assert_eq!(liveness(dir.path(), &token, None, true), Liveness::Dead);
        assert!(!path.exists(), "removed with clean_up");
    }

    #[test]
    fn what_cannot_be_proven_is_not_dead() {
        let dir = tempfile::tempdir().unwrap();
        let other_host = format!("L{}.42.0123456789abcdef", host_tag("elsewhere"));
        assert_eq!(
            liveness(dir.path(), &other_host, None, true),
            Liveness::Unknown
        );
        let here = format!("L{}.42.0123456789abcdef", host_tag(host_name()));
        assert_eq!(
            liveness(dir.path(), &here, Some("elsewhere"), true),
            Liveness::Unknown,
            "recorded on another host"
        );
        let unlockable = format!("U{}.42.0123456789abcdef", host_tag(host_name()));
        assert_eq!(
            liveness(dir.path(), &unlockable, None, true),
            Liveness::Unknown
        );
    }

    #[test]
    fn temp_file_names_name_their_owner() {
        let token = "L0123abcd.77.0123456789abcdef";
        assert_eq!(
            temp_owner(&format!("{token}-1.tmp")),
            TempOwner::Token(token)
        );
        assert_eq!(temp_owner("999-1700000000-0.tmp"), TempOwner::Legacy);
        assert_eq!(
            temp_owner(&format!(".{token}-owner.lock")),
            TempOwner::Foreign
        );
        assert_eq!(temp_owner("notes.txt"), TempOwner::Foreign);
        assert_eq!(
            liveness(Path::new("."), "12345", None, false),
            Liveness::Dead
        );
    }
}
