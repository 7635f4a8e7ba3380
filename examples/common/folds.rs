//! The folds of the digits data and the per-fold steps, shared by
//! `examples/cross_validation.rs` and `examples/grid_search.rs`. Include it at the crate
//! root, next to `common/digits.rs` (the steps refer to `crate::digits`).
#![allow(dead_code)]

use pipeline::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digits::{self, Matrix, Svc, TrainError};

/// One fold: the training rows of the other folds and the rows held out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Fold {
    /// Position of the fold, `0..k`.
    pub index: usize,
    pub x_train: Matrix,
    pub y_train: Vec<u32>,
    pub x_val: Matrix,
    pub y_val: Vec<u32>,
}

/// Splits the training rows into `k` folds of (almost) equal size, in row order (the
/// loader already shuffled them with `SPLIT_SEED`).
#[step]
pub fn make_folds(x: &Matrix, y: &[u32], k: usize) -> Result<Vec<Fold>, String> {
    if k < 2 || k > x.rows {
        return Err(format!(
            "k must be in 2..={} (the training rows), got {k}",
            x.rows
        ));
    }
    let rows = |idx: &[usize]| {
        let mut data = Vec::with_capacity(idx.len() * x.cols);
        for &i in idx {
            data.extend_from_slice(x.row(i));
        }
        (
            Matrix::new(idx.len(), x.cols, data),
            idx.iter().map(|&i| y[i]).collect::<Vec<u32>>(),
        )
    };
    Ok((0..k)
        .map(|f| {
            let (start, end) = (f * x.rows / k, (f + 1) * x.rows / k);
            let held: Vec<usize> = (start..end).collect();
            let kept: Vec<usize> = (0..start).chain(end..x.rows).collect();
            let (x_train, y_train) = rows(&kept);
            let (x_val, y_val) = rows(&held);
            Fold {
                index: f,
                x_train,
                y_train,
                x_val,
                y_val,
            }
        })
        .collect())
}

/// Trains the SVC on one fold's training rows.
#[step]
pub fn train_fold(fold: &Fold, gamma: f64, c: f64) -> Result<Svc, TrainError> {
    digits::train_svc(&fold.x_train, &fold.y_train, gamma, c)
}

/// The fold's validation accuracy, logged as the metric `accuracy`.
#[step(cacher = Json)]
pub fn score_fold(model: &Svc, fold: &Fold) -> f64 {
    let accuracy = digits::accuracy(model, &fold.x_val, &fold.y_val);
    if let Ok(ctx) = pipeline::context() {
        let _ = ctx.log_metric("accuracy", accuracy);
    }
    accuracy
}

/// The mean of the folds' accuracies.
#[step(cacher = Json)]
pub fn mean(scores: &[f64]) -> f64 {
    scores.iter().sum::<f64>() / scores.len().max(1) as f64
}
