//! A grid search with cross-validation (scikit-learn's `GridSearchCV`) of the digits SVC,
//! written as a `map` inside a `map`: over the grid of `gamma` values, and per value over
//! the folds.
//!
//! ```text
//! cargo run --release --example grid_search                          # 3 gammas x 4 folds
//! cargo run --release --example grid_search -- --gammas 0.01,0.02 --k 3
//! cargo run --release --example grid_search -- --store DIR           # keep the store
//! ```
//!
//! Both lists are known only when the run has them (`gamma_grid` and `make_folds` are
//! steps), so each (gamma, fold) pair is trained and scored as its own cached step,
//! `train_at[g][f]`. The example runs three times: the grid, the same grid again (nothing
//! executes), and the grid with one more gamma at the front (only that gamma's folds are
//! trained; the other gammas' scores come from the cache, though their positions moved).

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

use digits::{Svc, TrainError};
use digits_pipeline::{digits_data_loader, normalizer, SPLIT_SEED};
use folds::{make_folds, mean, score_fold, Fold};

/// The grid of `gamma` values, as a list a map can go over.
#[step]
fn gamma_grid(gammas: Vec<f64>) -> Vec<f64> {
    gammas
}

/// Trains the SVC on one fold's training rows with one `gamma` of the grid (an item of
/// the outer map, so an artifact here, not a parameter).
#[step]
fn train_at(fold: &Fold, gamma: &f64, c: f64) -> Result<Svc, TrainError> {
    digits::train_svc(&fold.x_train, &fold.y_train, *gamma, c)
}

/// The best gamma: the one with the highest mean accuracy (the first of equals).
#[step(cacher = Json)]
fn best_gamma(gammas: &[f64], means: &[f64]) -> Result<f64, String> {
    gammas
        .iter()
        .zip(means)
        .fold(None, |best: Option<(f64, f64)>, (&g, &m)| match best {
            Some((_, b)) if b >= m => best,
            _ => Some((g, m)),
        })
        .map(|(g, _)| g)
        .ok_or_else(|| "the grid is empty".to_string())
}

/// Loader -> normalizer -> folds; per gamma of the grid, per fold: train and score; per
/// gamma: the mean over folds; then the best gamma. Returns the per-gamma mean accuracies
/// (in grid order) and the best gamma.
#[pipeline]
fn grid_search(
    gammas: Vec<f64>,
    c: f64,
    k: usize,
    train_limit: Option<usize>,
) -> (Artifact<Vec<f64>>, Artifact<f64>) {
    let data = digits_data_loader(SPLIT_SEED, train_limit);
    let scaled = normalizer(&data.x_train, &data.x_test);
    let folds = make_folds(&scaled.x_train, &data.y_train, k);
    let grid = gamma_grid(gammas);
    let means = grid.map(|gamma| {
        // `folds` comes from outside both closures, `gamma` from the outer one.
        let scores = folds.map(|fold| {
            let model = train_at(fold, gamma, c);
            score_fold(&model, fold)
        }); // Artifact<Vec<f64>>: this gamma's score per fold
        mean(&scores)
    }); // Artifact<Vec<f64>>: the mean per gamma
    let best = best_gamma(&grid, &means);
    (means, best)
}

/// Grid search with cross-validation of the digits SVC, run three times to show per-item
/// caching of a map inside a map.
#[derive(Parser, Debug)]
#[command(name = "grid_search")]
struct Cli {
    /// The gamma values of the grid, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 0.4, 1.6])]
    gammas: Vec<f64>,
    /// The gamma the third run puts in front of the grid.
    #[arg(long, default_value_t = 0.025)]
    added: f64,
    /// Number of folds.
    #[arg(long, default_value_t = 4)]
    k: usize,
    /// Regularization of the SVC.
    #[arg(long, default_value_t = digits::DEFAULT_C)]
    c: f64,
    /// Keep only the first N training rows (faster).
    #[arg(long, default_value_t = 600)]
    train_limit: usize,
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
    let mut wider = vec![cli.added];
    wider.extend(&cli.gammas);
    for (attempt, gammas) in [&cli.gammas, &cli.gammas, &wider].into_iter().enumerate() {
        let clock = Instant::now();
        let run = grid_search(gammas.clone(), cli.c, cli.k, Some(cli.train_limit))
            .store(store.clone())
            .run()?;
        let elapsed = clock.elapsed();
        let (means, best) = run.output();
        println!();
        println!("run {} ({}), {:.2?}", attempt + 1, run.name(), elapsed);
        println!("{:>8}  {:>13}  trained", "gamma", "mean accuracy");
        for (g, (gamma, mean)) in gammas.iter().zip(means.load()?).enumerate() {
            // This gamma's per-fold trainings: `train_at[g][0]`, `train_at[g][1]`, ...
            let trained = (0..cli.k)
                .filter(|f| {
                    run.step(&format!("train_at[{g}][{f}]"))
                        .is_some_and(|s| s.status() == StepStatus::Executed)
                })
                .count();
            println!("{gamma:>8}  {mean:>13.4}  {trained} of {} folds", cli.k);
        }
        println!("best gamma: {}", best.load()?);
        let count = |status| run.steps().iter().filter(|s| s.status() == status).count();
        println!(
            "calls: {} executed, {} cached (of {}, with the built-in splits and gathers)",
            count(StepStatus::Executed),
            count(StepStatus::Cached),
            run.steps().len()
        );
    }
    Ok(())
}
