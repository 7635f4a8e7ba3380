//! The password of a metadata URL that names none, found where libpq (`psql`, `pg_dump`)
//! finds it: `PGPASSWORD`, then the password file (`PGPASSFILE`, else `~/.pgpass`), whose
//! lines are `host:port:database:user:password` with `*` matching anything and `\`
//! escaping `:` and `\`. The first line that matches is used; a file that group or others
//! may read, or that is not a plain file, is ignored, as libpq does.
//!
//! [`Origin`] says where the password came from, for messages; it never holds the password.

use std::path::{Path, PathBuf};

/// Where the password of a connection came from (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The URL has one.
    Url,
    /// `PGPASSWORD`.
    Env,
    /// Line `line` (from 1) of the password file `path`.
    File { path: PathBuf, line: usize },
    /// None was found; `ignored` says which password file was not read, and why.
    Missing { ignored: Option<String> },
}

impl Origin {
    /// Where the password came from, as the end of "the password ...".
    pub(crate) fn describe(&self) -> String {
        match self {
            Origin::Url => "given in the metadata URL".into(),
            Origin::Env => "from PGPASSWORD".into(),
            Origin::File { path, line } => format!("from {} line {line}", path.display()),
            Origin::Missing { .. } => "none was given".into(),
        }
    }
}

/// What a connection is to, as the password file's fields match it.
pub(crate) struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password for `target` and where it came from, looking up variables with `var`
/// (`PGPASSWORD`, `PGPASSFILE`, `HOME`).
pub(crate) fn find(
    target: &Target<'_>,
    var: &dyn Fn(&str) -> Option<String>,
) -> (Option<String>, Origin) {
    if let Some(password) = var("PGPASSWORD").filter(|p| !p.is_empty()) {
        return (Some(password), Origin::Env);
    }
    let path = match var("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match var("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Path::new(&home).join(".pgpass"),
            None => return (None, Origin::Missing { ignored: None }),
        },
    };
    match read_file(&path) {
        Ok(Some(text)) => match lookup(&text, target) {
            Some((password, line)) => (Some(password), Origin::File { path, line }),
            None => (None, Origin::Missing { ignored: None }),
        },
        Ok(None) => (None, Origin::Missing { ignored: None }),
        Err(why) => (
            None,
            Origin::Missing {
                ignored: Some(format!("{} was ignored: {why}", path.display())),
            },
        ),
    }
}

/// The password file's text; `Ok(None)` when there is none, `Err` (why) when it is there
/// but must not be used.
fn read_file(path: &Path) -> Result<Option<String>, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err("it is not a plain file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(
                "group or others may read it; make it readable by you only (chmod 600)".into(),
            );
        }
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| format!("it cannot be read ({e})"))
}

/// The password of the first line of `text` matching `target`, and that line's number.
fn lookup(text: &str, target: &Target<'_>) -> Option<(String, usize)> {
    let port = target.port.to_string();
    let wanted = [target.host, port.as_str(), target.database, target.user];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields = split(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = wanted
            .iter()
            .zip(&fields)
            .all(|(want, (field, escaped))| (field == "*" && !escaped) || field == want);
        if matches {
            // A password may hold `:`: the rest of the line, unescaped.
            let password = fields[4..]
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(":");
            return Some((password, n + 1));
        }
    }
    None
}

/// The `:`-separated fields of a line, unescaped, each with whether it held an escape
/// (`\*` is a literal star, not a wildcard).
fn split(line: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let (mut field, mut escaped) = (String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    field.push(next);
                    escaped = true;
                }
            }
            ':' => {
                fields.push((std::mem::take(&mut field), escaped));
                escaped = false;
            }
            c => field.push(c),
        }
    }
    fields.push((field, escaped));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Target<'static> = Target {
        host: "db.example",
        port: 5432,
        database: "runs",
        user: "alice",
    };

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:runs:alice:not-this\n\
                    db.example:5433:*:alice:nor-this\n\
                    \\*:5432:runs:alice:not-a-wildcard\n\
                    *:5432:*:alice:pa\\:ss\\\\word:with-colon\n\
                    *:*:*:*:last\n";
        assert_eq!(
            lookup(text, &TARGET),
            Some(("pa:ss\\word:with-colon".to_string(), 5))
        );
        let bob = Target {
            user: "bob",
            ..TARGET
        };
        assert_eq!(lookup(text, &bob), Some(("last".to_string(), 6)));
        assert_eq!(lookup("db.example:5432:runs:alice\n", &TARGET), None);
    }

    #[test]
    fn pgpassword_comes_first_and_an_open_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:alice:from-file\n").unwrap();
        let env = |pw: Option<&'static str>| {
            let file = file.clone();
            move |k: &str| match k {
                "PGPASSWORD" => pw.map(String::from),
                "PGPASSFILE" => Some(file.display().to_string()),
                _ => None,
            }
        };
        assert_eq!(find(&TARGET, &env(Some("from-env"))).1, Origin::Env);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (password, origin) = find(&TARGET, &env(None));
            assert_eq!(password, None);
            match origin {
                Origin::Missing { ignored: Some(why) } => {
                    assert!(why.contains("chmod 600"), "{why}")
                }
                other => panic!("expected the file to be ignored, got {other:?}"),
            }
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (password, origin) = find(&TARGET, &env(None));
        assert_eq!(password.as_deref(), Some("from-file"));
        assert_eq!(
            origin,
            Origin::File {
                path: file.clone(),
                line: 1
            }
        );
        // `~/.pgpass` without PGPASSFILE.
        std::fs::copy(&file, dir.path().join(".pgpass")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join(".pgpass"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let home = dir.path().display().to_string();
        let (password, _) = find(&TARGET, &move |k: &str| (k == "HOME").then(|| home.clone()));
        assert_eq!(password.as_deref(), Some("from-file"));
    }
}
