//! `pipeline`: look at the runs recorded in a pipeline store, explain why steps ran,
//! compare runs, and draw a run's lineage.
//!
//! ```text
//! pipeline runs [PIPELINE]            newest first
//! pipeline show RUN                   the steps of a run
//! pipeline explain RUN STEP           why a step executed, or which execution it reused
//! pipeline diff RUN_A RUN_B           per step: same or different, and why
//! pipeline lineage RUN --html FILE    a self-contained page drawing the run's DAG
//! ```
//!
//! The store is `--store PATH`, else `$PIPELINE_HOME`, else `./.pipeline`. Runs are named by
//! id, name, or a unique prefix of either. Errors exit with code 2.

mod commands;
mod fmt;
mod lineage;

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
    Runs {
        /// Only the runs of this pipeline.
        pipeline: Option<String>,
        /// Show at most N runs.
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<usize>,
    },
    /// Show a run's steps: status, duration, cache key and output artifacts.
    Show {
        /// Run id, name, or a unique prefix of either.
        run: String,
    },
    /// Explain why a step executed (what changed since its newest earlier execution), or
    /// which execution a cached step reused.
    Explain {
        /// Run id, name, or a unique prefix of either.
        run: String,
        /// Step name within the run.
        step: String,
    },
    /// Compare two runs step by step: same cache key or not, and what changed.
    Diff {
        /// The earlier run (id, name or unique prefix).
        run_a: String,
        /// The later run (id, name or unique prefix).
        run_b: String,
    },
    /// Draw a run's DAG: a self-contained HTML page and/or Graphviz DOT text.
    ///
    /// Without --html or --dot, prints the DOT text (or the graph as JSON with --json).
    Lineage {
        /// Run id, name, or a unique prefix of either.
        run: String,
        /// Write an HTML page (inline SVG, no network access) to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write Graphviz DOT text to FILE (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                // A closed pipe (`pipeline runs | head`) is not an error.
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
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
