//! Read-only media for tests: a directory written normally, then made unwritable for this
//! process by the first method that works on this machine. Used by the facade's tests and
//! (through `#[path]`) by the CLI's; standard library only.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a [`ReadOnlyDir`] was made read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Write permission removed from a copy: stops a process that is not root.
    Permissions,
    /// A copy on a tmpfs, remounted `ro` (root, with the right to mount).
    TmpfsRemountedRo,
    /// A read-only bind mount of the directory (root, with the right to mount).
    ReadOnlyBindMount,
    /// `chattr +i` on a copy's files and directories (root, on a file system that has it).
    Immutable,
}

/// A directory with the contents of another, which this process cannot write. The method is
/// undone on drop (unmounted, made writable again), so a temporary parent can be removed.
pub struct ReadOnlyDir {
    path: PathBuf,
    method: Method,
}

impl ReadOnlyDir {
    /// Makes a read-only directory holding what `src` holds, using `work` (an empty
    /// directory that this process may write) for copies and mount points. Tries, in order,
    /// permissions, a tmpfs remounted `ro`, a read-only bind mount and `chattr +i`, and keeps
    /// the first after which creating a file and writing an existing one both fail.
    ///
    /// Returns why no method worked, for the test to print when it skips.
    pub fn new(src: &Path, work: &Path) -> Result<ReadOnlyDir, String> {
        let mut failures = Vec::new();
        for method in [
            Method::Permissions,
            Method::TmpfsRemountedRo,
            Method::ReadOnlyBindMount,
            Method::Immutable,
        ] {
            let path = work.join(format!("{method:?}").to_lowercase());
            let made = ReadOnlyDir {
                path: path.clone(),
                method,
            };
            match made.apply(src) {
                Ok(()) if made.is_read_only() => return Ok(made),
                Ok(()) => failures.push(format!("{method:?}: writes still succeed")),
                Err(e) => failures.push(format!("{method:?}: {e}")),
            }
            drop(made); // undoes what was done
            let _ = fs::remove_dir_all(&path);
        }
        Err(failures.join("; "))
    }

    /// The read-only directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it was made read-only.
    pub fn method(&self) -> Method {
        self.method
    }

    fn apply(&self, src: &Path) -> io::Result<()> {
        let path = &self.path;
        fs::create_dir_all(path)?;
        match self.method {
            Method::Permissions => {
                copy_dir(src, path)?;
                set_writable(path, false)
            }
            Method::TmpfsRemountedRo => {
                run("mount", &["-t", "tmpfs", "-o", "size=256m", "tmpfs"], path)?;
                copy_dir(src, path)?;
                run("mount", &["-o", "remount,ro"], path)
            }
            Method::ReadOnlyBindMount => {
                let src = src
                    .to_str()
                    .ok_or_else(|| io::Error::other("non-UTF-8 path"))?;
                run("mount", &["--bind", src], path)?;
                run("mount", &["-o", "remount,bind,ro"], path)
            }
            Method::Immutable => {
                copy_dir(src, path)?;
                run("chattr", &["-R", "+i"], path)
            }
        }
    }

    /// Whether creating a file in the directory, and opening one of its files for
    /// writing, both fail.
    fn is_read_only(&self) -> bool {
        let probe = self.path.join(".write-probe");
        if fs::File::create(&probe).is_ok() {
            let _ = fs::remove_file(&probe);
            return false;
        }
        let file = fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_file());
        file.is_none_or(|f| fs::OpenOptions::new().append(true).open(f).is_err())
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        let path = &self.path;
        match self.method {
            Method::Permissions => {
                let _ = set_writable(path, true);
            }
            Method::TmpfsRemountedRo | Method::ReadOnlyBindMount => {
                if is_mount_point(path) {
                    let _ = run("umount", &[], path);
                }
            }
            Method::Immutable => {
                let _ = run("chattr", &["-R", "-i"], path);
            }
        }
    }
}

/// Whether permission bits stop this process (false for root, which they do not stop).
pub fn permissions_apply() -> io::Result<bool> {
    let probe = std::env::temp_dir().join(format!("pipeline-perm-probe-{}", std::process::id()));
    fs::write(&probe, b"")?;
    set_writable(&probe, false)?;
    let stopped = fs::OpenOptions::new().append(true).open(&probe).is_err();
    set_writable(&probe, true)?;
    fs::remove_file(&probe)?;
    Ok(stopped)
}

/// Runs `program args.. path`, failing with its standard error.
fn run(program: &str, args: &[&str], path: &Path) -> io::Result<()> {
    let out = Command::new(program).args(args).arg(path).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether something is mounted at `path`, as `findmnt` (util-linux, beside `mount`) tells:
/// it reads the kernel's mount table, which this file does not parse itself.
fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    match Command::new("findmnt")
        .arg("--mountpoint")
        .arg(&path)
        .output()
    {
        Ok(out) => out.status.success(),
        Err(_) => true, // no findmnt: let umount decide
    }
}

/// Copies the contents of `src` into the existing directory `dst`.
pub fn copy_dir(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&to)?;
            copy_dir(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Adds or removes write permission on `path` and everything under it (directories last
/// when removing, first when adding, so the walk can go on).
fn set_writable(path: &Path, writable: bool) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let mut perms = meta.permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = perms.mode();
        perms.set_mode(if writable {
            mode | 0o200
        } else {
            mode & !0o222
        });
    }
    #[cfg(not(unix))]
    perms.set_readonly(!writable);
    if meta.is_dir() && writable {
        fs::set_permissions(path, perms.clone())?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            set_writable(&entry?.path(), writable)?;
        }
    }
    if !(meta.is_dir() && writable) {
        fs::set_permissions(path, perms)?;
    }
    Ok(())
}
