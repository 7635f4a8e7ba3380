//! Typed reports on what the store recorded, for the `pipeline` command and for scripts.
//!
//! Each report is built from the store's query API ([`Store::runs`], [`Store::run_steps`],
//! [`Store::compared_execution`], [`Store::compare_runs`], ...), serializes to the JSON the
//! command prints with `--json`, and prints the command's text through `Display`:
//!
//! | report          | command                   |
//! |-----------------|---------------------------|
//! | [`RunList`]     | `pipeline runs`           |
//! | [`RunDetail`]   | `pipeline show RUN`       |
//! | [`Explanation`] | `pipeline explain RUN STEP` |
//! | [`RunDiff`]     | `pipeline diff A B`       |
//! | [`RunGraph`]    | `pipeline lineage RUN` (DOT text) |
//! | [`GcSummary`]   | `pipeline gc`             |
//! | [`PinChange`]   | `pipeline pin` / `unpin`  |
//! | [`VerifySummary`] | `pipeline verify`       |
//!
//! In the JSON, a run or step record's `duration` is written as `duration_s` (seconds, a
//! float), and a run also carries `started` (RFC 3339, UTC, whole seconds).
//!
//! [`Store`]: crate::Store
//! [`Store::runs`]: crate::Store::runs
//! [`Store::run_steps`]: crate::Store::run_steps
//! [`Store::compared_execution`]: crate::Store::compared_execution
//! [`Store::compare_runs`]: crate::Store::compare_runs

mod diff;
mod explain;
mod gc;
mod graph;
mod group;
mod runs;
pub mod text;
mod verify;

use std::time::Duration;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};

use crate::store::{RunRecord, StepRecord};

pub use crate::map::{item_call, item_call_root};
pub use diff::{DiffStep, MetricChange, RunDiff};
pub use explain::{Change, Explanation, InputDetail, PreviousExecution, ReusedExecution};
pub use gc::GcSummary;
pub use graph::{depths, status_colors, GraphEdge, GraphNode, RunGraph};
pub use group::{list_calls, range_name, Listed, GROUP_LIMIT, GROUP_SHOWN};
pub use runs::{status_counts, PinChange, RunDetail, RunList, StepLogs};
pub use verify::VerifySummary;

/// A run record as reports show it: its fields, with `duration` as `duration_s` (seconds)
/// and `started` (`2026-11-23T12:05:54Z`) added.
#[derive(Debug, Clone)]
pub struct RunView(pub RunRecord);

impl Serialize for RunView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = &self.0;
        let mut v = with_seconds(
            serde_json::to_value(r).map_err(S::Error::custom)?,
            r.duration,
        );
        if let serde_json::Value::Object(map) = &mut v {
            map.insert(
                "started".into(),
                format!("{}Z", text::timestamp(r.started_at_us).replace(' ', "T")).into(),
            );
        }
        v.serialize(serializer)
    }
}

/// A step record as reports show it: its fields, with `duration` as `duration_s` (seconds).
#[derive(Debug, Clone)]
pub struct StepView(pub StepRecord);

impl Serialize for StepView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = &self.0;
        with_seconds(
            serde_json::to_value(s).map_err(S::Error::custom)?,
            Some(s.duration),
        )
        .serialize(serializer)
    }
}

/// A record as JSON, with `duration` replaced by `duration_s` (seconds, a float).
fn with_seconds(mut v: serde_json::Value, d: Option<Duration>) -> serde_json::Value {
    if let serde_json::Value::Object(map) = &mut v {
        map.remove("duration");
        map.insert("duration_s".into(), d.map(|d| d.as_secs_f64()).into());
    }
    v
}

/// A metric as reports print it: a whole number as it is (`12`), others with 4 decimals
/// (`0.9917`, trailing zeros dropped: `0.5`), very small or large ones in scientific
/// notation (`1.2346e-5`). `--json` output keeps every digit.
pub fn metric_text(value: f64) -> String {
    let magnitude = value.abs();
    if value.fract() == 0.0 && magnitude < 1e15 {
        format!("{value:.0}")
    } else if magnitude != 0.0 && !(1e-3..1e9).contains(&magnitude) {
        format!("{value:.4e}")
    } else {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_string()
        } else {
            text.to_string()
        }
    }
}

/// Serializes a duration as seconds (a float).
fn seconds<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}

/// A run's status as its text (`completed`), as the store and the JSON write it.
fn run_status(r: &RunRecord) -> String {
    serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `run `NAME` (id ID) of pipeline `P`: STATUS, started .. UTC, took ..; N executed, ...`
fn run_header(r: &RunRecord) -> String {
    format!(
        "run `{}` (id {}) of pipeline `{}`: {}, started {} UTC, took {}; {} executed, {} cached, {} failed, {} skipped",
        r.name,
        r.id,
        r.pipeline,
        run_status(r),
        text::timestamp(r.started_at_us),
        r.duration.map(text::duration).unwrap_or_else(|| "-".into()),
        r.executed,
        r.cached,
        r.failed,
        r.skipped
    )
}

#[cfg(test)]
mod metric_tests {
    #[test]
    fn metrics_read_as_people_write_them() {
        let t = super::metric_text;
        assert_eq!(t(0.9916666666666668), "0.9917");
        assert_eq!(t(0.9888888888888888), "0.9889");
        assert_eq!(t(-0.002777778), "-0.0028");
        assert_eq!(t(12.0), "12");
        assert_eq!(t(0.5), "0.5");
        assert_eq!(t(0.000012345), "1.2345e-5");
    }
}
