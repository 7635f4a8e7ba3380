//! The result of one pipeline run: per-step reports and the bound outputs.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::key::{InputComponent, KeyComponents};
use crate::signature::{part_changes, CodePart, CodePartKind, PartChange};
use crate::store::Store;

/// What happened to a step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step body ran and its outputs were stored.
    Executed,
    /// A completed execution with the same cache key was reused; the body did not run.
    Cached,
    /// The body returned `Err` or panicked, or its outputs could not be stored.
    Failed,
    /// Not run because an upstream step failed.
    Skipped,
}

impl StepStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepStatus::Executed => "executed",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(s: &str) -> StepStatus {
        match s {
            "executed" => StepStatus::Executed,
            "cached" => StepStatus::Cached,
            "failed" => StepStatus::Failed,
            _ => StepStatus::Skipped,
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step executed, was reused, or was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Reused the outputs of an earlier execution.
    Cached {
        /// The execution whose outputs were reused.
        execution: i64,
    },
    /// No earlier execution of this step is recorded.
    FirstExecution,
    /// The step's code signature differs from its newest earlier execution.
    CodeChanged {
        /// Earlier signature (hex).
        old: String,
        /// New signature (hex).
        new: String,
    },
    /// A named part of the step's code signature differs: its body, a helper, an included
    /// file, an `env!` value, a `cfg` predicate, a dependency's version, .. One reason per
    /// changed part; `old` is `None` for an added part, `new` for a removed one.
    CodePartChanged {
        /// What the part stands for.
        part: CodePartKind,
        /// Its name (a helper's path, a file, a variable, ..; empty for the body).
        name: String,
        /// The helper it belongs to, if not the step itself.
        helper: Option<String>,
        /// Earlier value (a hash, or a readable value for versions, `cfg` and dependencies).
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// The newest earlier execution of a step of this name was of a step defined in another
    /// module: a different step, so its outputs are not reused.
    ModuleChanged {
        /// Its module (`my_crate::celsius`).
        old: String,
        /// This step's module (`my_crate::kelvin`).
        new: String,
    },
    /// A parameter differs.
    ParameterChanged {
        /// Parameter name.
        name: String,
        /// Earlier value, as JSON.
        old: String,
        /// New value, as JSON.
        new: String,
    },
    /// An input artifact's content differs.
    InputChanged {
        /// Input name.
        name: String,
        /// The step that produced the new content.
        producer: String,
    },
    /// The inputs or outputs were declared differently (added, removed, retyped, recached).
    DeclarationChanged,
    /// Caching was off for this step in this run.
    CacheDisabled,
    /// The cached execution's blob for an output was missing.
    BlobMissing {
        /// Output name.
        output: String,
    },
    /// The cached execution's blob for an output was damaged.
    BlobCorrupt {
        /// Output name.
        output: String,
    },
    /// An upstream step failed.
    UpstreamFailed {
        /// The failed or skipped upstream step.
        step: String,
    },
    /// The key differs from every earlier one in a way not listed above.
    KeyChanged,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Cached { execution } => write!(f, "reused execution {execution}"),
            Reason::FirstExecution => f.write_str("no earlier execution"),
            Reason::CodeChanged { old, new } => {
                write!(f, "code signature changed ({old} -> {new})")
            }
            Reason::CodePartChanged {
                part,
                name,
                helper,
                old,
                new,
            } => {
                let part = CodePart {
                    kind: *part,
                    name: name.clone(),
                    helper: helper.clone(),
                    value: String::new(),
                };
                write_part_change(f, &part, old.as_deref(), new.as_deref())
            }
            Reason::ModuleChanged { old, new } => write!(
                f,
                "a step of this name in another module ran before (`{old}`, now `{new}`)"
            ),
            Reason::ParameterChanged { name, old, new } => {
                write!(f, "parameter `{name}` changed ({old} -> {new})")
            }
            Reason::InputChanged { name, producer } => {
                write!(f, "input `{name}` changed (produced by `{producer}`)")
            }
            Reason::DeclarationChanged => f.write_str("input or output declarations changed"),
            Reason::CacheDisabled => f.write_str("caching disabled"),
            Reason::BlobMissing { output } => write!(f, "blob of output `{output}` missing"),
            Reason::BlobCorrupt { output } => write!(f, "blob of output `{output}` corrupt"),
            Reason::UpstreamFailed { step } => write!(f, "upstream step `{step}` failed"),
            Reason::KeyChanged => f.write_str("cache key changed"),
        }
    }
}

/// `step body changed`, `helper `scale` changed`, `dependency `smartcore` 0.4.1 -> 0.4.2`,
/// `cfg(feature = "fast") changed (false -> true)`, `helper `clip` added`.
fn write_part_change(
    f: &mut fmt::Formatter<'_>,
    part: &CodePart,
    old: Option<&str>,
    new: Option<&str>,
) -> fmt::Result {
    let label = part.label();
    match (old, new) {
        (Some(old), Some(new)) if part.kind == CodePartKind::Dependency => {
            write!(f, "{label} {old} -> {new}")
        }
        (Some(old), Some(new)) if part.value_is_readable() => {
            write!(f, "{label} changed ({old} -> {new})")
        }
        (Some(_), Some(_)) => write!(f, "{label} changed"),
        (None, Some(new)) if part.value_is_readable() => write!(f, "{label} added ({new})"),
        (Some(old), None) if part.value_is_readable() => write!(f, "{label} removed (was {old})"),
        (None, _) => write!(f, "{label} added"),
        (Some(_), None) => write!(f, "{label} removed"),
    }
}

impl Reason {
    /// Explains a cache miss by comparing the new key components with the newest earlier
    /// execution's: the first of [`Reason::differences`], code first.
    pub(crate) fn explain(prev: Option<&KeyComponents>, new: &KeyComponents) -> Reason {
        let Some(prev) = prev else {
            return Reason::FirstExecution;
        };
        Reason::differences(prev, new)
            .into_iter()
            .next()
            .unwrap_or(Reason::KeyChanged)
    }

    /// Every difference between two sets of key components: the step's module, its code
    /// (one reason per changed part when both sides list their parts), then each changed
    /// parameter and input in declaration order, then declarations.
    pub fn differences(old: &KeyComponents, new: &KeyComponents) -> Vec<Reason> {
        let mut out = Vec::new();
        if !old.module.is_empty() && !new.module.is_empty() && old.module != new.module {
            out.push(Reason::ModuleChanged {
                old: old.module.clone(),
                new: new.module.clone(),
            });
        }
        if old.code_signature != new.code_signature {
            let changes = if old.code_parts.is_empty() || new.code_parts.is_empty() {
                Vec::new()
            } else {
                part_changes(&old.code_parts, &new.code_parts)
            };
            if changes.is_empty() {
                // Rows written before parts were recorded.
                out.push(Reason::CodeChanged {
                    old: old.code_signature.clone(),
                    new: new.code_signature.clone(),
                });
            }
            for change in changes {
                let (part, old, new) = match change {
                    PartChange::Added(p) => {
                        let new = Some(p.value.clone());
                        (p, None, new)
                    }
                    PartChange::Removed(p) => {
                        let old = Some(p.value.clone());
                        (p, old, None)
                    }
                    PartChange::Changed(before, p) => {
                        let new = Some(p.value.clone());
                        (p, Some(before.value), new)
                    }
                };
                out.push(Reason::CodePartChanged {
                    part: part.kind,
                    name: part.name,
                    helper: part.helper,
                    old,
                    new,
                });
            }
        }
        for input in &new.inputs {
            let before = old.inputs.iter().find(|i| i.name() == input.name());
            match (before, input) {
                (
                    Some(InputComponent::Parameter {
                        hash: h0,
                        value: v0,
                        type_name: t0,
                        ..
                    }),
                    InputComponent::Parameter {
                        name,
                        hash,
                        value,
                        type_name,
                    },
                ) if h0 != hash || t0 != type_name => out.push(Reason::ParameterChanged {
                    name: name.clone(),
                    old: v0.to_string(),
                    new: value.to_string(),
                }),
                (
                    Some(InputComponent::Artifact {
                        content_hash: h0, ..
                    }),
                    InputComponent::Artifact {
                        name,
                        content_hash,
                        producer,
                    },
                ) if h0 != content_hash => out.push(Reason::InputChanged {
                    name: name.clone(),
                    producer: producer.clone(),
                }),
                _ => {}
            }
        }
        let shape = |c: &KeyComponents| {
            c.inputs
                .iter()
                .map(|i| {
                    (
                        i.name().to_string(),
                        matches!(i, InputComponent::Parameter { .. }),
                    )
                })
                .collect::<Vec<_>>()
        };
        if old.outputs != new.outputs || shape(old) != shape(new) {
            out.push(Reason::DeclarationChanged);
        }
        out
    }
}

/// What happened to one step in a run.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub(crate) name: String,
    pub(crate) step: String,
    pub(crate) status: StepStatus,
    pub(crate) duration: Duration,
    pub(crate) cache_key: Option<String>,
    pub(crate) reason: Reason,
    pub(crate) error: Option<String>,
    pub(crate) execution_id: Option<i64>,
}

impl StepReport {
    /// Name within the run (`name`, `name_2`, ... when a step is called more than once).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's own name, shared by repeated calls.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Executed, cached, failed or skipped.
    pub fn status(&self) -> StepStatus {
        self.status
    }

    /// Time spent, including storing outputs; near zero for cached and skipped steps.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Cache key (32 hex digits); `None` when the step was skipped before its inputs existed.
    pub fn cache_key(&self) -> Option<&str> {
        self.cache_key.as_deref()
    }

    /// Why the step executed, was reused, or was skipped.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The error message of a failed step.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Id of this step's execution record in the store.
    pub fn execution_id(&self) -> Option<i64> {
        self.execution_id
    }
}

/// A finished pipeline run: step reports and outputs bound to the stored artifacts.
#[derive(Debug, Clone)]
pub struct Run<O> {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) pipeline: String,
    pub(crate) output: O,
    pub(crate) steps: Vec<StepReport>,
    pub(crate) duration: Duration,
    pub(crate) store: Store,
}

impl<O> Run<O> {
    /// Unique run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Run name, e.g. `first_pipeline-2026_11_23-12_05_54_573248`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The pipeline's outputs, bound to this run's artifacts; `load()` them on demand.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// Every step in pipeline order.
    pub fn steps(&self) -> &[StepReport] {
        &self.steps
    }

    /// The step called `name` in this run.
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Wall time of the run.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The store the run was recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
