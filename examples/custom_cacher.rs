//! A user-defined cacher: store a `Histogram` as human-readable CSV.
//!
//! ```text
//! cargo run --example custom_cacher
//! ```
//!
//! Implement [`Cacher`] for your type, choose it per output with `cacher = ..`, and bump
//! `version()` when the format changes: the version enters the cache key, so old blobs are
//! never read with the new format.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use pipeline::prelude::*;
use pipeline::BoxError;
use serde::{Deserialize, Serialize};

/// Counts per bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of each bin.
    pub edges: Vec<f64>,
    /// How many values fell into each bin.
    pub counts: Vec<u64>,
}

/// Writes a histogram as `edge,count` lines, one per bin.
#[derive(Debug, Default)]
pub struct CsvHistogram;

impl Cacher<Histogram> for CsvHistogram {
    fn id(&self) -> &str {
        "csv-histogram"
    }

    fn version(&self) -> u32 {
        1
    }

    fn save(&self, h: &Histogram, out: &mut dyn Write) -> Result<(), BoxError> {
        if h.edges.len() != h.counts.len() {
            return Err("edges and counts differ in length".into());
        }
        writeln!(out, "edge,count")?;
        for (edge, count) in h.edges.iter().zip(&h.counts) {
            // `{:?}` prints the shortest text that parses back to the same f64.
            writeln!(out, "{edge:?},{count}")?;
        }
        Ok(())
    }

    fn load(&self, input: &mut dyn Read) -> Result<Histogram, BoxError> {
        let mut h = Histogram {
            edges: Vec::new(),
            counts: Vec::new(),
        };
        for (i, line) in BufReader::new(input).lines().enumerate().skip(1) {
            let line = line?;
            let (edge, count) = line
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected `edge,count`", i + 1))?;
            h.edges.push(edge.parse()?);
            h.counts.push(count.parse()?);
        }
        Ok(h)
    }

    fn metadata(&self, h: &Histogram) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "bins": h.counts.len(), "total": h.counts.iter().sum::<u64>() }))
    }
}

#[step]
fn samples(n: usize) -> Vec<f64> {
    // A deterministic, roughly bell-shaped sample.
    (0..n)
        .map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            (u * std::f64::consts::PI).sin() * 10.0
        })
        .collect()
}

#[step(cacher = CsvHistogram)]
fn histogram(xs: &[f64], bins: usize) -> Histogram {
    let width = 10.0 / bins as f64;
    let mut counts = vec![0u64; bins];
    for x in xs {
        let b = ((x / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    Histogram {
        edges: (0..bins).map(|b| b as f64 * width).collect(),
        counts,
    }
}

#[pipeline]
fn histogram_pipeline(n: usize, bins: usize) -> Artifact<Histogram> {
    let xs = samples(n);
    histogram(&xs, bins)
}

fn main() -> ExitCode {
    // `RUST_LOG` (e.g. `RUST_LOG=pipeline=warn`) overrides the default `info` filter.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> pipeline::Result<()> {
    let store_dir = std::env::temp_dir().join("pipeline-custom-cacher-example");
    let run = histogram_pipeline(10_000, 5).store_path(&store_dir).run()?;
    let hist = run.output().load()?;
    let path = run.output().path()?;
    println!("\nhistogram stored at {}:", path.display());
    print!("{}", std::fs::read_to_string(&path).unwrap_or_default());
    println!("\nloaded back: {hist:?}");
    Ok(())
}
