//! `pipeline diff A B`: two runs compared step by step.

use std::fmt;

use serde::Serialize;

use super::explain::Change;
use super::text::table;
use super::{metric_text, run_header, RunView};
use crate::error::Result;
use crate::run::StepStatus;
use crate::store::{RunComparison, Store};

/// Two runs compared step by step (see [`Store::compare_runs`]).
#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    /// The first run.
    pub run_a: RunView,
    /// The second run.
    pub run_b: RunView,
    /// Every step of either run, in the second run's order, then steps only in the first.
    pub steps: Vec<DiffStep>,
}

/// How one step compares between the two runs.
#[derive(Debug, Clone, Serialize)]
pub struct DiffStep {
    /// Step name within the second run; within the first for a step only in the first.
    pub name: String,
    /// Name of the call in the first run it is paired with.
    pub name_a: Option<String>,
    /// Status in the first run (`None` if the step is not in it).
    pub status_a: Option<StepStatus>,
    /// Status in the second run (`None` if the step is not in it).
    pub status_b: Option<StepStatus>,
    /// Whether the cache keys are equal.
    pub same_key: bool,
    /// What differs, from the first run to the second.
    pub changes: Vec<Change>,
    /// The metrics either call logged (`StepContext::log_metric`; a cached call's are those
    /// of the execution it reused), by name.
    pub metrics: Vec<MetricChange>,
}

/// One metric of a step in the two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    /// The metric's name.
    pub name: String,
    /// Its value in the first run, if logged there.
    pub a: Option<f64>,
    /// Its value in the second run, if logged there.
    pub b: Option<f64>,
}

impl MetricChange {
    /// `b - a`, when both runs have the metric.
    pub fn change(&self) -> Option<f64> {
        // Rounded at 1e-9 so that 0.9889 - 0.9917 reads -0.0028, not -0.0028000000000000247.
        Some(((self.b? - self.a?) * 1e9).round() / 1e9)
    }
}

impl DiffStep {
    /// How the two calls compare, in words: `same` (equal keys), `only in A`, `only in B`,
    /// or `different` (what differs is in [`changes`](Self::changes)).
    pub fn verdict(&self) -> &'static str {
        if self.same_key {
            "same"
        } else if self.status_a.is_none() {
            "only in B"
        } else if self.status_b.is_none() {
            "only in A"
        } else {
            "different"
        }
    }

    /// The name of the call in the first run, when it is paired with a differently named
    /// one in the second (calls in a loop: `scale_2` paired with `scale`).
    pub fn renamed_from(&self) -> Option<&str> {
        self.name_a
            .as_deref()
            .filter(|a| *a != self.name && self.status_b.is_some())
    }
}

impl RunDiff {
    /// Compares runs `a` and `b` (ids, names or unique prefixes).
    ///
    /// # Errors
    ///
    /// What [`Store::compare_runs`] returns.
    pub fn new(store: &Store, a: &str, b: &str) -> Result<RunDiff> {
        let mut diff = RunDiff::from(store.compare_runs(a, b)?);
        // Each run's metrics by call name, so pairing stays linear on 10,000-step runs.
        let by_name = |steps: Vec<crate::store::StepRecord>| {
            steps
                .into_iter()
                .filter(|s| !s.metrics.is_empty())
                .map(|s| (s.name, s.metrics))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let steps_a = by_name(store.run_steps(&diff.run_a.0.id)?);
        let steps_b = by_name(store.run_steps(&diff.run_b.0.id)?);
        let metrics_of = |steps: &std::collections::HashMap<String, _>, name: Option<&str>| {
            name.and_then(|n| steps.get(n))
                .cloned()
                .unwrap_or_else(std::collections::BTreeMap::<String, f64>::new)
        };
        for step in &mut diff.steps {
            let a = metrics_of(
                &steps_a,
                step.name_a
                    .as_deref()
                    .or(Some(step.name.as_str()))
                    .filter(|_| step.status_a.is_some()),
            );
            let b = metrics_of(
                &steps_b,
                Some(step.name.as_str()).filter(|_| step.status_b.is_some()),
            );
            let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            step.metrics = names
                .into_iter()
                .map(|n| MetricChange {
                    name: n.clone(),
                    a: a.get(n).copied(),
                    b: b.get(n).copied(),
                })
                .collect();
        }
        Ok(diff)
    }

    /// The steps whose cache keys differ.
    pub fn changed(&self) -> impl Iterator<Item = &DiffStep> {
        self.steps.iter().filter(|s| !s.same_key)
    }
}

impl From<RunComparison> for RunDiff {
    fn from(cmp: RunComparison) -> RunDiff {
        RunDiff {
            run_a: RunView(cmp.run_a),
            run_b: RunView(cmp.run_b),
            steps: cmp
                .steps
                .into_iter()
                .map(|s| DiffStep {
                    name: s.name,
                    name_a: s.name_a,
                    status_a: s.status_a,
                    status_b: s.status_b,
                    same_key: s.same_key,
                    changes: s.changes.into_iter().map(Change::new).collect(),
                    metrics: Vec::new(),
                })
                .collect(),
        }
    }
}

/// Both runs' headers, a table of the steps (status in A and B, same key or what
/// differs), and how many steps differ.
impl fmt::Display for RunDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "A: {}", run_header(&self.run_a.0))?;
        writeln!(f, "B: {}", run_header(&self.run_b.0))?;
        writeln!(f)?;
        let status = |s: Option<StepStatus>| s.map(|s| s.to_string()).unwrap_or("-".into());
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|s| {
                let verdict = match s.verdict() {
                    "different" if !s.changes.is_empty() => format!(
                        "different: {}",
                        s.changes
                            .iter()
                            .map(|c| c.text.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    v => v.to_string(),
                };
                let name = match s.renamed_from() {
                    Some(a) => format!("{} (A: {a})", s.name),
                    None => s.name.clone(),
                };
                vec![name, status(s.status_a), status(s.status_b), verdict]
            })
            .collect();
        f.write_str(&table(&["STEP", "A", "B", "CACHE KEY"], &rows))?;
        writeln!(
            f,
            "\n{} of {} steps differ.",
            self.changed().count(),
            self.steps.len()
        )?;
        let metrics: Vec<Vec<String>> = self
            .steps
            .iter()
            .flat_map(|s| s.metrics.iter().map(move |m| (s, m)))
            .map(|(s, m)| {
                let value = |v: Option<f64>| v.map(metric_text).unwrap_or_else(|| "-".into());
                let change = match m.change() {
                    Some(0.0) => "same".to_string(),
                    Some(c) if c > 0.0 => format!("+{}", metric_text(c)),
                    Some(c) => metric_text(c),
                    None if m.a.is_none() => "new in B".to_string(),
                    None => "only in A".to_string(),
                };
                vec![
                    s.name.clone(),
                    format!("{} {} -> {}", m.name, value(m.a), value(m.b)),
                    change,
                ]
            })
            .collect();
        if !metrics.is_empty() {
            writeln!(f)?;
            f.write_str(&table(&["STEP", "METRIC A -> B", "CHANGE"], &metrics))?;
        }
        Ok(())
    }
}
