//! The subcommands, one file each (as cargo's `bin/cargo/commands/*.rs`). Each asks core
//! for a typed report (`pipeline::report`) and prints it as text through `Display`, or as
//! JSON with `--json`; this file opens the store and turns errors into messages.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use pipeline::config::{MetadataLocation, StoreConfig};
use pipeline::{Error, RunRecord, Store, StoreOptions};
use serde::Serialize;

use crate::{Cli, Command};

pub mod diff;
pub mod explain;
pub mod gc;
pub mod lineage;
pub mod logs;
pub mod pin;
pub mod replay;
pub mod runs;
pub mod show;
pub mod store;
pub mod verify;

/// An error message for standard error.
pub type CliResult<T> = Result<T, String>;

/// What a command prints on standard output, and its exit code: 0, or 1 when `verify`
/// leaves problems.
pub struct Printed {
    pub text: String,
    pub code: u8,
}

pub fn run(cli: &Cli) -> CliResult<Printed> {
    // `--store` wins; else the environment and `pipeline.toml` (`PIPELINE_METADATA`,
    // `PIPELINE_ARTIFACTS`, `PIPELINE_HOME`), as a pipeline finds its store.
    let config = match &cli.store {
        Some(path) => StoreConfig::local(path),
        None => StoreConfig::from_env().map_err(|e| e.to_string())?,
    };
    let path = match config.metadata() {
        MetadataLocation::Sqlite { path } => {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        }
        _ => PathBuf::from(config.metadata().to_string()),
    };
    // Even a dry run of gc takes the write lock, to see a consistent store.
    let writes = match &cli.command {
        Command::Gc(_) | Command::Pin(_) | Command::Unpin(_) => true,
        Command::Verify(args) => args.repair,
        _ => false,
    };
    let store = open_store(&config, &path, writes)?;
    let ctx = Ctx {
        store: &store,
        path: &path,
        json: cli.json,
    };
    let text = match &cli.command {
        Command::Runs(args) => runs::exec(&ctx, args),
        Command::Show(args) => show::exec(&ctx, args),
        Command::Explain(args) => explain::exec(&ctx, args),
        Command::Diff(args) => diff::exec(&ctx, args),
        Command::Lineage(args) => lineage::exec(&ctx, args),
        Command::Logs(args) => logs::exec(&ctx, args),
        Command::Gc(args) => gc::exec(&ctx, args),
        Command::Pin(args) => pin::exec(&ctx, args, true),
        Command::Unpin(args) => pin::exec(&ctx, args, false),
        Command::Replay(args) => replay::exec(&ctx, args, cli.store.is_some()),
        Command::Verify(args) => return verify::exec(&ctx, args),
        Command::Store(args) => return store::exec(&ctx, args),
        Command::Ui(args) => crate::ui::serve(store.clone(), &path, args),
    }?;
    Ok(Printed { text, code: 0 })
}

/// Opens an existing store, never creating one; read-only unless the command `writes`.
/// A read-only open of a PostgreSQL database creates nothing either: an empty database is
/// an error that names `PIPELINE_METADATA`.
fn open_store(config: &StoreConfig, path: &Path, writes: bool) -> CliResult<Store> {
    if matches!(config.metadata(), MetadataLocation::Sqlite { .. }) {
        check_local_store(path)?;
    }
    if !writes {
        let read_only = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        match Store::connect_with(config, read_only) {
            // A store of an older schema is upgraded by a writable open.
            Err(Error::ReadOnly { .. }) => {}
            other => return other.map_err(|e| e.to_string()),
        }
    }
    Store::connect(config).map_err(|e| e.to_string())
}

/// Fails unless `path` is a folder holding `metadata.sqlite`.
fn check_local_store(path: &Path) -> CliResult<()> {
    pipeline::config::refuse_url_as_folder(path, pipeline::config::Origin::Code)
        .map_err(|e| e.to_string())?;
    let hint = "run a pipeline first, or name a store with --store PATH or PIPELINE_HOME";
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(_) => {
            return Err(format!(
                "no pipeline store at {shown}: the directory does not exist; {hint}"
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "no pipeline store at {shown}: it is a file, not a directory; {hint}"
            ))
        }
        Ok(_) => {}
    }
    if !path.join("metadata.sqlite").is_file() {
        return Err(format!(
            "no pipeline store at {shown}: the directory has no metadata.sqlite; {hint}"
        ));
    }
    Ok(())
}

/// What every command gets: the open store, its path (for messages) and `--json`.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub path: &'a PathBuf,
    pub json: bool,
}

impl Ctx<'_> {
    /// Turns a store error into a message that names the command to use next.
    pub fn error(&self, e: Error) -> String {
        match e {
            Error::UnknownRun(run) => format!(
                "no run `{run}` in the store at {}; list runs with `pipeline runs`",
                self.path.display()
            ),
            Error::AmbiguousRun { prefix, candidates } => {
                let mut shown: Vec<String> = candidates
                    .iter()
                    .take(8)
                    .map(|c| format!("`{c}`"))
                    .collect();
                if candidates.len() > 8 {
                    shown.push(format!("and {} more", candidates.len() - 8));
                }
                format!(
                    "run prefix `{prefix}` is ambiguous: it matches {} runs ({}); give more characters or the full name",
                    candidates.len(),
                    shown.join(", ")
                )
            }
            other => other.to_string(),
        }
    }

    pub fn run_record(&self, run: &str) -> CliResult<RunRecord> {
        self.store.run(run).map_err(|e| self.error(e))
    }

    /// A report as the command prints it: JSON with `--json`, else its text.
    pub fn print<R: Serialize + Display>(&self, report: &R) -> String {
        if self.json {
            to_json(report)
        } else {
            report.to_string()
        }
    }
}

/// Pretty JSON with a final newline. Object keys come out sorted, as `serde_json::Value`
/// keeps them.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    let mut s = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// How many step calls an error lists when it says which calls a run has.
pub const LISTED_CALLS: usize = 30;

/// The calls a run has, for an error about a call it does not have: all of them up to
/// [`LISTED_CALLS`], else the first ones and how many more (a map of 1,000 items has 1,000
/// calls per step, which would bury the message; `pipeline show RUN` groups them).
/// `run_id` names the run in that hint (its name may be shared by newer runs).
pub fn listed_calls(names: &[String], run_id: &str) -> String {
    if names.len() <= LISTED_CALLS {
        return names.join(", ");
    }
    format!(
        "{}, ... and {} more (`pipeline show {run_id}` lists them)",
        names[..LISTED_CALLS].join(", "),
        names.len() - LISTED_CALLS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_calls_is_cut_and_counted() {
        let few: Vec<String> = ["load", "fit[0]", "fit[1]"].map(String::from).to_vec();
        assert_eq!(listed_calls(&few, "r"), "load, fit[0], fit[1]");
        let many: Vec<String> = (0..1500).map(|i| format!("fit[{i}]")).collect();
        let text = listed_calls(&many, "0f3c9a");
        assert!(text.starts_with("fit[0], fit[1], "), "{text}");
        assert!(text.contains("fit[29], ... and 1470 more"), "{text}");
        assert!(!text.contains("fit[30]"), "{text}");
        assert!(
            text.ends_with("(`pipeline show 0f3c9a` lists them)"),
            "{text}"
        );
    }
}
