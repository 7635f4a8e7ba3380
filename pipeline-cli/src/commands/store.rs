//! `pipeline store copy`: copy the configured store (the source) into another one.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use pipeline::config::{MetadataLocation, StoreConfig};
use pipeline::{CopyEvent, CopyOptions, Store, StoreOptions};

use super::{CliResult, Ctx, Printed};

/// Arguments of `pipeline store`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The subcommands of `pipeline store`.
#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy the store (the one `--store`, PIPELINE_HOME, PIPELINE_METADATA/ARTIFACTS or
    /// pipeline.toml names) into another one, keeping run history and lineage.
    ///
    /// Copies run by run: each run's blobs first, read from the source and verified as
    /// they stream into the target, then its rows in one transaction. Runs and blobs the
    /// target holds already are checked and skipped, so running the same copy again
    /// finishes one that was interrupted. Runs still running are left out. Exits with 1
    /// when a run could not be copied.
    Copy(CopyArgs),
}

/// Arguments of `pipeline store copy`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "to_metadata"])))]
pub struct CopyArgs {
    /// A local store folder to copy into (created if missing).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["to_metadata", "to_artifacts"])]
    pub to: Option<PathBuf>,
    /// The target's metadata: `postgres://USER@HOST:PORT/DB` or `sqlite:PATH`.
    #[arg(long, value_name = "URL", requires = "to_artifacts")]
    pub to_metadata: Option<String>,
    /// The target's artifact bytes: `s3://BUCKET/PREFIX` or a folder.
    #[arg(long, value_name = "URL", requires = "to_metadata")]
    pub to_artifacts: Option<String>,
}

pub fn exec(ctx: &Ctx<'_>, args: &Args) -> CliResult<Printed> {
    match &args.command {
        StoreCommand::Copy(copy) => exec_copy(ctx, copy),
    }
}

fn exec_copy(ctx: &Ctx<'_>, args: &CopyArgs) -> CliResult<Printed> {
    let config = match (&args.to, &args.to_metadata, &args.to_artifacts) {
        (Some(path), _, _) => StoreConfig::local(path),
        (None, Some(metadata), Some(artifacts)) => {
            StoreConfig::new(metadata, Some(artifacts)).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(
                "name the target with --to PATH, or --to-metadata URL and --to-artifacts URL"
                    .into(),
            )
        }
    };
    // A remote target keeps its read cache in a folder of its own, not in the source's.
    let scratch = match config.metadata() {
        MetadataLocation::Sqlite { .. } => None,
        _ => Some(std::env::temp_dir().join(format!("pipeline-copy-{}", std::process::id()))),
    };
    let options = StoreOptions {
        local_dir: scratch.clone(),
        ..StoreOptions::default()
    };
    let target = Store::connect_with(&config, options).map_err(|e| e.to_string())?;
    let mut err = std::io::stderr().lock();
    let header = format!("copying {} into {}", ctx.path.display(), describe(&config));
    let mut started = false;
    let mut progress = |event: &CopyEvent<'_>| {
        if !started {
            // Once the copy has begun (a refusal is the only thing printed otherwise).
            let _ = writeln!(err, "{header}");
            started = true;
        }
        let line = match event {
            CopyEvent::RunStarted { run, index, total } => {
                format!("[{index}/{total}] run `{}` ({})", run.name, run.id)
            }
            CopyEvent::RunCopied { .. } => "  copied".to_string(),
            CopyEvent::RunPresent { .. } => "  already there".to_string(),
            CopyEvent::RunRunning { run } => {
                format!("run `{}` ({}) is still running: left out", run.name, run.id)
            }
            CopyEvent::RunFailed { run, error } => {
                format!("run `{}` ({}) not copied: {error}", run.name, run.id)
            }
            _ => return ControlFlow::Continue(()),
        };
        let _ = writeln!(err, "{line}");
        ControlFlow::Continue(())
    };
    let outcome = ctx.store.copy_to(
        &target,
        CopyOptions {
            progress: Some(&mut progress),
        },
    );
    drop(target);
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    let report = outcome.map_err(|e| ctx.error(e))?;
    let text = if ctx.json {
        super::to_json(&serde_json::json!({
            "runs_copied": report.runs_copied,
            "runs_present": report.runs_present,
            "runs_running": report.runs_running,
            "blobs_copied": report.blobs_copied,
            "bytes_copied": report.bytes_copied,
            "blobs_present": report.blobs_present,
            "failed": report
                .failed
                .iter()
                .map(|(run, error)| serde_json::json!({"run": run, "error": error.to_string()}))
                .collect::<Vec<_>>(),
            "interrupted": report.interrupted,
        }))
    } else {
        format!("{report}\n")
    };
    Ok(Printed {
        text,
        code: u8::from(!report.is_complete()),
    })
}

/// The target as messages name it (a URL's password shown as `***`).
fn describe(config: &StoreConfig) -> String {
    match config.metadata() {
        MetadataLocation::Sqlite { path } => path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| path.display().to_string()),
        meta => format!("{meta} + {}", config.artifacts()),
    }
}
