//! The steps and the pipeline of the cached digits example, shared by
//! `examples/caching.rs` and `tests/seed_example.rs` so that the test runs
//! exactly the pipeline users run.
//!
//! Include it next to the ML half, at the crate root (the steps refer to
//! `crate::digits`):
//!
//! ```ignore
//! #[path = "common/digits.rs"]
//! mod digits;
//! #[path = "common/digits_pipeline.rs"]
//! mod digits_pipeline;
//! ```
#![allow(dead_code)]

use pipeline::prelude::*;

use crate::digits::{self, Matrix, Svc, TrainError};

/// Seed of the train/test split. Passed to the loader as a parameter rather
/// than read from inside the step, so it is part of the loader's cache key.
pub const SPLIT_SEED: u64 = 42;

/// Loads the 8x8 digits shipped inside smartcore (no download) and splits
/// them 80/20 with a fixed seed; `train_limit` keeps only the first training
/// rows (the tests use it to stay fast in debug builds).
#[step(outputs(x_train, x_test, y_train, y_test))]
pub fn digits_data_loader(
    seed: u64,
    train_limit: Option<usize>,
) -> (Matrix, Matrix, Vec<u32>, Vec<u32>) {
    digits::load_digits(seed, train_limit)
}

/// Scales the pixel values to `[0, 1]`.
#[step(outputs(x_train, x_test))]
pub fn normalizer(x_train: &Matrix, x_test: &Matrix) -> (Matrix, Matrix) {
    digits::normalize(x_train, x_test)
}

/// The same step with caching turned off, for the `disable` mode.
///
/// `enable_cache` is a compile-time step option (as `@step(enable_cache=False)`
/// is in ZenML), and the run-level `Pipeline::enable_cache` switches every
/// step at once, so a pipeline whose normalizer is cached in one run and not
/// in the next needs two step definitions. This one records itself under the
/// same name (`name = "normalizer"`), so logs, the store and the timing table
/// see one `normalizer` step; its body is the same call. The pipeline below
/// picks one of the two with a parameter: branching on parameters while
/// building the graph is allowed.
#[step(name = "normalizer", enable_cache = false, outputs(x_train, x_test))]
pub fn normalizer_uncached(x_train: &Matrix, x_test: &Matrix) -> (Matrix, Matrix) {
    digits::normalize(x_train, x_test)
}

/// Trains the one-vs-rest RBF-kernel SVC; `gamma` and `c` are parameters, so
/// changing either re-runs this step (and what depends on its output).
#[step]
pub fn svc_trainer(
    x_train: &Matrix,
    y_train: &[u32],
    gamma: f64,
    c: f64,
) -> Result<Svc, TrainError> {
    digits::train_svc(x_train, y_train, gamma, c)
}

/// Test-set accuracy, stored as JSON so it can be read without this library, and
/// logged as the metric `accuracy` (shown by `pipeline show` and `pipeline diff`, read
/// back for a sweep with `Store::metric`).
#[step(cacher = Json)]
pub fn evaluator(model: &Svc, x_test: &Matrix, y_test: &[u32]) -> f64 {
    let accuracy = digits::accuracy(model, x_test, y_test);
    if let Ok(ctx) = pipeline::context() {
        // Always finite (a fraction of the test rows): the result can be ignored.
        let _ = ctx.log_metric("accuracy", accuracy);
    }
    accuracy
}

/// Step names in pipeline order, as they appear in logs and run reports.
pub const STEPS: [&str; 4] = [
    "digits_data_loader",
    "normalizer",
    "svc_trainer",
    "evaluator",
];

/// Loader -> normalizer -> trainer -> evaluator; returns the accuracy.
///
/// `cache_normalizer = false` wires in [`normalizer_uncached`] instead of
/// [`normalizer`]: same name, same body, caching off.
#[pipeline]
pub fn digits_pipeline(
    gamma: f64,
    c: f64,
    train_limit: Option<usize>,
    cache_normalizer: bool,
) -> Artifact<f64> {
    let data = digits_data_loader(SPLIT_SEED, train_limit);
    let (x_train, x_test) = if cache_normalizer {
        let scaled = normalizer(&data.x_train, &data.x_test);
        (scaled.x_train, scaled.x_test)
    } else {
        let scaled = normalizer_uncached(&data.x_train, &data.x_test);
        (scaled.x_train, scaled.x_test)
    };
    let model = svc_trainer(&x_train, &data.y_train, gamma, c);
    evaluator(&model, &x_test, &data.y_test)
}
