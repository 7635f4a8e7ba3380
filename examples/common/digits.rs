//! Machine-learning half of the cached digits example: the classic 8x8
//! handwritten-digits data set (shipped inside `smartcore`, so nothing is
//! downloaded), a seeded train/test split, feature scaling and a
//! multi-class RBF-kernel support vector classifier.
//!
//! The classifier is trained here instead of wrapping `smartcore::svm::svc`,
//! because smartcore 0.4's models cannot serve as cached artifacts: the
//! binary `SVC` keeps its fields private and skips its parameters (and so its
//! kernel) when serialized, so a deserialized model panics in `predict`, and
//! `MultiClassSVC` is not serializable at all and breaks vote ties in
//! `HashMap` order. The solver below is LIBSVM's SMO with second-order
//! working-set selection, run one-vs-rest on a kernel matrix shared by all
//! classes. It is plain sequential `f64` code without randomness, so equal
//! inputs give bit-equal models and equal serialized bytes, which is what
//! the pipeline cache keys on.
//!
//! Examples and tests include this file with `#[path = "..."] mod digits;`
//! and each uses only part of it, hence the module-wide `dead_code` allowance.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default RBF kernel width for features scaled to `[0, 1]` by [`normalize`].
///
/// It matches scikit-learn's `gamma = 0.001` on raw `0..=16` pixels, since
/// dividing the features by 16 multiplies squared distances by 1/256
/// (0.001 * 256 = 0.256).
pub const DEFAULT_GAMMA: f64 = 0.256;

/// Default soft-margin penalty `C` (scikit-learn's default).
pub const DEFAULT_C: f64 = 1.0;

/// Largest pixel value in the digits data set (pixels are `0..=16`).
const PIXEL_MAX: f64 = 16.0;

/// Dense row-major matrix of `f64`, one sample per row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows (samples).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Builds a matrix from row-major `data`.
    ///
    /// # Panics
    /// If `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data length mismatch");
        Self { rows, cols, data }
    }

    /// Returns row `i` as a slice.
    ///
    /// # Panics
    /// If `i >= self.rows`.
    pub fn row(&self, i: usize) -> &[f64] {
        assert!(i < self.rows, "row {i} out of range ({} rows)", self.rows);
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Gathers the given rows, in the given order, into a new matrix.
    fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix::new(indices.len(), self.cols, data)
    }
}

/// Loads the 1797 digits, shuffles them with a generator seeded by `seed` and
/// splits them 80/20 into `(x_train, x_test, y_train, y_test)` (1437 and 360
/// rows; features are raw pixel values `0..=16`, labels `0..=9`).
///
/// `train_limit: Some(n)` keeps only the first `n` training rows, for fast
/// tests; the test split is the same whatever the limit.
pub fn load_digits(seed: u64, train_limit: Option<usize>) -> (Matrix, Matrix, Vec<u32>, Vec<u32>) {
    let dataset = smartcore::dataset::digits::load_dataset();
    let n = dataset.num_samples;
    // f32 -> f64 is exact, and pixels and labels are small integers.
    let all = Matrix::new(
        n,
        dataset.num_features,
        dataset.data.iter().map(|&v| f64::from(v)).collect(),
    );
    let labels: Vec<u32> = dataset.target.iter().map(|&t| t as u32).collect();

    // Fisher-Yates with our own generator: the split depends on the seed only,
    // never on a crate's RNG algorithm that could change between versions.
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }

    // Same sizes as scikit-learn's `train_test_split(test_size=0.2)`.
    let n_train = n - n.div_ceil(5);
    let kept = train_limit.map_or(n_train, |limit| limit.min(n_train));
    let (train, test) = (&order[..kept], &order[n_train..]);
    let pick = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<u32>>();
    (
        all.select_rows(train),
        all.select_rows(test),
        pick(train),
        pick(test),
    )
}

/// Scales pixel values from `0..=16` to `[0, 1]` by dividing by 16.
///
/// A fixed divisor rather than min-max statistics of the training matrix:
/// the pixel range is known, the test rows get exactly the same transform,
/// and columns that are constant in the training set (the digits have
/// several always-blank border pixels) need no division-by-zero special
/// case. Dividing by a power of two is also exact in binary.
pub fn normalize(x_train: &Matrix, x_test: &Matrix) -> (Matrix, Matrix) {
    // A struct literal, not `Matrix::new`: a malformed input stays malformed
    // and is reported by `train_svc` instead of panicking here.
    let scale = |m: &Matrix| Matrix {
        rows: m.rows,
        cols: m.cols,
        data: m.data.iter().map(|v| v / PIXEL_MAX).collect(),
    };
    (scale(x_train), scale(x_test))
}

/// Error returned by [`train_svc`] for unusable input.
#[derive(Debug)]
pub struct TrainError(String);

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot train SVC: {}", self.0)
    }
}

impl std::error::Error for TrainError {}

/// Trained multi-class RBF-kernel support vector classifier (one-vs-rest).
///
/// Holds everything prediction needs, so it round-trips through any serde
/// format and predicts identically afterwards.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Svc {
    /// RBF width: `k(a, b) = exp(-gamma * |a - b|^2)`.
    gamma: f64,
    /// Soft-margin penalty the model was trained with (kept for reporting).
    c: f64,
    /// Training rows that are support vectors of at least one class; shared
    /// so each kernel value is computed once per predicted row.
    support_vectors: Matrix,
    /// One binary "this class vs the rest" machine per class, in ascending
    /// class order.
    machines: Vec<Machine>,
}

/// One-vs-rest decision function `f(x) = sum_s coef[s] * k(sv_s, x) + intercept`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Machine {
    /// Class this machine scores against all others.
    class: u32,
    /// `alpha * y` per shared support vector (0 where not a support vector here).
    coef: Vec<f64>,
    /// Bias term (LIBSVM's `-rho`).
    intercept: f64,
}

impl Svc {
    /// Predicts a label for every row of `x`: the class whose one-vs-rest
    /// decision value is largest (the lowest class wins exact ties).
    ///
    /// # Panics
    /// If `x` has a different number of columns than the training data.
    pub fn predict(&self, x: &Matrix) -> Vec<u32> {
        (0..x.rows)
            .map(|i| {
                let scores = self.decision_values(x.row(i));
                let mut best = 0;
                for (k, &score) in scores.iter().enumerate() {
                    if score > scores[best] {
                        best = k;
                    }
                }
                self.machines[best].class
            })
            .collect()
    }

    /// One-vs-rest decision values of one sample, in [`Svc::classes`] order.
    ///
    /// # Panics
    /// If `sample` has a different length than the training rows.
    pub fn decision_values(&self, sample: &[f64]) -> Vec<f64> {
        let svs = &self.support_vectors;
        assert_eq!(
            sample.len(),
            svs.cols,
            "sample has the wrong number of features"
        );
        let kernel: Vec<f64> = (0..svs.rows)
            .map(|s| rbf(self.gamma, sample, svs.row(s)))
            .collect();
        self.machines
            .iter()
            .map(|m| m.coef.iter().zip(&kernel).map(|(a, k)| a * k).sum::<f64>() + m.intercept)
            .collect()
    }

    /// Class labels the model can predict, ascending.
    pub fn classes(&self) -> Vec<u32> {
        self.machines.iter().map(|m| m.class).collect()
    }

    /// Number of distinct training rows kept as support vectors.
    pub fn n_support_vectors(&self) -> usize {
        self.support_vectors.rows
    }

    /// RBF kernel width the model was trained with.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Soft-margin penalty the model was trained with.
    pub fn c(&self) -> f64 {
        self.c
    }
}

/// Trains a one-vs-rest RBF-kernel SVC on the rows of `x` labelled by `y`.
///
/// Deterministic: the same inputs always give the same (bit-equal) model.
/// All numbers the model computes, and `gamma` and `c`, are rounded to at
/// most 15 significant digits so that the model also survives a `serde_json`
/// round trip bit for bit (with features such as [`normalize`]'s multiples
/// of 1/16, which JSON carries exactly).
/// Memory is `x.rows^2` `f64`s for the kernel matrix (16 MiB for the full
/// digits training split). See [`DEFAULT_GAMMA`] and [`DEFAULT_C`].
///
/// # Errors
/// If `x` is empty or malformed, `y` does not have one label per row, there
/// are fewer than two classes, a feature is not finite, or `gamma` or `c` is
/// not a finite positive number.
pub fn train_svc(x: &Matrix, y: &[u32], gamma: f64, c: f64) -> Result<Svc, TrainError> {
    let fail = |msg: String| Err(TrainError(msg));
    if !(gamma.is_finite() && gamma > 0.0) {
        return fail(format!("gamma must be finite and > 0, got {gamma}"));
    }
    if !(c.is_finite() && c > 0.0) {
        return fail(format!("c must be finite and > 0, got {c}"));
    }
    if x.rows == 0 || x.cols == 0 {
        return fail(format!("empty training data ({} x {})", x.rows, x.cols));
    }
    if x.data.len() != x.rows * x.cols {
        return fail(format!(
            "matrix holds {} values, expected {} x {}",
            x.data.len(),
            x.rows,
            x.cols
        ));
    }
    if y.len() != x.rows {
        return fail(format!("{} labels for {} rows", y.len(), x.rows));
    }
    if x.data.iter().any(|v| !v.is_finite()) {
        return fail("features must be finite".to_string());
    }
    // Rounded like every number the model stores, see `json_exact`.
    let (gamma, c) = (json_exact(gamma), json_exact(c));
    let mut classes = y.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        return fail(format!("need at least two classes, got {}", classes.len()));
    }

    let n = x.rows;
    // The kernel does not depend on the labels, so all classes share it.
    let mut kernel = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let k = rbf(gamma, x.row(i), x.row(j));
            kernel[i * n + j] = k;
            kernel[j * n + i] = k;
        }
    }

    let solutions: Vec<(Vec<f64>, Vec<f64>, f64)> = classes
        .iter()
        .map(|&class| {
            let signs: Vec<f64> = y
                .iter()
                .map(|&l| if l == class { 1.0 } else { -1.0 })
                .collect();
            let (alpha, rho) = solve_binary(&kernel, &signs, c);
            (alpha, signs, rho)
        })
        .collect();

    // Keep a training row once if any class uses it as a support vector.
    let sv_rows: Vec<usize> = (0..n)
        .filter(|&i| solutions.iter().any(|(alpha, _, _)| alpha[i] > 0.0))
        .collect();
    let machines = classes
        .iter()
        .zip(&solutions)
        .map(|(&class, (alpha, signs, rho))| Machine {
            class,
            coef: sv_rows
                .iter()
                .map(|&i| json_exact(alpha[i] * signs[i]))
                .collect(),
            intercept: json_exact(-rho),
        })
        .collect();
    Ok(Svc {
        gamma,
        c,
        support_vectors: x.select_rows(&sv_rows),
        machines,
    })
}

/// Fraction of rows of `x` whose predicted label equals the one in `y`
/// (0.0 when there are no rows).
///
/// # Panics
/// If `y` does not have one label per row of `x`.
pub fn accuracy(model: &Svc, x: &Matrix, y: &[u32]) -> f64 {
    assert_eq!(x.rows, y.len(), "one label per row expected");
    if y.is_empty() {
        return 0.0;
    }
    let correct = model
        .predict(x)
        .iter()
        .zip(y)
        .filter(|(p, t)| p == t)
        .count();
    correct as f64 / y.len() as f64
}

/// Rounds `v` to a nearby value that `serde_json`'s default float parser
/// (without its `float_roundtrip` feature) reads back bit for bit.
///
/// That parser computes `digits as f64 / 10^k`, which is exact only while the
/// digits fit in 53 bits and `10^k` is exact (`k <= 22`); for other values it
/// may miss by one ulp, so a JSON round trip would change the model. Keeping
/// at most 15 significant digits and none below `1e-22` avoids both limits.
/// The change (below 1e-14 relative) is irrelevant to the model; it is done
/// once at training time, so the model predicts the same before and after
/// any round trip. Holds for magnitudes below 1e14 (larger ones are printed
/// with more digits than fit); a model's numbers are far smaller.
fn json_exact(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let sci = format!("{v:.14e}");
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let digits = (exp + 23).min(15);
    if digits <= 0 {
        return 0.0;
    }
    // Rust's float formatting and parsing both round correctly.
    format!("{v:.*e}", (digits - 1) as usize)
        .parse()
        .unwrap_or(v)
}

/// RBF kernel. Training and prediction both go through this one function so
/// decision values are computed the same way, bit for bit.
fn rbf(gamma: f64, a: &[f64], b: &[f64]) -> f64 {
    let dist2: f64 = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum();
    (-gamma * dist2).exp()
}

/// Solves the C-SVC dual `min 1/2 a'Qa - e'a, 0 <= a <= c, y'a = 0` with
/// `Q[i][j] = y[i] y[j] K[i][j]`, using LIBSVM's SMO: the most violating
/// variable paired with the one giving the largest second-order decrease
/// of the objective (Fan, Chen & Lin 2005). Returns `(alpha, rho)`, the
/// decision function being `sum_i alpha[i] y[i] K(x_i, x) - rho`.
///
/// `kernel` is the full `n x n` matrix and `y` holds `+1.0` / `-1.0`.
fn solve_binary(kernel: &[f64], y: &[f64], c: f64) -> (Vec<f64>, f64) {
    // LIBSVM's defaults: stopping tolerance on the KKT gap, and a floor for
    // non-positive curvature.
    const EPS: f64 = 1e-3;
    const TAU: f64 = 1e-12;
    let n = y.len();
    let k = |i: usize, j: usize| kernel[i * n + j];
    let mut alpha = vec![0.0; n];
    // Gradient of the objective, Q alpha - e, at alpha = 0.
    let mut grad = vec![-1.0; n];
    let at_upper = |a: f64| a >= c;
    let at_lower = |a: f64| a <= 0.0;
    let curvature_or_tau = |q: f64| if q > 0.0 { q } else { TAU };

    // Ample for digits (a few hundred iterations per class); it only bounds
    // the time spent on pathological input, leaving a feasible solution.
    let max_iter = (100 * n).max(10_000);
    for _ in 0..max_iter {
        // i: the variable that can move "up" with the steepest violation.
        let mut g_max = f64::NEG_INFINITY;
        let mut sel_i = None;
        for t in 0..n {
            let movable = if y[t] > 0.0 {
                !at_upper(alpha[t])
            } else {
                !at_lower(alpha[t])
            };
            if movable && -y[t] * grad[t] >= g_max {
                g_max = -y[t] * grad[t];
                sel_i = Some(t);
            }
        }
        let Some(i) = sel_i else { break };

        // j: among variables that can move "down", the one whose pairing with
        // i decreases the objective most; g_max2 completes the KKT gap.
        let mut g_max2 = f64::NEG_INFINITY;
        let mut sel_j = None;
        let mut best_decrease = f64::INFINITY;
        for t in 0..n {
            let movable = if y[t] > 0.0 {
                !at_lower(alpha[t])
            } else {
                !at_upper(alpha[t])
            };
            if !movable {
                continue;
            }
            let yg = y[t] * grad[t];
            g_max2 = g_max2.max(yg);
            let grad_diff = g_max + yg;
            if grad_diff > 0.0 {
                let curvature = k(i, i) + k(t, t) - 2.0 * k(i, t);
                let decrease = -(grad_diff * grad_diff) / curvature_or_tau(curvature);
                if decrease <= best_decrease {
                    best_decrease = decrease;
                    sel_j = Some(t);
                }
            }
        }
        let Some(j) = sel_j else { break };
        if g_max + g_max2 < EPS {
            break;
        }

        // Analytic two-variable step, clipped to the box (LIBSVM's update
        // with equal bounds for both classes).
        let (old_i, old_j) = (alpha[i], alpha[j]);
        let q_ij = y[i] * y[j] * k(i, j);
        if y[i] != y[j] {
            let curvature = k(i, i) + k(j, j) + 2.0 * q_ij;
            let delta = (-grad[i] - grad[j]) / curvature_or_tau(curvature);
            let diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if diff > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = diff;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = -diff;
            }
            if diff > 0.0 {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = c - diff;
                }
            } else if alpha[j] > c {
                alpha[j] = c;
                alpha[i] = c + diff;
            }
        } else {
            let curvature = k(i, i) + k(j, j) - 2.0 * q_ij;
            let delta = (grad[i] - grad[j]) / curvature_or_tau(curvature);
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > c {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = sum - c;
                }
            } else if alpha[j] < 0.0 {
                alpha[j] = 0.0;
                alpha[i] = sum;
            }
            if sum > c {
                if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = sum - c;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = sum;
            }
        }

        let (step_i, step_j) = (y[i] * (alpha[i] - old_i), y[j] * (alpha[j] - old_j));
        for (t, g) in grad.iter_mut().enumerate() {
            *g += y[t] * (k(i, t) * step_i + k(j, t) * step_j);
        }
    }

    // rho: mean of y*grad over free variables (where the KKT conditions pin
    // it exactly); without any, the middle of the feasible interval.
    let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free_sum, mut free_count) = (0.0, 0usize);
    for t in 0..n {
        let yg = y[t] * grad[t];
        if at_upper(alpha[t]) {
            if y[t] < 0.0 {
                upper = upper.min(yg);
            } else {
                lower = lower.max(yg);
            }
        } else if at_lower(alpha[t]) {
            if y[t] > 0.0 {
                upper = upper.min(yg);
            } else {
                lower = lower.max(yg);
            }
        } else {
            free_sum += yg;
            free_count += 1;
        }
    }
    let rho = if free_count > 0 {
        free_sum / free_count as f64
    } else {
        (upper + lower) / 2.0
    };
    (alpha, rho)
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever, so a
/// seed always produces the same shuffle.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough integer in `0..bound` (Lemire's multiply-shift; the
    /// bias is below `bound / 2^64`).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}
