//! k-fold cross-validation of the digits SVC with a typed, per-item cached map.
//!
//! ```text
//! cargo run --release --example cross_validation                 # k = 5, two runs
//! cargo run --release --example cross_validation -- --k 10 --gamma 0.1
//! cargo run --release --example cross_validation -- --store DIR  # keep the store
//! ```
//!
//! `make_folds` returns a `Vec<Fold>` whose length is known only when it has run; the
//! pipeline maps `train_fold` and `score_fold` over it (`folds.map(|fold| ..)`), so each
//! fold is trained and scored as its own cached step (`train_fold[0]`, `train_fold[1]`,
//! ...), in parallel, and `mean` gathers the scores in fold order. The example runs the
//! pipeline twice and prints a per-fold table: the second run executes nothing.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/digits.rs"]
mod digits;
#[path = "common/digits_pipeline.rs"]
mod digits_pipeline;
#[path = "common/folds.rs"]
mod folds;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use pipeline::prelude::*;

use digits_pipeline::{digits_data_loader, normalizer, SPLIT_SEED};
use folds::{make_folds, mean, score_fold, train_fold};

/// Loader -> normalizer -> folds -> (train, score) per fold -> mean. Returns the per-fold
/// accuracies (in fold order) and their mean.
#[pipeline]
pub fn cross_validation(
    gamma: f64,
    c: f64,
    k: usize,
    train_limit: Option<usize>,
) -> (Artifact<Vec<f64>>, Artifact<f64>) {
    let data = digits_data_loader(SPLIT_SEED, train_limit);
    let scaled = normalizer(&data.x_train, &data.x_test);
    let folds = make_folds(&scaled.x_train, &data.y_train, k);
    let scores = folds.map(|fold| {
        let model = train_fold(fold, gamma, c);
        score_fold(&model, fold)
    });
    let mean = mean(&scores);
    (scores, mean)
}

/// k-fold cross-validation of the digits SVC, run twice to show per-fold caching.
#[derive(Parser, Debug)]
#[command(name = "cross_validation")]
struct Cli {
    /// Number of folds.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// RBF kernel width of the SVC.
    #[arg(long, default_value_t = digits::DEFAULT_GAMMA)]
    gamma: f64,
    /// Regularization of the SVC.
    #[arg(long, default_value_t = digits::DEFAULT_C)]
    c: f64,
    /// Keep only the first N training rows (faster).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Store folder (default: a temporary one, removed at the end).
    #[arg(long)]
    store: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    pipeline::worker::enter();
    cli::exit_code(run(&Cli::parse()))
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let (store, _temp) = cli::open_store(cli.store.as_deref())?;
    for attempt in 1..=2 {
        let clock = Instant::now();
        let run = cross_validation(cli.gamma, cli.c, cli.k, cli.train_limit)
            .store(store.clone())
            .run()?;
        let elapsed = clock.elapsed();
        let (scores, mean) = run.output();
        let scores = scores.load()?;
        println!();
        println!("run {attempt} ({}), {:.2?}", run.name(), elapsed);
        println!(
            "{:>5}  {:>9}  {:<10} {:<10}",
            "fold", "accuracy", "train", "score"
        );
        for (i, score) in scores.iter().enumerate() {
            let status = |call: &str| {
                run.step(&format!("{call}[{i}]"))
                    .map_or("-".to_string(), |s| s.status().to_string())
            };
            println!(
                "{i:>5}  {score:>9.4}  {:<10} {:<10}",
                status("train_fold"),
                status("score_fold")
            );
        }
        println!("mean accuracy: {:.4}", mean.load()?);
        let executed = run
            .steps()
            .iter()
            .filter(|s| s.status() == StepStatus::Executed)
            .count();
        println!(
            "steps: {} executed, {} cached (of {})",
            executed,
            run.steps()
                .iter()
                .filter(|s| s.status() == StepStatus::Cached)
                .count(),
            run.steps().len()
        );
    }
    Ok(())
}
