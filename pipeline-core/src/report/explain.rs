//! `pipeline explain RUN STEP`: why a step executed (what changed since the earlier
//! execution of the same call), or which execution a cached step reused.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::text::{duration, short, short_hash, size, timestamp};
use super::{seconds, RunView};
use crate::error::{Error, Result};
use crate::key::{Hash128, InputComponent, KeyComponents, Through};
use crate::status::{Reason, StepStatus};
use crate::store::{ArtifactRecord, RunRecord, StepRecord, Store};

/// Why one step of a run executed, failed, was skipped, or which execution it reused.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The run.
    pub run: RunView,
    /// The step's name within the run (`scale_2`).
    pub step: String,
    /// The step's own name, shared by its calls (`scale`).
    #[serde(skip)]
    pub step_name: String,
    /// Its status.
    pub status: StepStatus,
    /// Its execution id.
    pub execution_id: i64,
    /// Why it executed or was skipped, as recorded.
    pub reason: Option<String>,
    /// The error of a failed step.
    pub error: Option<String>,
    /// Its cache key (hex); `None` for a skipped step.
    pub cache_key: Option<Hash128>,
    /// Time it took.
    #[serde(skip)]
    pub duration: Duration,
    /// Its outputs.
    #[serde(skip)]
    pub outputs: Vec<ArtifactRecord>,
    /// For a step that executed or failed: the earlier execution of the same call it was
    /// compared with (`None` when this was the step's first execution).
    pub previous: Option<PreviousExecution>,
    /// What changed since [`Explanation::previous`], from then to now.
    pub changes: Vec<Change>,
    /// For a cached step: the execution it reused.
    pub reused: Option<ReusedExecution>,
}

/// The earlier execution of the same call that a miss was compared with.
#[derive(Debug, Clone, Serialize)]
pub struct PreviousExecution {
    /// Its execution id.
    pub execution_id: i64,
    /// Its name within its run.
    pub step: String,
    /// Its status; `None` once removed from the store.
    pub status: Option<StepStatus>,
    /// Its run's id.
    pub run_id: String,
    /// Its run's name.
    pub run_name: String,
    /// Its start (microseconds since the Unix epoch); `None` once removed from the store.
    pub started_at_us: Option<i64>,
    /// Its cache key, from its recorded key components.
    pub cache_key: Hash128,
    /// Whether garbage collection removed it since; its key components were recorded with
    /// the step explained, so the comparison still holds.
    pub removed: bool,
}

/// The execution a cached step reused. Only `execution_id` and `removed` are known once
/// garbage collection removed its run.
#[derive(Debug, Clone, Serialize)]
pub struct ReusedExecution {
    /// Its execution id.
    pub execution_id: i64,
    /// Its name within its run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its run's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Its run's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// Its start (microseconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_us: Option<i64>,
    /// Time it took (seconds in the JSON, as `duration_s`).
    #[serde(
        rename = "duration_s",
        serialize_with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    /// Whether its run has since been removed from the store.
    pub removed: bool,
}

/// One difference between the earlier execution and this one, with its text and, for a
/// changed input or declaration, the detail.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// What changed.
    #[serde(flatten)]
    pub reason: Reason,
    /// The reason as text.
    pub text: String,
    /// For a changed input: its content then and now, and where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<InputDetail>,
    /// For changed declarations: the inputs and outputs declared before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_declarations: Option<String>,
    /// For changed declarations: the inputs and outputs declared now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_declarations: Option<String>,
}

impl Change {
    /// A change with its text and no detail.
    pub fn new(reason: Reason) -> Change {
        Change {
            text: reason.to_string(),
            reason,
            detail: None,
            old_declarations: None,
            new_declarations: None,
        }
    }
}

/// Where a changed input came from, then and now.
#[derive(Debug, Clone, Serialize)]
pub struct InputDetail {
    /// Content hash of the input the earlier execution consumed (hex).
    pub old_content_hash: Option<String>,
    /// Content hash of the input this execution consumed (hex).
    pub new_content_hash: Option<String>,
    /// The step of this run that produced it.
    pub producer: String,
    /// The execution that produced it, as recorded with the input.
    pub producer_execution: Option<i64>,
    /// The run of that execution, while it is in the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_run: Option<String>,
    /// That execution's name within its run, while it is in the store.
    #[serde(skip)]
    pub producer_step: Option<String>,
    /// That execution's status, while it is in the store.
    #[serde(skip)]
    pub producer_status: Option<StepStatus>,
}

impl Explanation {
    /// Explains `step`, one of the records of `run`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStep`] when a cached step names no reused execution (a damaged
    /// record); otherwise what the store's queries return ([`Error::Database`] and the
    /// like) when the metadata cannot be read.
    pub fn new(store: &Store, run: RunRecord, step: StepRecord) -> Result<Explanation> {
        let mut report = Explanation {
            run: RunView(run),
            step: step.name.clone(),
            step_name: step.step.clone(),
            status: step.status,
            execution_id: step.execution_id,
            reason: step.reason.clone(),
            error: step.error.clone(),
            cache_key: step.cache_key,
            duration: step.duration,
            outputs: Vec::new(),
            previous: None,
            changes: Vec::new(),
            reused: None,
        };
        match step.status {
            StepStatus::Cached => {
                let id = step.reused_execution.ok_or_else(|| Error::UnknownStep {
                    run: report.run.0.name.clone(),
                    what: format!(
                        "reused execution recorded for step `{}`, which is recorded as cached",
                        step.name
                    ),
                })?;
                report.reused = Some(match execution_and_run(store, id)? {
                    Some((used, used_run)) => ReusedExecution {
                        execution_id: id,
                        step: Some(used.name),
                        run_id: Some(used_run.id),
                        run_name: Some(used_run.name),
                        started_at_us: Some(used.started_at_us),
                        duration: Some(used.duration),
                        removed: false,
                    },
                    None => ReusedExecution {
                        execution_id: id,
                        step: None,
                        run_id: None,
                        run_name: None,
                        started_at_us: None,
                        duration: None,
                        removed: true,
                    },
                });
                report.outputs = step.outputs;
            }
            StepStatus::Executed | StepStatus::Failed => {
                let Some(prev) = store.compared_execution(step.execution_id)? else {
                    return Ok(report);
                };
                let still = execution_and_run(store, prev.execution_id)?;
                report.previous = Some(PreviousExecution {
                    execution_id: prev.execution_id,
                    step: prev.name.clone(),
                    status: still.as_ref().map(|(p, _)| p.status),
                    run_id: prev.run_id.clone(),
                    run_name: prev.run_name.clone(),
                    started_at_us: still.as_ref().map(|(p, _)| p.started_at_us),
                    cache_key: prev.components.cache_key(),
                    removed: still.is_none(),
                });
                for reason in Reason::differences(&prev.components, &step.components) {
                    let detail = match &reason {
                        Reason::InputChanged { name, producer } => {
                            Some(input_detail(store, &prev.components, &step, name, producer))
                        }
                        _ => None,
                    };
                    // A list or an item that a built-in call produced, in its own terms.
                    let reason = reason.read_through(&mut |input, _| {
                        through_recorded(store, &prev.components, &step, input)
                    });
                    let mut change = Change::new(reason);
                    change.detail = detail;
                    if change.reason == Reason::DeclarationChanged {
                        change.old_declarations = Some(declarations(&prev.components));
                        change.new_declarations = Some(declarations(&step.components));
                    }
                    report.changes.push(change);
                }
            }
            _ => {}
        }
        Ok(report)
    }
}

/// Execution `id` and its run, or `None` when it is no longer in the store (garbage
/// collection removed its run).
fn execution_and_run(store: &Store, id: i64) -> Result<Option<(StepRecord, RunRecord)>> {
    match store
        .execution(id)
        .and_then(|e| Ok((e, store.execution_run(id)?)))
    {
        Ok(found) => Ok(Some(found)),
        Err(Error::UnknownRun(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What input `input` of `rec` is when a built-in call produced it: for a gather, how the
/// list changed since the one the earlier execution (`prev`: its key components) read;
/// for a map's split, `rec`'s item. `None` when it is not, or when a record it needs
/// cannot be read (the change is then shown as it is).
fn through_recorded(
    store: &Store,
    prev: &KeyComponents,
    rec: &StepRecord,
    input: &str,
) -> Option<Through> {
    let id = rec
        .inputs
        .iter()
        .find(|i| i.name == input)
        .and_then(|i| i.producer_execution)?;
    let made = store.execution(id).ok()?;
    if made.step == crate::gather::GATHER_STEP {
        let old_hash = prev.inputs.iter().find_map(|i| match i {
            InputComponent::Artifact {
                name, content_hash, ..
            } if name == input => content_hash.parse::<Hash128>().ok(),
            _ => None,
        })?;
        let old = store.artifact_by_hash(old_hash).ok()?;
        let gathered = store.execution(old.execution_id()).ok()?;
        return (gathered.step == crate::gather::GATHER_STEP)
            .then(|| Through::List(Reason::differences(&gathered.components, &made.components)));
    }
    if made.step == crate::map::SPLIT_STEP {
        let list_of = |split: &StepRecord| {
            let id = split.inputs.first()?.producer_execution?;
            store.execution(id).ok()
        };
        return crate::store::split_item(rec, input, &made, &list_of);
    }
    None
}

/// Where input `name` of `rec` came from, then (`prev`) and now.
fn input_detail(
    store: &Store,
    prev: &KeyComponents,
    rec: &StepRecord,
    name: &str,
    producer: &str,
) -> InputDetail {
    let hash_of = |c: &KeyComponents| {
        c.inputs.iter().find_map(|i| match i {
            InputComponent::Artifact {
                name: n,
                content_hash,
                ..
            } if n == name => Some(content_hash.clone()),
            _ => None,
        })
    };
    let producer_execution = rec
        .inputs
        .iter()
        .find(|i| i.name == name)
        .and_then(|i| i.producer_execution);
    let mut detail = InputDetail {
        old_content_hash: hash_of(prev),
        new_content_hash: hash_of(&rec.components),
        producer: producer.to_string(),
        producer_execution,
        producer_run: None,
        producer_step: None,
        producer_status: None,
    };
    // The detail is a courtesy: a producer that cannot be read is shown by name only.
    if let Some(id) = producer_execution {
        if let (Ok(p), Ok(r)) = (store.execution(id), store.execution_run(id)) {
            detail.producer_run = Some(r.name);
            detail.producer_step = Some(p.name);
            detail.producer_status = Some(p.status);
        }
    }
    detail
}

/// `inputs [xs (artifact), factor: f64], outputs [out: Vec<f64> (bincode v1)]`
fn declarations(c: &KeyComponents) -> String {
    let inputs: Vec<String> = c
        .inputs
        .iter()
        .map(|i| match i {
            InputComponent::Artifact { name, .. } => format!("{name} (artifact)"),
            InputComponent::Parameter {
                name, type_name, ..
            } => format!("{name}: {type_name}"),
        })
        .collect();
    let outputs: Vec<String> = c
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{}: {} ({} v{})",
                o.name, o.type_name, o.cacher, o.cacher_version
            )
        })
        .collect();
    format!(
        "inputs [{}], outputs [{}]",
        inputs.join(", "),
        outputs.join(", ")
    )
}

fn optional_seconds<S: serde::Serializer>(
    d: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => seconds(d, serializer),
        None => serializer.serialize_none(),
    }
}

/// What happened to the step, then, for a step that ran, what it was compared with and
/// each change with its detail.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.run.0.name;
        let step = &self.step;
        let reason = self.reason.as_deref().unwrap_or_default();
        let error = self.error.as_deref().unwrap_or("(no message recorded)");
        match self.status {
            StepStatus::Cached => {
                if let Some(used) = &self.reused {
                    let id = used.execution_id;
                    match (&used.step, &used.run_name, used.started_at_us, used.duration) {
                        (Some(used_step), Some(used_run), Some(started), Some(took)) => writeln!(
                            f,
                            "Step `{step}` in run `{run}` was cached: it reused execution {id} (step `{used_step}` in run `{used_run}`, started {} UTC, ran in {}).",
                            timestamp(started),
                            duration(took),
                        )?,
                        _ => writeln!(
                            f,
                            "Step `{step}` in run `{run}` was cached: it reused execution {id}, whose run has since been removed from the store (e.g. by `pipeline gc`); the outputs it reused are recorded with this step.",
                        )?,
                    }
                }
                if let Some(key) = &self.cache_key {
                    writeln!(f, "Cache key: {key}")?;
                }
                for o in &self.outputs {
                    writeln!(
                        f,
                        "  output `{}`: {} ({}, content {})",
                        o.name,
                        size(o.size),
                        o.cacher,
                        short_hash(o.content_hash)
                    )?;
                }
                return Ok(());
            }
            StepStatus::Skipped => {
                let why = if reason.is_empty() {
                    "an upstream step failed"
                } else {
                    reason
                };
                return writeln!(f, "Step `{step}` in run `{run}` was skipped: {why}.");
            }
            StepStatus::Running => {
                return writeln!(
                    f,
                    "Step `{step}` in run `{run}` is running: it has not finished yet ({reason})."
                );
            }
            StepStatus::Executed => writeln!(
                f,
                "Step `{step}` in run `{run}` executed in {}: {reason}.",
                duration(self.duration),
            )?,
            StepStatus::Failed => {
                writeln!(
                    f,
                    "Step `{step}` in run `{run}` failed after {}: {error}",
                    duration(self.duration),
                )?;
                writeln!(f, "It ran because: {reason}.")?;
            }
        }
        let Some(prev) = &self.previous else {
            // A map's per-item call is compared only with the same item of earlier runs
            // (other items are other data), so "the step's first" would be false.
            if let Some((_, item)) = crate::map::item_call(&self.step) {
                return writeln!(
                    f,
                    "No earlier successful execution of `{}` (item {item} of its list) is \
                     recorded: this was the item's first. Each item is compared only with \
                     the same item of earlier runs.",
                    self.step
                );
            }
            return writeln!(
                f,
                "No earlier execution of step `{}` is recorded: this was its first.",
                self.step_name
            );
        };
        match (prev.removed, prev.status, prev.started_at_us) {
            (false, Some(status), Some(started)) => writeln!(
                f,
                "Compared with the earlier execution of the same call: execution {} (`{}` in run `{}`, {status}, started {} UTC):",
                prev.execution_id,
                prev.step,
                prev.run_name,
                timestamp(started)
            )?,
            _ => writeln!(
                f,
                "Compared with the earlier execution of the same call: execution {} (`{}` in run `{}`, since removed from the store; its key components were recorded with this step):",
                prev.execution_id, prev.step, prev.run_name,
            )?,
        }
        if self.changes.is_empty() {
            let same = self.cache_key == Some(prev.cache_key);
            writeln!(
                f,
                "  no key component changed{}; it ran because: {reason}.",
                if same { " (same cache key)" } else { "" },
            )?;
        }
        for change in &self.changes {
            writeln!(f, "  - {}", change.text)?;
            if let Some(d) = &change.detail {
                writeln!(
                    f,
                    "      content {} -> {}",
                    d.old_content_hash.as_deref().map(short).unwrap_or("?"),
                    d.new_content_hash.as_deref().map(short).unwrap_or("?"),
                )?;
                let producer = &d.producer;
                match (
                    d.producer_execution,
                    &d.producer_step,
                    &d.producer_run,
                    d.producer_status,
                ) {
                    (Some(id), Some(p_step), Some(p_run), Some(p_status)) => writeln!(
                        f,
                        "      produced by `{producer}`: execution {id} (`{p_step}` in run `{p_run}`, {p_status}); see `pipeline explain {p_run} {p_step}`",
                    )?,
                    _ => writeln!(f, "      produced by `{producer}`")?,
                }
            }
            if let (Some(old), Some(new)) = (&change.old_declarations, &change.new_declarations) {
                writeln!(f, "      before: {old}")?;
                writeln!(f, "      now:    {new}")?;
            }
        }
        Ok(())
    }
}
