//! What the macros read from the package: crate-wide signature settings in `Cargo.toml`
//! and locked dependency versions in `Cargo.lock`.
//!
//! Cargo does not know that a proc macro read a file, so every expansion that reads one
//! also emits `include_bytes!` of it: the compiler then records the file as an input of the
//! crate, and cargo rebuilds the crate (running the macro again) when the file changes.
//!
//! Only the small subset of TOML these files use is parsed: `[table]` headers, `key = value`
//! lines with strings, booleans and arrays of strings (which may span lines), and comments.

use std::path::{Path, PathBuf};

/// Keys of `[package.metadata.pipeline]`.
pub(crate) const CRATE_SETTINGS: &[&str] = &["build_profile", "deps", "source_file"];

/// `[package.metadata.pipeline]` of the crate being compiled: defaults for every step.
#[derive(Debug, Default, PartialEq)]
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

/// Reads the crate-wide settings from `manifest`.
pub(crate) fn crate_settings(manifest: &Path) -> Result<CrateSettings, String> {
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
    let mut settings = CrateSettings::default();
    for (table, key, value) in entries(text)? {
        if table != "package.metadata.pipeline" {
            continue;
        }
        match key.as_str() {
            "deps" => {
                settings.deps = string_array(&value).ok_or_else(|| {
                    "`deps` expects an array of crate names, e.g. `deps = [\"smartcore\"]`"
                        .to_string()
                })?
            }
            "build_profile" => settings.build_profile = boolean(&value, &key)?,
            "source_file" => settings.source_file = boolean(&value, &key)?,
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

fn boolean(value: &str, key: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{key}` expects `true` or `false`")),
    }
}

/// `(table, key, raw value)` for every `key = value` of a TOML document; arrays may span
/// lines. Array-of-tables headers (`[[package]]`) start a table named `[package]`.
fn entries(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        let line = strip_comment(line).trim();
        if let Some((key, value)) = &mut pending {
            value.push(' ');
            value.push_str(line);
            if balanced(value) {
                out.push((table.clone(), key.clone(), value.trim().to_string()));
                pending = None;
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            table = format!("[{}]", header.trim());
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = header
                .split('.')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(".");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"').to_string();
        let value = value.trim().to_string();
        if balanced(&value) {
            out.push((table.clone(), key, value));
        } else {
            pending = Some((key, value));
        }
    }
    match pending {
        Some((key, _)) => Err(format!("unterminated array for `{key}`")),
        None => Ok(out),
    }
}

/// `line` without a `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '#' {
            return &line[..i];
        }
    }
    line
}

/// Whether the brackets of `value` are balanced (outside strings).
fn balanced(value: &str) -> bool {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for c in value.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                '"' => in_string = true,
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
        }
    }
    depth <= 0
}

/// `"text"` -> `text`.
fn string(value: &str) -> Option<String> {
    let inner = value.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// `["a", "b"]` -> `[a, b]`.
fn string_array(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(string)
        .collect()
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
    packages: Vec<Package>,
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
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Ok(Lockfile {
                packages: parse_lockfile(&text)?,
                path,
            });
        }
    }
    Err(format!(
        "`deps` reads dependency versions from Cargo.lock, but there is none in {} or above; run `cargo generate-lockfile`",
        start.display()
    ))
}

fn parse_lockfile(text: &str) -> Result<Vec<Package>, String> {
    let mut packages: Vec<Package> = Vec::new();
    for (table, key, value) in entries(text)? {
        if table != "[package]" {
            continue;
        }
        // Cargo writes each `[[package]]` starting with its `name`.
        if key == "name" {
            packages.push(Package::default());
        }
        let Some(p) = packages.last_mut() else {
            continue;
        };
        match key.as_str() {
            "name" => p.name = string(&value).unwrap_or_default(),
            "version" => p.version = string(&value).unwrap_or_default(),
            "source" => p.source = string(&value),
            "dependencies" => p.dependencies = string_array(&value).unwrap_or_default(),
            _ => {}
        }
    }
    Ok(packages)
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
            packages: parse_lockfile(LOCK).unwrap_or_default(),
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
