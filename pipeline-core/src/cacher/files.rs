//! References to files and directories written by other tools.
//!
//! A [`FileRef`] names a path; its serialized form carries a digest of the content
//! (every file's relative path and bytes), so a `FileRef` parameter makes a step's cache
//! key follow the files, and a `FileRef` output changes its content hash when they change.
//! Per-file hashes are remembered by path, size, mtime and inode, so an unchanged large
//! directory is not read again (in this process, and across processes through a small
//! cache file in the default store when it exists).
//!
//! Stored with the default cacher, a `FileRef` output is kept in place: the blob holds the
//! path and digest. Stored with [`Files`], the referenced files are copied into the blob.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

use super::Cacher;
use crate::error::BoxError;
use crate::key::Hash128;

/// A file or directory written by another tool, identified by its content.
///
/// ```no_run
/// use pipeline::prelude::*;
/// use pipeline::cacher::FileRef;
///
/// // The key of `count_lines` follows the bytes of `data/` (not just its name):
/// #[step]
/// fn count_lines(input: &FileRef) -> usize {
///     std::fs::read_to_string(input.path()).map(|s| s.lines().count()).unwrap_or(0)
/// }
///
/// #[pipeline]
/// fn lines() -> Artifact<usize> {
///     count_lines(FileRef::new("data/train.csv"))
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    path: PathBuf,
    digest: Option<Hash128>,
}

impl FileRef {
    /// References `path` (a file or a directory). Nothing is read until it is hashed.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileRef {
            path: path.into(),
            digest: None,
        }
    }

    /// The referenced path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest recorded when this reference was stored, if it came from the store.
    pub fn recorded_digest(&self) -> Option<String> {
        self.digest.map(Hash128::to_hex)
    }

    /// Hashes the referenced content now: every file's relative path, size and bytes.
    ///
    /// # Errors
    ///
    /// The [`io::Error`] of the first file or directory that cannot be read (it was removed,
    /// or this process may not read it).
    pub fn digest(&self) -> io::Result<String> {
        Ok(digest_path(&self.path)?.to_hex())
    }

    /// Whether the files still hash to the digest recorded with this reference.
    ///
    /// # Errors
    ///
    /// As for [`digest`](Self::digest): a file that cannot be read.
    pub fn is_unchanged(&self) -> io::Result<bool> {
        Ok(self.digest == Some(digest_path(&self.path)?))
    }
}

#[derive(Serialize, Deserialize)]
struct FileRefRepr {
    path: String,
    digest: String,
}

impl Serialize for FileRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let digest = digest_path(&self.path).map_err(|e| {
            serde::ser::Error::custom(format!(
                "cannot hash referenced files at {}: {e}",
                self.path.display()
            ))
        })?;
        FileRefRepr {
            path: self.path.to_string_lossy().into_owned(),
            digest: digest.to_hex(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = FileRefRepr::deserialize(deserializer)?;
        let digest = Hash128::from_hex(&repr.digest)
            .ok_or_else(|| serde::de::Error::custom("file digest is not 32 hex digits"))?;
        Ok(FileRef {
            path: PathBuf::from(repr.path),
            digest: Some(digest),
        })
    }
}

/// Bytes read to hash referenced files in this process (tests use it to show that
/// unchanged files are not read again).
pub fn file_bytes_hashed() -> u64 {
    BYTES_HASHED.load(Ordering::Relaxed)
}

static BYTES_HASHED: AtomicU64 = AtomicU64::new(0);

/// Files under `root` (or `root` itself), sorted by relative path with `/` separators.
fn walk(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let meta = fs::metadata(root)?;
    if meta.is_file() {
        return Ok(vec![(String::new(), root.to_path_buf())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            if fs::metadata(&path)?.is_dir() {
                stack.push((rel, path));
            } else {
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn digest_path(root: &Path) -> io::Result<Hash128> {
    let mut h = Xxh3::new();
    for (rel, path) in walk(root)? {
        let (hash, size) = file_hash(&path)?;
        h.update(&(rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(&size.to_le_bytes());
        h.update(&hash.0.to_le_bytes());
    }
    Ok(Hash128(h.digest128()))
}

/// (absolute path, size, mtime ns, inode) of a file: unchanged means same bytes.
type StatKey = (PathBuf, u64, i64, u64);

fn stat_key(path: &Path) -> io::Result<StatKey> {
    let meta = fs::metadata(path)?;
    let abs = fs::canonicalize(path)?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Ok((abs, meta.len(), crate::local_fs::mtime_ns(&meta), ino))
}

struct StatCache {
    map: HashMap<StatKey, Hash128>,
    file: Option<PathBuf>,
}

fn stat_cache() -> &'static Mutex<StatCache> {
    static CACHE: OnceLock<Mutex<StatCache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        // Persist only into an existing store, never create one as a side effect.
        let store = crate::local_fs::default_path();
        let file = store
            .join("metadata.sqlite")
            .exists()
            .then(|| store.join("file-hashes.tsv"));
        let mut map = HashMap::new();
        if let Some(Ok(f)) = file.as_ref().map(File::open) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Some((key, hash)) = parse_line(&line) {
                    map.insert(key, hash);
                }
            }
        }
        Mutex::new(StatCache { map, file })
    })
}

fn parse_line(line: &str) -> Option<(StatKey, Hash128)> {
    let mut parts = line.splitn(5, '\t');
    let ino = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    let mtime = parts.next()?.parse().ok()?;
    let hash = Hash128::from_hex(parts.next()?)?;
    let path = PathBuf::from(parts.next()?);
    Some(((path, size, mtime, ino), hash))
}

fn file_hash(path: &Path) -> io::Result<(Hash128, u64)> {
    let key = stat_key(path)?;
    let cache = stat_cache();
    if let Some(hash) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map
        .get(&key)
    {
        return Ok((*hash, key.1));
    }
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    BYTES_HASHED.fetch_add(size, Ordering::Relaxed);
    let hash = Hash128(h.digest128());
    // Only remember the hash if the file did not change while we read it.
    if stat_key(path)? == key {
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = cache.file.clone() {
            if !key.0.to_string_lossy().contains(['\n', '\t']) {
                let line = format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    key.3,
                    key.1,
                    key.2,
                    hash,
                    key.0.display()
                );
                let _ = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
            }
        }
        cache.map.insert(key, hash);
    }
    Ok((hash, size))
}

/// Copies the files a [`FileRef`] names into the store, so the output survives the
/// originals being deleted or overwritten. Loading materializes the copy in a
/// content-addressed folder under the system temp directory and returns a `FileRef` to it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Files;

const ARCHIVE_MAGIC: &[u8; 8] = b"PLFILES1";

impl Cacher<FileRef> for Files {
    fn id(&self) -> &str {
        "files"
    }

    fn save(&self, value: &FileRef, out: &mut dyn Write) -> Result<(), BoxError> {
        let entries = walk(&value.path)?;
        out.write_all(ARCHIVE_MAGIC)?;
        out.write_all(&(entries.len() as u64).to_le_bytes())?;
        for (rel, path) in entries {
            let mut f = File::open(&path)?;
            let size = f.metadata()?.len();
            out.write_all(&(rel.len() as u64).to_le_bytes())?;
            out.write_all(rel.as_bytes())?;
            out.write_all(&size.to_le_bytes())?;
            let copied = io::copy(&mut (&mut f).take(size), out)?;
            if copied != size {
                return Err(format!("{} changed while it was copied", path.display()).into());
            }
        }
        Ok(())
    }

    fn load(&self, input: &mut dyn Read) -> Result<FileRef, BoxError> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        let digest = Hash128::of(&bytes);
        let root = std::env::temp_dir()
            .join("pipeline-files")
            .join(digest.to_hex());
        let mut cursor = &bytes[..];
        let mut magic = [0u8; 8];
        cursor.read_exact(&mut magic)?;
        if &magic != ARCHIVE_MAGIC {
            return Err("blob was not written by the files cacher".into());
        }
        let count = read_u64(&mut cursor)?;
        let mut single_file = false;
        let staging = root.with_extension(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        for _ in 0..count {
            let len = read_u64(&mut cursor)? as usize;
            let rel = String::from_utf8(take(&mut cursor, len)?.to_vec())?;
            if rel
                .split('/')
                .any(|c| c == ".." || c.is_empty() && !rel.is_empty())
                || rel.starts_with('/')
            {
                return Err(format!("unsafe path `{rel}` in files archive").into());
            }
            let size = read_u64(&mut cursor)? as usize;
            let data = take(&mut cursor, size)?;
            let target = if rel.is_empty() {
                single_file = true;
                staging.join("file")
            } else {
                staging.join(&rel)
            };
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut w = BufWriter::new(File::create(target)?);
            w.write_all(data)?;
            w.flush()?;
        }
        if !root.exists() {
            if let Err(e) = fs::rename(&staging, &root) {
                if !root.exists() {
                    return Err(e.into());
                }
            }
        }
        let _ = fs::remove_dir_all(&staging);
        let path = if single_file { root.join("file") } else { root };
        let digest = digest_path(&path)?;
        Ok(FileRef {
            path,
            digest: Some(digest),
        })
    }
}

fn read_u64(cursor: &mut &[u8]) -> io::Result<u64> {
    let mut b = [0u8; 8];
    cursor.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn take<'a>(cursor: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if cursor.len() < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "files archive is truncated",
        ));
    }
    let (head, tail) = cursor.split_at(n);
    *cursor = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn digest_covers_bytes_and_names_but_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        write(&root.join("a.txt"), b"alpha");
        write(&root.join("sub/b.txt"), b"beta");
        let r = FileRef::new(&root);
        let d0 = r.digest().unwrap();

        let f = File::options()
            .write(true)
            .open(root.join("a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3))
            .unwrap();
        assert_eq!(r.digest().unwrap(), d0, "touching mtime keeps the digest");

        write(&root.join("sub/b.txt"), b"betA");
        let d1 = r.digest().unwrap();
        assert_ne!(d1, d0, "one changed byte changes the digest");

        fs::rename(root.join("sub/b.txt"), root.join("sub/c.txt")).unwrap();
        assert_ne!(r.digest().unwrap(), d1, "a rename changes the digest");
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.bin");
        write(&file, &vec![7u8; 1 << 20]);
        let r = FileRef::new(&file);
        r.digest().unwrap();
        let before = file_bytes_hashed();
        r.digest().unwrap();
        // Other tests hash files concurrently, so check this file's bytes were not re-read
        // by hashing a second reference and comparing deltas loosely.
        assert!(file_bytes_hashed() - before < 1 << 20);
    }

    #[test]
    fn files_cacher_round_trips_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("model");
        write(&root.join("weights.bin"), &[1, 2, 3]);
        write(&root.join("meta/config.json"), b"{}");
        let mut blob = Vec::new();
        Files.save(&FileRef::new(&root), &mut blob).unwrap();
        let loaded = Files.load(&mut blob.as_slice()).unwrap();
        assert_eq!(
            fs::read(loaded.path().join("weights.bin")).unwrap(),
            [1, 2, 3]
        );
        assert_eq!(
            fs::read(loaded.path().join("meta/config.json")).unwrap(),
            b"{}"
        );
        assert_eq!(
            loaded.digest().unwrap(),
            FileRef::new(&root).digest().unwrap()
        );
        assert!(loaded.is_unchanged().unwrap());
    }

    #[test]
    fn serialized_form_carries_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.csv");
        write(&file, b"1,2\n");
        let json = serde_json::to_value(FileRef::new(&file)).unwrap();
        assert_eq!(json["digest"].as_str().unwrap().len(), 32);
        let back: FileRef = serde_json::from_value(json).unwrap();
        assert!(back.is_unchanged().unwrap());
        let missing = serde_json::to_value(FileRef::new(dir.path().join("nope")));
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("cannot hash referenced files"));
    }
}
