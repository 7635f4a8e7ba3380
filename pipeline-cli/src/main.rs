//! `pipeline`: look at the runs recorded in a pipeline store, explain why steps ran,
//! compare runs, and draw a run's lineage.
//!
//! ```text
//! pipeline runs [PIPELINE]            newest first
//! pipeline show RUN                   the steps of a run
//! pipeline logs RUN STEP [--stderr]   what a step's worker or Slurm job printed
//! pipeline explain RUN STEP           why a step executed, or which execution it reused
//! pipeline diff RUN_A RUN_B           per step: same or different, and why
//! pipeline lineage RUN --html FILE    a self-contained page drawing the run's DAG
//! pipeline gc [--dry-run]             remove old runs and unreferenced blobs
//! pipeline verify [--repair]          check every blob and sidecar; restore sidecars
//! pipeline store copy --to PATH       copy the store into another (or --to-metadata URL
//!                                     --to-artifacts URL), verified and resumable
//! pipeline ui [--host ADDR] [--port 8765] [--token TOKEN] [--open]
//!                                     a local dashboard: runs, DAGs, steps, artifacts
//! ```
//!
//! The store is `--store PATH`, else `$PIPELINE_HOME`, else `./.pipeline`. Runs are named by
//! id, name, or a unique prefix of either. Errors exit with code 2; `verify` exits with 1
//! when it leaves problems. The viewing commands (`runs`, `show`, `logs`, `explain`,
//! `diff`, `lineage`, `verify`, `ui`) open the store read-only, so they work on read-only
//! media too.

mod commands;
mod html;
mod ui;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Look at the runs recorded in a pipeline store.
#[derive(Parser, Debug)]
#[command(name = "pipeline", version, about, long_about = None)]
struct Cli {
    /// Store directory [default: $PIPELINE_HOME, else ./.pipeline].
    #[arg(long, global = true, value_name = "PATH")]
    store: Option<PathBuf>,

    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List runs, newest first: name, status, start, duration, step counts.
    Runs(commands::runs::Args),
    /// Show a run's steps: status, duration, cache key and output artifacts.
    Show(commands::show::Args),
    /// Print what a step wrote to stdout and stderr, as the store keeps it.
    ///
    /// Kept for steps that ran in a worker process or a Slurm job (the last 16 MiB of each
    /// stream). With --stdout or --stderr, prints that stream alone, as written.
    Logs(commands::logs::Args),
    /// Explain why a step executed (what changed since the earlier execution of the same
    /// call), or which execution a cached step reused.
    Explain(commands::explain::Args),
    /// Compare two runs step by step: same cache key or not, and what changed.
    Diff(commands::diff::Args),
    /// Remove old runs and the artifact blobs nothing references any more.
    ///
    /// Keeps the newest --keep-last runs of each pipeline, pinned runs and running runs;
    /// with --max-size, also drops the oldest unpinned runs until the blobs of the kept
    /// runs fit. Blob files younger than --min-age stay. Safe beside running pipelines at
    /// any --min-age: what they rely on is kept until they end.
    Gc(commands::gc::Args),
    /// Pin a run: garbage collection always keeps it.
    Pin(commands::pin::Args),
    /// Unpin a run.
    Unpin(commands::pin::Args),
    /// Check the store: every blob a run references exists, hashes to its name and has its
    /// sidecar (`<blob>.json`); executions are complete; no run or temporary file is left
    /// by a dead process.
    ///
    /// Reads every blob. Exits with 1 when problems remain. With --repair, restores missing
    /// or damaged sidecars from the metadata; a missing or corrupt blob needs a rerun of the
    /// pipeline that made it.
    Verify(commands::verify::Args),
    /// Manage the store as a whole: `pipeline store copy` copies it into another store
    /// (local, or PostgreSQL + S3) or back, keeping run history and lineage.
    Store(commands::store::Args),
    /// Draw a run's DAG: a self-contained HTML page and/or Graphviz DOT text.
    ///
    /// Without --html or --dot, prints the DOT text (or the graph as JSON with --json).
    Lineage(commands::lineage::Args),
    /// Serve a read-only dashboard of the store in the browser: runs, each run's DAG and
    /// steps (live while it runs), why a step ran, artifacts with previews, run
    /// comparisons.
    ///
    /// Listens on 127.0.0.1:8765 by default. With --host set to any but a loopback
    /// address, every request needs the token (printed with the address when not given
    /// by --token). Every asset is in the binary: no page loads anything from elsewhere.
    Ui(ui::Args),
    /// Print the command that runs one step of a run again on its recorded inputs.
    ///
    /// This command has none of your steps; your own binary replays them when its `main`
    /// calls `pipeline::worker::enter()` first: `<your-binary> --pipeline-replay RUN STEP`
    /// says whether the step's outputs equal the recorded ones.
    Replay(commands::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli) {
        Ok(printed) => {
            let mut out = std::io::stdout().lock();
            let code = ExitCode::from(printed.code);
            match out
                .write_all(printed.text.as_bytes())
                .and_then(|_| out.flush())
            {
                // A closed pipe (`pipeline runs | head`) is not an error.
                Ok(()) => code,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
                Err(e) => {
                    eprintln!("error: cannot write to standard output: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
