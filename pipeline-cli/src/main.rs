//! `pipeline`: look at the runs recorded in a pipeline store, explain why steps ran,
//! compare runs, and draw a run's lineage.
//!
//! ```text
//! pipeline runs [PIPELINE]            newest first
//! pipeline show RUN                   the steps of a run
//! pipeline explain RUN STEP           why a step executed, or which execution it reused
//! pipeline diff RUN_A RUN_B           per step: same or different, and why
//! pipeline lineage RUN --html FILE    a self-contained page drawing the run's DAG
//! pipeline gc [--dry-run]             remove old runs and unreferenced blobs
//! pipeline verify [--repair]          check every blob and sidecar; restore sidecars
//! ```
//!
//! The store is `--store PATH`, else `$PIPELINE_HOME`, else `./.pipeline`. Runs are named by
//! id, name, or a unique prefix of either. Errors exit with code 2; `verify` exits with 1
//! when it leaves problems. The viewing commands (`runs`, `show`, `explain`, `diff`,
//! `lineage`, `verify`) open the store read-only, so they work on read-only media too.

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
    /// Explain why a step executed (what changed since the earlier execution of the same
    /// call), or which execution a cached step reused.
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
    /// Remove old runs and the artifact blobs nothing references any more.
    ///
    /// Keeps the newest --keep-last runs of each pipeline, pinned runs and running runs;
    /// with --max-size, also drops the oldest unpinned runs until the blobs of the kept
    /// runs fit. Blob files younger than --min-age stay. Safe beside running pipelines at
    /// any --min-age: what they rely on is kept until they end.
    Gc {
        /// Newest runs kept per pipeline.
        #[arg(long, value_name = "N", default_value_t = 10)]
        keep_last: usize,
        /// Size budget for the kept runs' blobs, e.g. `500M`, `2GiB`, `1048576`.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Leave unreferenced blob files younger than this, e.g. `10m`, `1h`, `0s`.
        #[arg(long, value_name = "AGE", default_value = "10m", value_parser = parse_age)]
        min_age: std::time::Duration,
        /// Print what would be removed and how many bytes it frees, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Pin a run: garbage collection always keeps it.
    Pin {
        /// Run id, name, or a unique prefix of either.
        run: String,
    },
    /// Unpin a run.
    Unpin {
        /// Run id, name, or a unique prefix of either.
        run: String,
    },
    /// Check the store: every blob a run references exists, hashes to its name and has its
    /// sidecar (`<blob>.json`); executions are complete; no run or temporary file is left
    /// by a dead process.
    ///
    /// Reads every blob. Exits with 1 when problems remain. With --repair, restores missing
    /// or damaged sidecars from the metadata; a missing or corrupt blob needs a rerun of the
    /// pipeline that made it.
    Verify {
        /// Restore what the metadata alone can restore (sidecars).
        #[arg(long)]
        repair: bool,
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

/// `1048576`, `512K`, `500M`, `2G`, `2GiB`, `1.5gb` (units are powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 500M, 2GiB, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit `{other}` (use K, M, G or T)")),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `30s`, `10m`, `2h`, `1d`, or plain seconds.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not an age (e.g. 30s, 10m, 2h)"))?;
    let secs = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown age unit `{other}` (use s, m, h or d)")),
    };
    std::time::Duration::try_from_secs_f64(value * secs).map_err(|e| e.to_string())
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
