//! The local folder: `artifacts/ab/ab12...` beside the database, with a JSON sidecar
//! `ab12....json` beside each blob.
//!
//! Bytes are hashed while they are written to a temporary file in `artifacts/tmp/`, which is
//! synced and renamed into place, and the directory is synced after the rename; the metadata
//! commit comes after, so a completed execution never points at a half-written blob. A
//! temporary file is named after the writing handle's owner token, so the file of a process
//! that died is recognised and removed.
//!
//! Nothing is created until something is written: a store on read-only media opens and
//! reads through this backend without writing.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{
    invalid_claim_id, valid_claim_id, ArtifactStore, BlobPut, BlobStat, ListedBlob, CLAIMS_DIR,
};
use crate::key::Hash128;
use crate::local_fs::mtime_ns;
use crate::store::blob::{blob_path, HashingWriter};
use crate::store::{sidecar_path, ContentHash};

/// Blobs in a folder: `<dir>/ab/ab12...`, temporary files in `<dir>/tmp/`.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    dir: PathBuf,
    owner: String,
    /// The folder, opened once it exists (unix): a blob's `stat` then walks two path
    /// components from it instead of the whole path, which was most of the time a cached
    /// step spends on its blobs (perf figure 1).
    #[cfg(unix)]
    opened: std::sync::Arc<std::sync::OnceLock<rustix::fd::OwnedFd>>,
}

impl LocalArtifacts {
    /// Blobs in folder `dir` (created on the first write). `owner` prefixes the names of
    /// temporary files, so that those of a process that died can be told and removed (the
    /// store passes its owner token; any name without `/` will do).
    pub fn new(dir: impl Into<PathBuf>, owner: impl Into<String>) -> Self {
        LocalArtifacts {
            dir: dir.into(),
            owner: owner.into(),
            #[cfg(unix)]
            opened: Default::default(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(unix)]
impl LocalArtifacts {
    /// The blob's stat relative to the opened folder (opening it if it exists now);
    /// `None` when that does not find it, for the caller to ask by the full path.
    fn stat_in_folder(&self, hash: Hash128) -> Option<BlobStat> {
        use rustix::fs::{AtFlags, Mode, OFlags};

        let dir = match self.opened.get() {
            Some(fd) => fd,
            None => {
                let fd = rustix::fs::open(
                    &self.dir,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                self.opened.get_or_init(|| fd)
            }
        };
        // `ab/ab12…` (35 bytes), formatted on the stack.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut name = [0u8; 35];
        for (i, byte) in hash.0.to_be_bytes().iter().enumerate() {
            name[3 + 2 * i] = HEX[usize::from(byte >> 4)];
            name[4 + 2 * i] = HEX[usize::from(byte & 15)];
        }
        name[0] = name[3];
        name[1] = name[4];
        name[2] = b'/';
        let name = std::str::from_utf8(&name).ok()?;
        let stat = rustix::fs::statat(dir, name, AtFlags::empty()).ok()?;
        let time = |secs: i64, nanos: i64| {
            let d = std::time::Duration::new(u64::try_from(secs).ok()?, u32::try_from(nanos).ok()?);
            Some((SystemTime::UNIX_EPOCH + d, d.as_nanos() as i64))
        };
        let modified = time(stat.st_mtime as i64, stat.st_mtime_nsec as i64);
        let accessed = time(stat.st_atime as i64, stat.st_atime_nsec as i64);
        Some(BlobStat {
            size: u64::try_from(stat.st_size).ok()?,
            // As `mtime_ns` gives it from the file's metadata: 0 when unknown.
            modified_ns: modified.map_or(0, |(_, ns)| ns),
            last_used: match (modified, accessed) {
                (Some((m, _)), Some((a, _))) => Some(m.max(a)),
                (Some((m, _)), None) => Some(m),
                _ => None,
            },
        })
    }
}

/// Size and times of a blob file.
fn stat_of(meta: &fs::Metadata) -> BlobStat {
    // Age since the last write or use (a use sets the access time).
    let last_used = match (meta.modified(), meta.accessed()) {
        (Ok(m), Ok(a)) => Some(m.max(a)),
        (Ok(m), Err(_)) => Some(m),
        _ => None,
    };
    BlobStat {
        size: meta.len(),
        modified_ns: mtime_ns(meta),
        last_used,
    }
}

/// `Ok(None)` for a missing file, the error otherwise.
fn absent<T>(e: io::Error) -> io::Result<Option<T>> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

impl ArtifactStore for LocalArtifacts {
    fn put(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
        Ok(Box::new(LocalPut::create(
            &self.dir,
            kind,
            &self.owner,
            false,
        )?))
    }

    fn put_replacing(&self, kind: ContentHash) -> io::Result<Box<dyn BlobPut>> {
        Ok(Box::new(LocalPut::create(
            &self.dir,
            kind,
            &self.owner,
            true,
        )?))
    }

    fn open(&self, hash: Hash128) -> io::Result<Option<Box<dyn Read + Send>>> {
        match File::open(blob_path(&self.dir, hash)) {
            Ok(f) => Ok(Some(Box::new(io::BufReader::with_capacity(1 << 20, f)))),
            Err(e) => absent(e),
        }
    }

    fn stat(&self, hash: Hash128) -> io::Result<Option<BlobStat>> {
        #[cfg(unix)]
        if let Some(found) = self.stat_in_folder(hash) {
            return Ok(Some(found));
        }
        // Not found from the opened folder (or none opened): ask by the full path, which
        // also sees a folder replaced since it was opened.
        match fs::metadata(blob_path(&self.dir, hash)) {
            Ok(meta) => Ok(Some(stat_of(&meta))),
            Err(e) => absent(e),
        }
    }

    fn delete(&self, hash: Hash128) -> io::Result<bool> {
        let path = blob_path(&self.dir, hash);
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = fs::remove_file(sidecar_path(&path));
                Ok(true)
            }
            Err(e) => absent(e).map(|_: Option<()>| false),
        }
    }

    fn list(&self) -> io::Result<Vec<ListedBlob>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for fanout in entries {
            let fanout = fanout?;
            if fanout.file_name() == "tmp"
                || fanout.file_name() == CLAIMS_DIR
                || !fanout.file_type()?.is_dir()
            {
                continue;
            }
            for blob in fs::read_dir(fanout.path())? {
                let blob = blob?;
                let name = blob.file_name().to_string_lossy().into_owned();
                let Some(hash) = Hash128::from_hex(&name) else {
                    continue; // sidecars and strangers
                };
                // Gone since the listing (another gc): not a blob any more.
                let Ok(meta) = blob.metadata() else { continue };
                out.push(ListedBlob {
                    hash,
                    stat: stat_of(&meta),
                });
            }
        }
        Ok(out)
    }

    fn touch(&self, hash: Hash128) -> io::Result<()> {
        // The access time only: the modification time is what the stat check compares.
        let now = fs::FileTimes::new().set_accessed(SystemTime::now());
        File::options()
            .write(true)
            .open(blob_path(&self.dir, hash))?
            .set_times(now)
    }

    fn put_claim(&self, store_id: &str, doc: &[u8]) -> io::Result<()> {
        if !valid_claim_id(store_id) {
            return Err(invalid_claim_id(store_id));
        }
        let dir = self.dir.join(CLAIMS_DIR);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{store_id}.json"));
        // Unique per writer: the handles of one store (one id) may claim at once.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{store_id}.json.{}-{n}.tmp", std::process::id()));
        fs::write(&tmp, doc)?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &path)?;
        // Durable before the first blob this store writes here.
        File::open(&dir)?.sync_all()
    }

    fn claims(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let entries = match fs::read_dir(self.dir.join(CLAIMS_DIR)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_claim_id(id)) else {
                continue; // a claim being written, or a stranger
            };
            match fs::read(entry.path()) {
                Ok(doc) => out.push((id.to_string(), doc)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn put_sidecar(&self, hash: Hash128, doc: &[u8]) -> io::Result<()> {
        let path = sidecar_path(&blob_path(&self.dir, hash));
        // Unique per writer: steps running at once may write identical outputs (same hash).
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
        fs::write(&tmp, doc).and_then(|_| fs::rename(&tmp, &path))
    }

    fn get_sidecar(&self, hash: Hash128) -> io::Result<Option<Vec<u8>>> {
        match fs::read(sidecar_path(&blob_path(&self.dir, hash))) {
            Ok(doc) => Ok(Some(doc)),
            Err(e) => absent(e),
        }
    }

    fn location(&self, hash: Hash128) -> PathBuf {
        blob_path(&self.dir, hash)
    }
}

impl BlobPut for LocalPut {
    fn commit_with(
        self: Box<Self>,
        before_place: &mut dyn FnMut(Hash128) -> io::Result<()>,
    ) -> io::Result<(Hash128, u64)> {
        (*self).finish(before_place)
    }
}

/// Writes a blob: hashes and counts bytes on the way to a temporary file.
struct LocalPut {
    out: Option<HashingWriter<File>>,
    tmp: PathBuf,
    artifacts: PathBuf,
    /// Replace a blob already in place (its bytes were found damaged), instead of keeping it.
    replace: bool,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalPut {
    /// A writer whose temporary file is named after `owner`, the writing handle's owner
    /// token, so that the file of a process that died is recognised and removed.
    fn create(artifacts: &Path, kind: ContentHash, owner: &str, replace: bool) -> io::Result<Self> {
        let dir = artifacts.join("tmp");
        fs::create_dir_all(&dir)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{owner}-{n}.tmp"));
        let file = File::create(&tmp)?;
        Ok(LocalPut {
            out: Some(HashingWriter::with_hash(file, kind)),
            tmp,
            artifacts: artifacts.to_path_buf(),
            replace,
        })
    }

    /// Calls `before_place`, then keeps the blob already at the content address (same
    /// name, same size: same bytes) or syncs the bytes and renames the file there; returns
    /// (hash, size).
    ///
    /// Keeping is what the object-store backend does too, and what makes a split of
    /// 10,000 unchanged items cost no fsync per item (it was two each). It is safe beside
    /// gc because `before_place` has recorded the lease's hold on the hash: gc spares it
    /// from then on, and one that started before waited for the hold's transaction. A
    /// blob found damaged is replaced by [`put_replacing`](ArtifactStore::put_replacing).
    fn finish(
        mut self,
        before_place: &mut dyn FnMut(Hash128) -> io::Result<()>,
    ) -> io::Result<(Hash128, u64)> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("blob writer already finished"));
        };
        let (file, hash, size) = out.finish()?;
        before_place(hash)?;
        let path = blob_path(&self.artifacts, hash);
        if !self.replace && fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size) {
            drop(file);
            fs::remove_file(&self.tmp)?;
            self.tmp = PathBuf::new(); // removed: nothing for Drop to remove
            return Ok((hash, size));
        }
        file.sync_all()?;
        drop(file);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // Rename over a blob of another size (damaged), or any blob when replacing.
        fs::rename(&self.tmp, &path)?;
        self.tmp = PathBuf::new(); // renamed: nothing for Drop to remove
        if let Some(dir) = path.parent() {
            // Make the rename durable before the metadata commit refers to it.
            File::open(dir)?.sync_all()?;
        }
        Ok((hash, size))
    }

    fn out(&mut self) -> io::Result<&mut HashingWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))
    }
}

impl Drop for LocalPut {
    /// A writer dropped before `finish` (a failing or panicking cacher) leaves no file.
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for LocalPut {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` through `put` (or `put_replacing`); the blob file's inode after it.
    #[cfg(unix)]
    fn written(blobs: &LocalArtifacts, bytes: &[u8], replacing: bool) -> (Hash128, u64) {
        use std::os::unix::fs::MetadataExt as _;
        let mut w = if replacing {
            blobs.put_replacing(ContentHash::Xxh3).unwrap()
        } else {
            blobs.put(ContentHash::Xxh3).unwrap()
        };
        w.write_all(bytes).unwrap();
        let (hash, size) = w.commit().unwrap();
        assert_eq!(size, bytes.len() as u64);
        let inode = fs::metadata(blob_path(&blobs.dir, hash)).unwrap().ino();
        (hash, inode)
    }

    /// A put of bytes already in place keeps the blob (no second file, no fsync: a split
    /// of unchanged items costs nothing per item); a blob of another size is damaged and
    /// replaced, and `put_replacing` always replaces. No temporary file is left.
    #[cfg(unix)]
    #[test]
    fn a_blob_in_place_is_kept_unless_damaged_or_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("artifacts");
        let blobs = LocalArtifacts::new(&dir, "test");
        let (hash, first) = written(&blobs, b"the same bytes", false);
        let (again, kept) = written(&blobs, b"the same bytes", false);
        assert_eq!((again, kept), (hash, first), "kept the blob in place");
        let (_, replaced) = written(&blobs, b"the same bytes", true);
        assert_ne!(replaced, first, "put_replacing wrote a new file");
        // Truncated by damage: another size, so the next put replaces it.
        fs::write(blob_path(&dir, hash), b"the same").unwrap();
        written(&blobs, b"the same bytes", false);
        assert_eq!(fs::read(blob_path(&dir, hash)).unwrap(), b"the same bytes");
        let left: Vec<_> = fs::read_dir(dir.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    /// The stat taken relative to the opened folder equals the one by the full path.
    #[test]
    fn stat_from_the_opened_folder_equals_the_stat_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("artifacts");
        let blobs = LocalArtifacts::new(&dir, "test");
        let hash = Hash128(0x00ab_cdef_0123_4567_89ab_cdef_0123_4567);
        assert!(blobs.stat(hash).unwrap().is_none(), "no folder yet");
        let path = blob_path(&dir, hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"bytes").unwrap();
        let by_path = stat_of(&fs::metadata(&path).unwrap());
        let found = blobs.stat(hash).unwrap().unwrap();
        assert_eq!(found.size, 5);
        assert_eq!(found.modified_ns, by_path.modified_ns);
        assert_eq!(found.last_used, by_path.last_used);
        #[cfg(unix)]
        assert!(
            blobs.stat_in_folder(hash).is_some(),
            "found from the opened folder"
        );
        // The folder moved away and replaced: the handle follows the folder it opened, as
        // its database connection follows the file it opened; a blob missing there is
        // still looked for by path.
        fs::rename(&dir, tmp.path().join("old")).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"other bytes").unwrap();
        assert_eq!(blobs.stat(hash).unwrap().unwrap().size, 5);
        fs::remove_file(blob_path(&tmp.path().join("old"), hash)).unwrap();
        assert_eq!(blobs.stat(hash).unwrap().unwrap().size, 11);
        fs::remove_file(&path).unwrap();
        assert!(blobs.stat(hash).unwrap().is_none(), "gone from both");
    }
}
