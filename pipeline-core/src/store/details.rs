//! What an execution records besides its outputs: its attempts when it was retried, and the
//! metadata and metrics its step logged through [`pipeline::context()`](crate::context()).
//!
//! Three JSON columns of `executions` (SQLite schema 9, PostgreSQL schema 4): `attempts`
//! (an array, only when there was more than one), `metadata` (an object) and `metrics` (an
//! object of numbers). A cached row has none of its own: reads take the metadata and
//! metrics of the execution it reused ([`details_of_e`]), as ZenML shows a cached step's
//! run metadata. Nothing here enters a cache key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One attempt of a step that was retried (`#[step(retries = N)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Start, in microseconds since the Unix epoch.
    pub started_at_us: i64,
    /// How long the attempt ran (the body and its outputs' writes), in seconds.
    #[serde(rename = "duration_s", with = "secs")]
    pub duration: Duration,
    /// Why it failed; `None` for the attempt that succeeded.
    pub error: Option<String>,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(Duration::try_from_secs_f64(secs).unwrap_or_default())
    }
}

/// The attempts, metadata and metrics of one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionDetails {
    /// Every attempt, in order, when the step was retried; empty when it ran once.
    pub attempts: Vec<Attempt>,
    /// `StepContext::log_metadata` entries of the attempt that decided the step.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `StepContext::log_metric` values (finite numbers) of that attempt.
    pub metrics: BTreeMap<String, f64>,
}

impl ExecutionDetails {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.metadata.is_empty() && self.metrics.is_empty()
    }

    /// The three column texts (`attempts`, `metadata`, `metrics`), `None` where empty.
    pub(crate) fn columns(&self) -> (Option<String>, Option<String>, Option<String>) {
        let text = |v: serde_json::Result<String>| v.ok();
        (
            (!self.attempts.is_empty())
                .then(|| text(serde_json::to_string(&self.attempts)))
                .flatten(),
            (!self.metadata.is_empty())
                .then(|| text(serde_json::to_string(&self.metadata)))
                .flatten(),
            (!self.metrics.is_empty())
                .then(|| text(serde_json::to_string(&self.metrics)))
                .flatten(),
        )
    }

    /// Read back from the three column texts. A text this version cannot read is left
    /// out (it only describes the execution; the run's record stays readable).
    pub(crate) fn from_columns(
        attempts: Option<&str>,
        metadata: Option<&str>,
        metrics: Option<&str>,
    ) -> ExecutionDetails {
        ExecutionDetails {
            attempts: attempts
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            metadata: metadata
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            metrics: metrics
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
        }
    }
}

/// The columns of an execution `e` that hold its details, for `concat!`: its own attempts,
/// and the metadata and metrics of the execution it reused when it has none (a cached row).
macro_rules! details_of_e {
    () => {
        "e.attempts, \
         COALESCE(e.metadata, (SELECT h.metadata FROM executions h \
             WHERE h.id = COALESCE(e.outputs_of, e.reused_execution))), \
         COALESCE(e.metrics, (SELECT h.metrics FROM executions h \
             WHERE h.id = COALESCE(e.outputs_of, e.reused_execution)))"
    };
}
pub(crate) use details_of_e;

/// One metric of one run, for sweeps ([`Store::metric`](crate::Store::metric)).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The run's id.
    pub run_id: String,
    /// The run's name.
    pub run_name: String,
    /// When the run started, in microseconds since the Unix epoch.
    pub run_started_at_us: i64,
    /// The step call that logged it (`evaluate`, `evaluate_2`).
    pub step: String,
    /// The value.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_empty_is_null() {
        assert_eq!(ExecutionDetails::default().columns(), (None, None, None));
        let mut d = ExecutionDetails::default();
        d.attempts.push(Attempt {
            attempt: 1,
            started_at_us: 5,
            duration: Duration::from_millis(1500),
            error: Some("boom".into()),
        });
        d.metadata.insert("rows".into(), serde_json::json!(12));
        d.metrics.insert("accuracy".into(), 0.9917);
        let (a, m, x) = d.columns();
        assert!(a.as_deref().unwrap().contains("\"duration_s\":1.5"));
        let back = ExecutionDetails::from_columns(a.as_deref(), m.as_deref(), x.as_deref());
        assert_eq!(back, d);
        let unreadable = ExecutionDetails::from_columns(Some("{"), Some("[1]"), Some("7"));
        assert!(unreadable.is_empty());
    }
}
