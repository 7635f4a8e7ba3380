//! What the digits examples' `main`s share: the store they run on, and how they report
//! an error. Include it at the crate root with `#[path = "common/cli.rs"] mod cli;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pipeline::Store;

/// The store at `dir`, or in a temporary folder (removed when the returned guard drops);
/// prints where it is.
///
/// # Errors
///
/// When the folder cannot be made or is not a store (`Store::open`).
pub fn open_store(
    dir: Option<&Path>,
) -> Result<(Store, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    let (dir, temp): (PathBuf, _) = match dir {
        Some(dir) => (dir.to_path_buf(), None),
        None => {
            let temp = tempfile::tempdir()?;
            (temp.path().join("store"), Some(temp))
        }
    };
    let store = Store::open(&dir)?;
    println!("store: {}", dir.display());
    Ok((store, temp))
}

/// The exit code of `result`, printing an error with its chain of causes.
pub fn exit_code(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
