//! `pipeline runs` and `pipeline show`: the runs of a store, and the steps of one run.

use std::fmt;

use serde::Serialize;

use super::group::{list_calls, range_name, Listed, GROUP_LIMIT, GROUP_SHOWN};
use super::text::{duration, short_hash, size, table, timestamp};
use super::{run_header, run_status, RunView, StepView};
use crate::error::Result;
use crate::map::item_call;
use crate::status::StepStatus;
use crate::store::{ExecutionLog, RunRecord, Store};

/// The runs of a store, newest first. Serializes as an array of runs.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RunList {
    /// The runs, newest first.
    pub runs: Vec<RunView>,
    /// The pipeline the list is limited to, if any.
    #[serde(skip)]
    pub pipeline: Option<String>,
    /// When a pipeline filter matched no run: the pipelines that have runs, sorted.
    #[serde(skip)]
    pub known_pipelines: Vec<String>,
}

impl RunList {
    /// The runs of `pipeline` (every run when `None`), newest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// What [`Store::runs`] and [`Store::pipelines`] return: the metadata cannot be read, or
    /// a row holds a value this version does not know.
    pub fn new(store: &Store, pipeline: Option<&str>, limit: Option<usize>) -> Result<RunList> {
        let mut runs = store.runs(pipeline)?;
        if let Some(n) = limit {
            runs.truncate(n);
        }
        let known_pipelines = if runs.is_empty() && pipeline.is_some() {
            store.pipelines()?
        } else {
            Vec::new()
        };
        Ok(RunList {
            runs: runs.into_iter().map(RunView).collect(),
            pipeline: pipeline.map(str::to_string),
            known_pipelines,
        })
    }
}

/// A table of the runs, or a sentence saying that there are none.
impl fmt::Display for RunList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() {
            return match &self.pipeline {
                Some(p) if self.known_pipelines.is_empty() => {
                    writeln!(f, "No runs of pipeline `{p}` (the store has no runs).")
                }
                Some(p) => writeln!(
                    f,
                    "No runs of pipeline `{p}`; the store has runs of: {}.",
                    self.known_pipelines.join(", ")
                ),
                None => writeln!(f, "No runs in the store."),
            };
        }
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|RunView(r)| {
                vec![
                    short_id(&r.id).to_string(),
                    r.name.clone(),
                    r.pipeline.clone(),
                    run_status(r),
                    timestamp(r.started_at_us),
                    r.duration.map(duration).unwrap_or_else(|| "-".into()),
                    r.executed.to_string(),
                    r.cached.to_string(),
                    r.failed.to_string(),
                    r.skipped.to_string(),
                ]
            })
            .collect();
        f.write_str(&table(
            &[
                "ID",
                "NAME",
                "PIPELINE",
                "STATUS",
                "STARTED (UTC)",
                "DURATION",
                "EXECUTED",
                "CACHED",
                "FAILED",
                "SKIPPED",
            ],
            &rows,
        ))
    }
}

/// One run and its steps, in pipeline order.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunView,
    /// Its steps, in pipeline order.
    pub steps: Vec<StepView>,
    /// The streams kept of the steps that ran in a worker process or a Slurm job
    /// (`pipeline logs RUN STEP` prints them), in pipeline order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<StepLogs>,
}

/// The streams kept of one step's job ([`Store::execution_logs`]).
#[derive(Debug, Clone, Serialize)]
pub struct StepLogs {
    /// The step call's name in the run.
    pub step: String,
    /// Its stdout and stderr, as kept.
    pub streams: Vec<ExecutionLog>,
}

impl RunDetail {
    /// The run `run` (id, name, or a unique prefix of either) and its steps.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) or
    /// [`Error::AmbiguousRun`](crate::Error::AmbiguousRun) when `run` names no run or
    /// several; otherwise what [`Store::run_steps`] returns.
    pub fn new(store: &Store, run: &str) -> Result<RunDetail> {
        let run = store.run(run)?;
        let steps = store.run_steps(&run.id)?;
        let mut logs = Vec::new();
        for s in &steps {
            let streams = store.execution_logs(s.execution_id)?;
            if !streams.is_empty() {
                logs.push(StepLogs {
                    step: s.name.clone(),
                    streams,
                });
            }
        }
        Ok(RunDetail {
            logs,
            ..RunDetail::from_records(run, steps)
        })
    }

    /// The report of records already read.
    pub fn from_records(run: RunRecord, steps: Vec<crate::store::StepRecord>) -> RunDetail {
        RunDetail {
            run: RunView(run),
            steps: steps.into_iter().map(StepView).collect(),
            logs: Vec::new(),
        }
    }
}

/// The run's header, a table of its steps (status, duration, cache key, outputs), then
/// why each failed or skipped step did so.
impl fmt::Display for RunDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", run_header(&self.run.0))?;
        writeln!(f)?;
        let listed = list_calls(self.steps.iter().map(|s| s.0.name.as_str()), |_| false);
        let mut rows = Vec::new();
        let mut hidden_calls = 0;
        for entry in &listed {
            let s = match entry {
                Listed::Step(i) => &self.steps[*i].0,
                Listed::More { base, steps } => {
                    hidden_calls += steps.len();
                    rows.push(more_calls_row(
                        base,
                        steps.iter().map(|&i| &self.steps[i].0),
                    ));
                    continue;
                }
            };
            let described = |o: &crate::store::ArtifactRecord| {
                format!(
                    "{} {} {} {}",
                    o.name,
                    size(o.size),
                    o.cacher,
                    short_hash(o.content_hash)
                )
            };
            // A split's items: the first few, then how many more.
            let shown = if s.outputs.len() > GROUP_LIMIT {
                GROUP_SHOWN
            } else {
                s.outputs.len()
            };
            let mut outputs = s.outputs[..shown].iter().map(described).chain(
                (shown < s.outputs.len())
                    .then(|| format!("... {} more items", s.outputs.len() - shown)),
            );
            rows.push(vec![
                s.name.clone(),
                s.status.to_string(),
                duration(s.duration),
                s.cache_key.map(short_hash).unwrap_or_else(|| "-".into()),
                outputs.next().unwrap_or_else(|| "-".into()),
            ]);
            for more in outputs {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    more,
                ]);
            }
        }
        f.write_str(&table(
            &["STEP", "STATUS", "DURATION", "CACHE KEY", "OUTPUTS"],
            &rows,
        ))?;
        for StepView(s) in &self.steps {
            match s.status {
                StepStatus::Failed => writeln!(
                    f,
                    "\n`{}` failed: {}",
                    s.name,
                    s.error.as_deref().unwrap_or("(no message recorded)")
                )?,
                StepStatus::Skipped => writeln!(
                    f,
                    "\n`{}` was skipped: {}",
                    s.name,
                    s.reason.as_deref().unwrap_or("an upstream step failed")
                )?,
                _ => {}
            }
        }
        for entry in &listed {
            if let Listed::Step(i) = entry {
                write_details(f, &self.steps[*i].0)?;
            }
        }
        if hidden_calls > 0 {
            writeln!(
                f,
                "\n{hidden_calls} calls of maps or loops are summed up above; `pipeline --json show {}` lists every call.",
                short_id(&self.run.0.id)
            )?;
        }
        if !self.logs.is_empty() {
            let kept: Vec<String> = self
                .logs
                .iter()
                .map(|l| {
                    let streams: Vec<String> = l
                        .streams
                        .iter()
                        .map(|s| format!("{} {}", s.stream, size(s.total_size)))
                        .collect();
                    format!("`{}` ({})", l.step, streams.join(", "))
                })
                .collect();
            writeln!(
                f,
                "\nLogs kept: {}.\nPrint one with `pipeline logs {} STEP [--stdout|--stderr]`.",
                kept.join(", "),
                short_id(&self.run.0.id)
            )?;
        }
        Ok(())
    }
}

/// How many of `steps` have each status, by status name (`[("cached", 4), ("executed",
/// 1)]`), as a group's summary says it.
pub fn status_counts<'a>(
    steps: impl IntoIterator<Item = &'a crate::store::StepRecord>,
) -> Vec<(String, usize)> {
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    for s in steps {
        *statuses.entry(s.status.to_string()).or_default() += 1;
    }
    statuses.into_iter().collect()
}

/// The summary row of a large group's calls not listed one by one: their names' range,
/// how many by status, their total duration.
fn more_calls_row<'a>(
    base: &str,
    calls: impl Iterator<Item = &'a crate::store::StepRecord> + Clone,
) -> Vec<String> {
    let (mut n, mut total) = (0usize, std::time::Duration::ZERO);
    let mut items = Vec::new();
    for s in calls.clone() {
        n += 1;
        total += s.duration;
        items.extend(item_call(&s.name).map(|(_, i)| i));
    }
    let counts: Vec<String> = status_counts(calls)
        .iter()
        .map(|(s, k)| format!("{k} {s}"))
        .collect();
    vec![
        range_name(base, items.into_iter()),
        format!("{n} more: {}", counts.join(", ")),
        duration(total),
        "-".into(),
        String::new(),
    ]
}

/// A step's attempts (when it was retried), metrics and metadata, each under its name.
fn write_details(f: &mut fmt::Formatter<'_>, s: &crate::store::StepRecord) -> fmt::Result {
    if !s.attempts.is_empty() {
        writeln!(
            f,
            "
`{}` ran {} attempts:",
            s.name,
            s.attempts.len()
        )?;
        for a in &s.attempts {
            match &a.error {
                Some(e) => writeln!(
                    f,
                    "  {}. failed after {}: {}",
                    a.attempt,
                    duration(a.duration),
                    e
                )?,
                None => writeln!(f, "  {}. succeeded in {}", a.attempt, duration(a.duration))?,
            }
        }
    }
    let cached = if s.status == StepStatus::Cached {
        " (of the execution it reused)"
    } else {
        ""
    };
    if !s.metrics.is_empty() {
        writeln!(
            f,
            "
`{}` metrics{cached}:",
            s.name
        )?;
        for (name, value) in &s.metrics {
            writeln!(f, "  {name} = {}", crate::report::metric_text(*value))?;
        }
    }
    if !s.metadata.is_empty() {
        writeln!(
            f,
            "
`{}` metadata{cached}:",
            s.name
        )?;
        for (key, value) in &s.metadata {
            writeln!(f, "  {key} = {value}")?;
        }
    }
    Ok(())
}

/// The first 8 characters of a run id.
fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// A run pinned or unpinned (`pipeline pin` / `pipeline unpin`).
#[derive(Debug, Clone, Serialize)]
pub struct PinChange {
    /// The run.
    pub run: RunView,
    /// Whether it is pinned now.
    pub pinned: bool,
}

impl PinChange {
    /// Pins run `run` (id, name, or a unique prefix of either) when `pinned`, else unpins
    /// it: a pinned run is always kept by garbage collection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`](crate::Error::UnknownRun) or
    /// [`Error::AmbiguousRun`](crate::Error::AmbiguousRun) when `run` names no run or
    /// several; otherwise what [`Store::pin`] or [`Store::unpin`] returns (a read-only
    /// store, the metadata cannot be written).
    pub fn apply(store: &Store, run: &str, pinned: bool) -> Result<PinChange> {
        let record = store.run(run)?;
        if pinned {
            store.pin(&record.id)?;
        } else {
            store.unpin(&record.id)?;
        }
        Ok(PinChange {
            run: RunView(record),
            pinned,
        })
    }
}

/// `Pinned run `NAME`.` or `Unpinned run `NAME`.`
impl fmt::Display for PinChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.pinned { "Pinned" } else { "Unpinned" };
        writeln!(f, "{what} run `{}`.", self.run.0.name)
    }
}
