//! Opening a store: the header checks that refuse what is not ours before anything is
//! changed, and the read-only open that also works on read-only media.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::sqlite::map_db_error;
use super::{schema, StoreOptions};
use crate::error::{Error, ReadOnlyCause, Result};

/// `(user_version, application_id, number of tables)` of a database.
pub(super) type Header = (i64, i64, i64);

/// What SQLite's file format puts first in every database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Refuses, from the first 100 bytes of `metadata.sqlite` read as a plain file, what is
/// certainly not a store of ours: a schema version below zero or another application's id.
///
/// No SQLite connection is involved, so a refused file and its directory stay byte for
/// byte as they were (a connection may create `-wal` and `-shm` files beside a database in
/// WAL mode). The main file's header can lag our own writes (a change still in the WAL),
/// but never shows a value that we did not write, so refusing on it is safe; whatever
/// passes is checked again through SQLite by [`check_header`].
pub(super) fn check_file_header(root: &Path, db_path: &Path) -> Result<()> {
    if OpenDb::is_open(db_path) {
        // A store this process has open passed this check, and SQLite holds POSIX locks
        // on the file: closing a descriptor of it here would drop them all (see `OpenDb`).
        return Ok(());
    }
    let mut header = [0u8; 100];
    let mut read = 0;
    let Ok(mut file) = File::open(db_path) else {
        return Ok(()); // SQLite names the problem when it opens the file
    };
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        // Empty (a store being created) or not SQLite at all: SQLite tells which.
        return Ok(());
    }
    let int_at = |at: usize| {
        i64::from(i32::from_be_bytes([
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ]))
    };
    // Offsets from https://www.sqlite.org/fileformat.html#the_database_header
    let (version, app_id) = (int_at(60), int_at(68));
    if version < 0 {
        return Err(never_written(root, version));
    }
    if app_id != 0 && app_id != schema::APPLICATION_ID {
        return Err(foreign(root));
    }
    Ok(())
}

/// A database file this process has SQLite connections to, counted while a handle lives.
///
/// POSIX record locks belong to the process, and closing *any* descriptor of a file drops
/// all of them. SQLite guards its own descriptors against that, but a plain `File::open`
/// and close of `metadata.sqlite` (the header check above) while another handle of this
/// process has it open dropped that handle's locks: another process closing its own
/// connection then believed itself the last one, checkpointed and removed the WAL under
/// the live handle, whose later commits other processes never saw (worker processes
/// lost their claims). So the raw check is skipped for a file open here.
pub(super) struct OpenDb(Option<(u64, u64)>);

fn open_dbs() -> std::sync::MutexGuard<'static, std::collections::HashMap<(u64, u64), usize>> {
    static OPEN: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<(u64, u64), usize>>,
    > = std::sync::OnceLock::new();
    OPEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The file's device and inode.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl OpenDb {
    /// Counts `db_path` as open in this process until the returned value is dropped.
    pub(super) fn register(db_path: &Path) -> OpenDb {
        let id = file_id(db_path);
        if let Some(id) = id {
            *open_dbs().entry(id).or_default() += 1;
        }
        OpenDb(id)
    }

    fn is_open(db_path: &Path) -> bool {
        file_id(db_path).is_some_and(|id| open_dbs().get(&id).is_some_and(|n| *n > 0))
    }
}

impl Drop for OpenDb {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            let mut open = open_dbs();
            if let Some(n) = open.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&id);
                }
            }
        }
    }
}

/// Refuses a header (read through SQLite, so it includes the WAL) that this library did not
/// write: a negative schema version, another application's database, a newer store.
pub(super) fn check_header(root: &Path, version: i64, app_id: i64, tables: i64) -> Result<()> {
    if version < 0 {
        return Err(never_written(root, version));
    }
    let ours = app_id == schema::APPLICATION_ID;
    // Version 0 is an empty database: ours (just created) unless it holds tables or
    // carries another application's id.
    if version > 0 && !ours || version == 0 && (tables > 0 || app_id != 0 && !ours) {
        return Err(foreign(root));
    }
    if version > schema::current_version() {
        return Err(Error::StoreTooNew {
            path: root.to_path_buf(),
            found: version,
            supported: schema::current_version(),
        });
    }
    Ok(())
}

fn never_written(root: &Path, version: i64) -> Error {
    Error::NotAStore {
        path: root.to_path_buf(),
        reason: format!(
            "metadata.sqlite has schema version {version}, which this library never writes \
             (its versions are 1 to {})",
            schema::current_version()
        ),
    }
}

fn foreign(root: &Path) -> Error {
    Error::NotAStore {
        path: root.to_path_buf(),
        reason: "metadata.sqlite is a SQLite database of another application".into(),
    }
}

/// Reads the header through `conn`, naming a file that is not SQLite plainly.
pub(super) fn read_header(root: &Path, conn: &Connection) -> Result<Header> {
    header_of(conn).or_else(|e| read_header_error(root, e))
}

fn header_of(conn: &Connection) -> rusqlite::Result<Header> {
    // One statement reads one snapshot: another process creating the store at this moment
    // is seen either before its first migration or after it, never halfway.
    conn.query_row(
        "SELECT (SELECT user_version FROM pragma_user_version), \
                (SELECT application_id FROM pragma_application_id), \
                (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Whether this process may write the store: create files in its directory and blob
/// folder, and write its database.
pub(super) fn writable_store(root: &Path, db_path: &Path, artifacts: &Path) -> bool {
    writable(root)
        && (!db_path.exists() || writable(db_path))
        && (!artifacts.exists() || writable(artifacts))
}

/// Asks the kernel (`access(2)`), which accounts for read-only mounts, immutable files and
/// permissions alike. Permission bits alone would not do: they do not stop root.
#[cfg(unix)]
fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(not(unix))]
fn writable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
}

/// Opens `metadata.sqlite` for reading only and reads its header; see
/// [`Store::open_with`](super::Store::open_with) for when it falls back to `immutable=1`.
pub(super) fn read_only(
    root: &Path,
    db_path: &Path,
    options: &StoreOptions,
    cause: ReadOnlyCause,
) -> Result<(Connection, Header)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = |path: &Path, flags: OpenFlags| {
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(options.busy_timeout)?;
        let header = header_of(&conn)?;
        Ok::<_, rusqlite::Error>((conn, header))
    };
    let plain = match open(db_path, flags) {
        Ok(opened) => return Ok(opened),
        Err(e) => e,
    };
    let shm = sibling(db_path, "-shm");
    // When SQLite cannot create the `-shm` index of a WAL database, it says CANTOPEN on a
    // read-only file system and READONLY_DIRECTORY without write permission.
    let index_missing = matches!(
        &plain,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    ) && !shm.exists();
    if cause != ReadOnlyCause::Media || !index_missing {
        return read_header_error(root, plain);
    }
    let wal = sibling(db_path, "-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Error::ReadOnly {
            path: root.to_path_buf(),
            action: "read the changes in metadata.sqlite-wal: SQLite reads them only through \
                     a metadata.sqlite-shm file, which cannot be created here"
                .into(),
            cause,
        });
    }
    let uri = immutable_uri(db_path).map_err(|e| Error::io(db_path, e))?;
    match open(&uri, flags | OpenFlags::SQLITE_OPEN_URI) {
        Ok(opened) => Ok(opened),
        Err(e) => read_header_error(root, e),
    }
}

fn read_header_error<T>(root: &Path, e: rusqlite::Error) -> Result<T> {
    Err(match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            Error::NotAStore {
                path: root.to_path_buf(),
                reason: "metadata.sqlite is not a SQLite database".into(),
            }
        }
        e => map_db_error(root, e),
    })
}

/// `metadata.sqlite` + `suffix`.
fn sibling(db_path: &Path, suffix: &str) -> PathBuf {
    let mut name = db_path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// `file:/absolute/path?immutable=1`, percent-encoding every byte of the path that a URI
/// path cannot hold as is (`?`, `#`, `%`, spaces, non-ASCII).
fn immutable_uri(db_path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(db_path)?;
    let mut uri = String::from("file:");
    let bytes = absolute.as_os_str().as_encoded_bytes();
    if !bytes.starts_with(b"/") {
        uri.push('/'); // `C:\..` becomes `file:/C:/..`
    }
    for &b in bytes {
        match b {
            b'\\' if cfg!(windows) => uri.push('/'),
            b'/' | b'-' | b'.' | b'_' | b'~' | b':' => uri.push(char::from(b)),
            b if b.is_ascii_alphanumeric() => uri.push(char::from(b)),
            b => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    Ok(PathBuf::from(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_uris_escape_what_a_uri_path_cannot_hold() {
        let uri = immutable_uri(Path::new("/data/my store?#%/metadata.sqlite")).unwrap();
        assert_eq!(
            uri.to_str().unwrap(),
            "file:/data/my%20store%3F%23%25/metadata.sqlite?immutable=1"
        );
    }
}
