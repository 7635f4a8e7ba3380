//! The caching example: the digits + SVC pipeline run twice, in one of three modes, then a
//! table of what each run did and how long it took.
//!
//! ```text
//! cargo run --release --example caching -- --fresh                    # run 2 fully cached
//! cargo run --release --example caching -- --mode invalidate          # new gamma on run 2
//! cargo run --release --example caching -- --mode disable             # normalizer uncached on run 2
//! ```
//!
//! * `default`: the same pipeline twice; run 2 reuses every step.
//! * `invalidate`: run 2 halves the trainer's `gamma`, so the trainer and the evaluator
//!   re-run while the loader and the normalizer stay cached.
//! * `disable`: run 2 turns caching off on the normalizer, which re-runs; it writes the same
//!   bytes as before, so the trainer and the evaluator stay cached (early cutoff).
//!
//! Set `RUST_LOG` (e.g. `RUST_LOG=pipeline=warn`) to change what is logged. While a run
//! works, a progress bar (`pipeline::progress`) is drawn below the log lines when standard
//! error is a terminal; piped or redirected, there is none.

#[path = "common/digits.rs"]
mod digits;
#[path = "common/digits_pipeline.rs"]
mod digits_pipeline;

use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use pipeline::config::StoreConfig;
use pipeline::prelude::*;
use pipeline::progress::ProgressLayer;
use tracing_subscriber::prelude::*;

use digits_pipeline::{digits_pipeline, STEPS};

/// What changes between run 1 and run 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Run the same pipeline twice: run 2 is fully cached.
    Default,
    /// Change the trainer's gamma on run 2: only the trainer and evaluator re-run.
    Invalidate,
    /// Disable caching on the normalizer for run 2: it re-runs, the rest stays cached.
    Disable,
}

/// Digits + SVC pipeline, run twice to show step caching.
#[derive(Parser, Debug)]
#[command(name = "caching")]
struct Cli {
    /// What changes between run 1 and run 2.
    #[arg(long, value_enum, default_value_t = Mode::Default)]
    mode: Mode,

    /// RBF kernel width of the SVC (features are scaled to [0, 1]).
    #[arg(long, default_value_t = digits::DEFAULT_GAMMA, value_parser = positive_f64,
          allow_negative_numbers = true)]
    gamma: f64,

    /// Soft-margin penalty C of the SVC.
    #[arg(long, default_value_t = digits::DEFAULT_C, value_parser = positive_f64,
          allow_negative_numbers = true)]
    c: f64,

    /// Store directory [default: the configured store: $PIPELINE_METADATA and
    /// $PIPELINE_ARTIFACTS, `[store]` in pipeline.toml, $PIPELINE_HOME, else ./.pipeline].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,

    /// Start from an empty store: delete the store's database and artifacts first.
    #[arg(long)]
    fresh: bool,

    /// Train on the first N training rows only (faster, e.g. for tests).
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    train_limit: Option<usize>,
}

/// Accepts a finite number above zero.
fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a finite number greater than 0, got {s}"))
    }
}

/// Accepts a whole number above zero.
fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("must be a whole number greater than 0, got {s}")),
    }
}

fn main() -> ExitCode {
    // A step run elsewhere (PIPELINE_EXECUTOR=processes or slurm) runs this binary as its
    // worker: this line runs that one step and exits; otherwise it returns at once.
    pipeline::worker::enter();
    let cli = Cli::parse();
    init_logging();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the DESIGN §6 lines (`Step `x` has started.`, ...) without timestamps or targets,
/// and draws the progress bar below them when standard error is a terminal. `RUST_LOG`
/// overrides the default `info` filter of the log lines (the bar has its own filter).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let progress = ProgressLayer::new();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                // Log lines go above the bar, which is drawn again below each one.
                .with_writer(progress.writer(io::stdout))
                .with_target(false)
                .without_time()
                .with_ansi(io::stdout().is_terminal())
                .with_filter(filter),
        )
        .with(progress.filtered())
        .init();
}

/// One run, for the table.
struct Outcome {
    run: Run<Artifact<f64>>,
    accuracy: f64,
    /// Artifact blobs read from the store while the run ran (before loading the accuracy).
    blob_reads: u64,
    /// Wall-clock time of the `run()` call: the run's own duration (the log line) plus
    /// closing its record in the store.
    wall: Duration,
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    // `--store` wins; else the environment and `pipeline.toml` name the store
    // (`PIPELINE_METADATA`, `PIPELINE_ARTIFACTS`, `PIPELINE_HOME`, else ./.pipeline).
    let config = match &cli.store {
        Some(path) => StoreConfig::local(path),
        None => StoreConfig::from_env()?,
    };
    if cli.fresh {
        let Some(path) = config.local_dir() else {
            return Err(format!(
                "--fresh clears only a local store; this one is configured as {} + {}",
                config.metadata(),
                config.artifacts()
            )
            .into());
        };
        clear_store(path)?;
    }
    // Opened once and shared by both runs, so neither run's time includes opening it.
    let store = Store::connect(&config)?;

    let gamma2 = match cli.mode {
        Mode::Invalidate => cli.gamma / 2.0,
        _ => cli.gamma,
    };
    let build = |gamma: f64, cache_normalizer: bool| {
        digits_pipeline(gamma, cli.c, cli.train_limit, cache_normalizer).store(store.clone())
    };
    let (first, second) = match cli.mode {
        Mode::Default => (build(cli.gamma, true), build(cli.gamma, true)),
        Mode::Invalidate => (build(cli.gamma, true), build(gamma2, true)),
        Mode::Disable => (build(cli.gamma, true), build(cli.gamma, false)),
    };

    println!(
        "Mode `{}`: {}",
        mode_name(cli.mode),
        match cli.mode {
            Mode::Default => "the same pipeline twice.",
            Mode::Invalidate => "run 2 changes the trainer's gamma.",
            Mode::Disable => "run 2 disables caching on the normalizer.",
        }
    );
    match config.local_dir() {
        Some(path) => println!("Store: {}", path.display()),
        None => println!("Store: {} + {}", config.metadata(), config.artifacts()),
    }
    println!();
    println!("Run 1: gamma = {}, c = {}", cli.gamma, cli.c);
    let one = execute(&first, &store)?;
    println!();
    match cli.mode {
        Mode::Default => println!("Run 2: unchanged"),
        Mode::Invalidate => println!("Run 2: gamma = {gamma2} (was {})", cli.gamma),
        Mode::Disable => println!("Run 2: normalizer with enable_cache = false"),
    }
    let two = execute(&second, &store)?;
    println!();

    print_table(&one, &two);
    println!();
    if one
        .run
        .steps()
        .iter()
        .any(|s| s.status() == StepStatus::Cached)
    {
        println!(
            "Note: run 1 reused steps cached by an earlier invocation; pass --fresh to start \
             from an empty store."
        );
    }
    if cli.mode == Mode::Disable {
        print_early_cutoff(&store, &one, &two)?;
    }
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Default => "default",
        Mode::Invalidate => "invalidate",
        Mode::Disable => "disable",
    }
}

fn execute(p: &Pipeline<Artifact<f64>>, store: &Store) -> pipeline::Result<Outcome> {
    let before = store.stats().blob_reads;
    let clock = Instant::now();
    let run = p.run()?;
    let wall = clock.elapsed();
    let blob_reads = store.stats().blob_reads - before;
    let accuracy = run.output().load()?;
    Ok(Outcome {
        run,
        accuracy,
        blob_reads,
        wall,
    })
}

/// Deletes the store at `path` so the next open starts empty. Only the files a store
/// consists of are removed, and only when `path` is a store (holds `metadata.sqlite`); a
/// missing or empty directory is already fresh; anything else is refused.
fn clear_store(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect store {shown}: {e}")),
    };
    if !meta.is_dir() {
        return Err(format!(
            "--fresh: {shown} is not a directory; pass --store with a store directory"
        ));
    }
    if !path.join("metadata.sqlite").is_file() {
        let empty = fs::read_dir(path)
            .map_err(|e| format!("cannot list {shown}: {e}"))?
            .next()
            .is_none();
        return if empty {
            Ok(())
        } else {
            Err(format!(
                "--fresh: refusing to delete {shown}: it is not a pipeline store (it has no \
                 metadata.sqlite); pass --store with a store directory"
            ))
        };
    }
    for file in [
        "metadata.sqlite",
        "metadata.sqlite-wal",
        "metadata.sqlite-shm",
        "metadata.sqlite-journal",
    ] {
        match fs::remove_file(path.join(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("--fresh: cannot delete {}: {e}", file)),
        }
    }
    match fs::remove_dir_all(path.join("artifacts")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--fresh: cannot delete {shown}/artifacts: {e}")),
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `before / after`, or `-` when either time is zero.
fn speedup(before: Duration, after: Duration) -> String {
    let (before, after) = (before.as_secs_f64(), after.as_secs_f64());
    if before <= 0.0 || after <= 0.0 {
        return "-".into();
    }
    let ratio = before / after;
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else if ratio >= 1.0 {
        format!("{ratio:.1}x")
    } else {
        format!("{ratio:.2}x")
    }
}

fn print_table(one: &Outcome, two: &Outcome) {
    println!(
        "{:<20} {:<9} {:>12}   {:<9} {:>12}   {:>8}   run 2 reason",
        "step", "run 1", "time", "run 2", "time", "speedup"
    );
    println!("{}", "-".repeat(100));
    for name in STEPS {
        let (Some(a), Some(b)) = (one.run.step(name), two.run.step(name)) else {
            continue;
        };
        println!(
            "{:<20} {:<9} {:>12}   {:<9} {:>12}   {:>8}   {}",
            name,
            a.status().to_string(),
            millis(a.duration()),
            b.status().to_string(),
            millis(b.duration()),
            speedup(a.duration(), b.duration()),
            b.reason()
        );
    }
    println!("{}", "-".repeat(100));
    println!(
        "{:<20} {:<9} {:>12}   {:<9} {:>12}   {:>8}",
        "pipeline total",
        "",
        millis(one.wall),
        "",
        millis(two.wall),
        speedup(one.wall, two.wall)
    );
    println!("(Totals: wall clock of each `run()` call. A cached step's body does not run: its");
    println!(" time is its cache-key computation and lookup.)");
    println!();
    for (i, o) in [one, two].into_iter().enumerate() {
        println!(
            "Run {} `{}`: accuracy {:.4}, {} artifact blob(s) read while running",
            i + 1,
            o.run.name(),
            o.accuracy,
            o.blob_reads
        );
    }
}

/// In `disable` mode: says whether the trainer and evaluator stayed cached because the
/// re-run normalizer wrote the same bytes, comparing the stored content hashes.
fn print_early_cutoff(
    store: &Store,
    one: &Outcome,
    two: &Outcome,
) -> Result<(), Box<dyn std::error::Error>> {
    let status = |o: &Outcome, step: &str| o.run.step(step).map(|s| s.status());
    let hash = |o: &Outcome| store.artifact(o.run.id(), "normalizer", "x_train");
    let (h1, h2) = (hash(one)?.content_hash(), hash(two)?.content_hash());
    let downstream_cached = ["svc_trainer", "evaluator"]
        .iter()
        .all(|s| status(two, s) == Some(StepStatus::Cached));
    if status(two, "normalizer") == Some(StepStatus::Executed) && downstream_cached && h1 == h2 {
        println!(
            "Early cutoff: `normalizer` re-ran but wrote the same bytes (x_train {}), so \
             `svc_trainer` and `evaluator` stayed cached; ZenML would re-run them.",
            &h2.to_string()[..16]
        );
    } else {
        println!(
            "No early cutoff: normalizer output {} -> {}, trainer {:?}, evaluator {:?}.",
            &h1.to_string()[..16],
            &h2.to_string()[..16],
            status(two, "svc_trainer"),
            status(two, "evaluator")
        );
    }
    Ok(())
}
