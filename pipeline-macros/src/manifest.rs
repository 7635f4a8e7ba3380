//! What the macros read from the package: crate-wide signature settings in `Cargo.toml`
//! and locked dependency versions in `Cargo.lock`.
//!
//! Cargo does not know that a proc macro read a file, so every expansion that reads one
//! also emits `include_bytes!` of it: the compiler then records the file as an input of the
//! crate, and cargo rebuilds the crate (running the macro again) when the file changes.
//!
//! Both files are parsed with `toml_edit`, which `proc-macro-crate` already brings into the
//! build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// Keys of `[package.metadata.pipeline]`.
pub(crate) const CRATE_SETTINGS: &[&str] = &["build_profile", "deps", "source_file"];

/// `[package.metadata.pipeline]` of the crate being compiled: defaults for every step.
#[derive(Debug, Default, PartialEq, Clone)]
pub(crate) struct CrateSettings {
    /// `deps = ["smartcore", ..]`.
    pub deps: Vec<String>,
    /// `build_profile = true`.
    pub build_profile: bool,
    /// `source_file = true`.
    pub source_file: bool,
}

/// The crate's manifest, if cargo says where it is.
pub(crate) fn manifest_path() -> Option<PathBuf> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let path = Path::new(&dir).join("Cargo.toml");
    path.is_file().then_some(path)
}

/// What identifies a version of a file: its size and modification time.
type Stamp = (u64, Option<SystemTime>);

/// Per path, the stamp of the file when it was read and what was made of it.
type Cache<T> = OnceLock<Mutex<HashMap<PathBuf, (Stamp, T)>>>;

/// `read()` of the file at `path`, computed once per macro process while the file keeps its
/// size and modification time: every `#[step]` of a crate reads the same `Cargo.toml` (and
/// `Cargo.lock` for `deps`), and rust-analyzer keeps one macro process across edits.
fn cached<T: Clone>(cache: &'static Cache<T>, path: &Path, read: impl FnOnce() -> T) -> T {
    let Ok(meta) = std::fs::metadata(path) else {
        return read();
    };
    let stamp = (meta.len(), meta.modified().ok());
    let map = cache.get_or_init(Default::default);
    if let Some((s, value)) = map.lock().ok().and_then(|m| m.get(path).cloned()) {
        if s == stamp {
            return value;
        }
    }
    let value = read();
    if let Ok(mut m) = map.lock() {
        m.insert(path.to_path_buf(), (stamp, value.clone()));
    }
    value
}

/// Reads the crate-wide settings from `manifest` (once per macro process, see [`cached`]).
pub(crate) fn crate_settings(manifest: &Path) -> Result<CrateSettings, String> {
    static CACHE: Cache<Result<CrateSettings, String>> = OnceLock::new();
    cached(&CACHE, manifest, || read_crate_settings(manifest))
}

fn read_crate_settings(manifest: &Path) -> Result<CrateSettings, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    parse_crate_settings(&text).map_err(|e| {
        format!(
            "{e} in `[package.metadata.pipeline]` of {}",
            manifest.display()
        )
    })
}

fn parse_crate_settings(text: &str) -> Result<CrateSettings, String> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
    let mut settings = CrateSettings::default();
    let Some(table) = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("pipeline"))
    else {
        return Ok(settings);
    };
    let table = table
        .as_table_like()
        .ok_or("`pipeline` must be a table of settings")?;
    for (key, item) in table.iter() {
        match key {
            "deps" => {
                settings.deps = item
                    .as_array()
                    .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
                    .ok_or_else(|| {
                        "`deps` expects an array of crate names, e.g. `deps = [\"smartcore\"]`"
                            .to_string()
                    })?
            }
            "build_profile" => settings.build_profile = boolean(item, key)?,
            "source_file" => settings.source_file = boolean(item, key)?,
            other => {
                return Err(format!(
                    "unknown key `{other}`; expected one of: {}",
                    CRATE_SETTINGS.join(", ")
                ))
            }
        }
    }
    Ok(settings)
}

fn boolean(item: &toml_edit::Item, key: &str) -> Result<bool, String> {
    item.as_bool()
        .ok_or_else(|| format!("`{key}` expects `true` or `false`"))
}

/// One `[[package]]` of `Cargo.lock`.
#[derive(Debug, Default, Clone)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    /// `"name"`, `"name version"` or `"name version (source)"`.
    dependencies: Vec<String>,
}

/// A parsed `Cargo.lock`.
pub(crate) struct Lockfile {
    /// Where it was found.
    pub path: PathBuf,
    packages: Arc<Vec<Package>>,
}

/// Finds `Cargo.lock` from the crate's directory upward (a workspace keeps it at its root).
pub(crate) fn find_lockfile() -> Result<Lockfile, String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or(
        "`deps` reads dependency versions from Cargo.lock, but CARGO_MANIFEST_DIR is not set: build with cargo",
    )?;
    let start = PathBuf::from(dir);
    for dir in start.ancestors() {
        let path = dir.join("Cargo.lock");
        if path.is_file() {
            static CACHE: Cache<Result<Arc<Vec<Package>>, String>> = OnceLock::new();
            let packages = cached(&CACHE, &path, || {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse_lockfile(&text).map(Arc::new)
            })?;
            return Ok(Lockfile { packages, path });
        }
    }
    Err(format!(
        "`deps` reads dependency versions from Cargo.lock, but there is none in {} or above; run `cargo generate-lockfile`",
        start.display()
    ))
}

fn parse_lockfile(text: &str) -> Result<Vec<Package>, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("Cargo.lock is not valid TOML: {e}"))?;
    let Some(packages) = doc.get("package").and_then(|p| p.as_array_of_tables()) else {
        return Ok(Vec::new());
    };
    let text_of =
        |t: &toml_edit::Table, key: &str| t.get(key).and_then(|v| v.as_str()).map(str::to_string);
    Ok(packages
        .iter()
        .map(|t| Package {
            name: text_of(t, "name").unwrap_or_default(),
            version: text_of(t, "version").unwrap_or_default(),
            source: text_of(t, "source"),
            dependencies: t
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Crate names compare with `-` and `_` as one character: code says `serde_json`.
fn same_crate(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

impl Lockfile {
    /// The locked version of `krate` as the crate being compiled uses it: `0.4.1`, with the
    /// commit for a git dependency (`0.4.1 (git 1a2b3c4d)`).
    pub(crate) fn version_of(&self, krate: &str) -> Result<String, String> {
        let me = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
        let my_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
        self.resolve(krate, &me, &my_version)
    }

    fn resolve(&self, krate: &str, me: &str, my_version: &str) -> Result<String, String> {
        let candidates: Vec<&Package> = self
            .packages
            .iter()
            .filter(|p| same_crate(&p.name, krate))
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "`deps` names `{krate}`, but Cargo.lock has no package of that name; name a crate this package depends on, e.g. `deps = [serde]`"
            ));
        }
        // Several versions of one crate: the one this package's dependency list names.
        let chosen = if candidates.len() == 1 {
            candidates[0]
        } else {
            let wanted = self
                .packages
                .iter()
                .find(|p| p.name == me && p.version == my_version && p.source.is_none())
                .and_then(|p| {
                    p.dependencies.iter().find_map(|d| {
                        let mut words = d.split_whitespace();
                        let name = words.next()?;
                        same_crate(name, krate).then(|| words.next().map(str::to_string))
                    })
                })
                .flatten();
            match wanted.and_then(|v| candidates.iter().find(|p| p.version == v)) {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "`deps` names `{krate}`, but Cargo.lock has several versions of it ({}) and `{me}` depends on none of them directly",
                        candidates.iter().map(|p| p.version.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
        };
        Ok(match chosen.source.as_deref() {
            Some(source) if source.starts_with("git+") => {
                let commit = source.rsplit('#').next().unwrap_or(source);
                format!(
                    "{} (git {})",
                    chosen.version,
                    &commit[..commit.len().min(8)]
                )
            }
            _ => chosen.version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_until_it_changes() {
        static CACHE: Cache<String> = OnceLock::new();
        let dir =
            std::env::temp_dir().join(format!("pipeline-macros-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("Cargo.toml");
        std::fs::write(&path, "a = 1").unwrap();
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            std::fs::read_to_string(&path).unwrap()
        };
        assert_eq!(cached(&CACHE, &path, read), "a = 1");
        assert_eq!(cached(&CACHE, &path, read), "a = 1");
        assert_eq!(
            reads.get(),
            1,
            "the second expansion must reuse the first read"
        );
        // Another size: read again.
        std::fs::write(&path, "a = 22").unwrap();
        assert_eq!(cached(&CACHE, &path, read), "a = 22");
        assert_eq!(reads.get(), 2);
        // A missing file is not cached (the reader reports it each time).
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = cached(&CACHE, &path, || "gone".to_string());
        assert_eq!(cached(&CACHE, &path, || "gone".to_string()), "gone");
    }

    const LOCK: &str = r#"
# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "rand 0.8.5",
 "serde_json",
 "smartcore",
]

[[package]]
name = "rand"
version = "0.7.3"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "rand"
version = "0.8.5"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "34af8d1a0e25924bc5b7c43c2b4f6e7ab3a9e4d6c2f1b0a0c0e2f0e1d2c3b4a5"

[[package]]
name = "serde_json"
version = "1.0.140"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "smartcore"
version = "0.4.2"
source = "git+https://github.com/smartcorelib/smartcore?branch=dev#0123456789abcdef"
"#;

    fn lock() -> Lockfile {
        Lockfile {
            path: PathBuf::from("Cargo.lock"),
            packages: Arc::new(parse_lockfile(LOCK).unwrap_or_default()),
        }
    }

    #[test]
    fn reads_locked_versions() {
        let lock = lock();
        assert_eq!(lock.packages.len(), 5);
        assert_eq!(
            lock.resolve("serde-json", "app", "0.1.0").as_deref(),
            Ok("1.0.140")
        );
        assert_eq!(
            lock.resolve("smartcore", "app", "0.1.0").as_deref(),
            Ok("0.4.2 (git 01234567)")
        );
    }

    #[test]
    fn picks_the_version_this_package_depends_on() {
        assert_eq!(
            lock().resolve("rand", "app", "0.1.0").as_deref(),
            Ok("0.8.5")
        );
        let err = lock().resolve("rand", "other", "1.0.0").unwrap_err();
        assert!(
            err.contains("several versions of it (0.7.3, 0.8.5)"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_crate_is_an_error_naming_it() {
        let err = lock().resolve("smartcorex", "app", "0.1.0").unwrap_err();
        assert!(err.contains("`smartcorex`"), "{err}");
    }

    #[test]
    fn reads_crate_settings() {
        let toml = r#"
[package]
name = "app" # the name
description = "a [bracket] and # hash"

[package.metadata.pipeline]
deps = [
    "smartcore",  # the model
    "ndarray",
]
build_profile = true

[dependencies]
deps = "not ours"
"#;
        assert_eq!(
            parse_crate_settings(toml),
            Ok(CrateSettings {
                deps: vec!["smartcore".into(), "ndarray".into()],
                build_profile: true,
                source_file: false,
            })
        );
        let err = parse_crate_settings("[package.metadata.pipeline]\nprofile = true\n");
        assert_eq!(
            err,
            Err("unknown key `profile`; expected one of: build_profile, deps, source_file".into())
        );
        assert_eq!(
            parse_crate_settings("[package]\nname = \"x\"\n"),
            Ok(CrateSettings::default())
        );
    }
}
