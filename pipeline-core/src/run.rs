//! The result of one pipeline run: per-step reports and the bound outputs.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::signature::{CodePart, CodePartKind};
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
    /// Executing right now: its run claimed the key and recorded the row, with its start
    /// time, so that other processes can watch it. Its commit turns it into `Executed` or
    /// `Failed`; a row of a process that died stays `Running` until the store recovers it.
    Running,
}

impl StepStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepStatus::Executed => "executed",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Running => "running",
        }
    }

    /// Reads a stored status; a text this version does not know is an error, never a
    /// default.
    pub(crate) fn parse(s: &str) -> Result<StepStatus, crate::error::UnknownValue> {
        match s {
            "executed" => Ok(StepStatus::Executed),
            "cached" => Ok(StepStatus::Cached),
            "failed" => Ok(StepStatus::Failed),
            "skipped" => Ok(StepStatus::Skipped),
            "running" => Ok(StepStatus::Running),
            other => Err(crate::error::UnknownValue {
                what: "step status",
                value: other.to_string(),
            }),
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
    /// The step's code signature differs from the earlier execution of the same call.
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
    /// The serde shape of an output's type changed (fields, their order or types, enum
    /// variants), so bytes stored for the old shape are not reused.
    OutputShapeChanged {
        /// Output name.
        output: String,
        /// Rust type name of the output.
        type_name: String,
    },
    /// The serde shape of a parameter's type changed.
    ParameterShapeChanged {
        /// Parameter name.
        name: String,
        /// Rust type name of the parameter.
        type_name: String,
    },
    /// The cached execution's stored output could not be decoded as the type the step
    /// returns (found when it was last loaded), so it is computed again.
    Undecodable {
        /// Output name.
        output: String,
        /// Rust type name the bytes were decoded as.
        type_name: String,
    },
    /// More than one key component changed: every difference, in the order of
    /// [`Reason::differences`] (code signature, then parameters and inputs in declaration
    /// order, then declarations). One difference alone is reported as its own variant
    /// ([`Reason::ParameterChanged`], ...), never wrapped in this one.
    Changes {
        /// The differences, each a single-difference variant; at least two.
        changes: Vec<Reason>,
    },
}

/// `alloc::vec::Vec<my_crate::Split>` as `Vec<Split>`: type names in reasons without
/// module paths.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            segment.clear();
        } else if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else {
            out.push_str(&segment);
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(&segment);
    out
}

/// ` (output `name`)` for a named output of a multi-output step; nothing for `output`.
fn which_output(output: &str) -> String {
    if output == "output" {
        String::new()
    } else {
        format!(" (output `{output}`)")
    }
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
            Reason::OutputShapeChanged { output, type_name } => write!(
                f,
                "output type `{}` changed shape{}",
                short_type_name(type_name),
                which_output(output)
            ),
            Reason::ParameterShapeChanged { name, type_name } => write!(
                f,
                "type `{}` of parameter `{name}` changed shape",
                short_type_name(type_name)
            ),
            Reason::Undecodable { output, type_name } => write!(
                f,
                "stored output could not be decoded as `{}`{}",
                short_type_name(type_name),
                which_output(output)
            ),
            Reason::Changes { changes } => {
                for (i, change) in changes.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{change}")?;
                }
                Ok(())
            }
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
    /// The individual reasons this one stands for: the listed differences of
    /// [`Reason::Changes`], else this reason alone. Lets callers handle every changed
    /// component alike, whether one or several changed.
    ///
    /// ```
    /// use pipeline::Reason;
    ///
    /// let param = |name: &str| Reason::ParameterChanged {
    ///     name: name.into(),
    ///     old: "1".into(),
    ///     new: "2".into(),
    /// };
    /// let two = Reason::Changes {
    ///     changes: vec![param("mode"), param("eps")],
    /// };
    /// let names: Vec<String> = two
    ///     .changes()
    ///     .iter()
    ///     .filter_map(|c| match c {
    ///         Reason::ParameterChanged { name, .. } => Some(name.clone()),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(names, ["mode", "eps"]);
    /// assert_eq!(
    ///     two.to_string(),
    ///     "parameter `mode` changed (1 -> 2); parameter `eps` changed (1 -> 2)"
    /// );
    /// assert_eq!(Reason::CacheDisabled.changes(), [Reason::CacheDisabled]);
    /// ```
    pub fn changes(&self) -> &[Reason] {
        match self {
            Reason::Changes { changes } => changes,
            other => std::slice::from_ref(other),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_reason_names_the_type_and_a_named_output() {
        let single = Reason::Undecodable {
            output: "output".into(),
            type_name: "alloc::vec::Vec<my_crate::Metrics>".into(),
        };
        assert_eq!(
            single.to_string(),
            "stored output could not be decoded as `Vec<Metrics>`"
        );
        let named = Reason::Undecodable {
            output: "metrics".into(),
            type_name: "my_crate::Metrics".into(),
        };
        assert_eq!(
            named.to_string(),
            "stored output could not be decoded as `Metrics` (output `metrics`)"
        );
    }

    #[test]
    fn short_type_names_drop_module_paths() {
        for (full, short) in [
            ("u64", "u64"),
            ("my_crate::Split", "Split"),
            (
                "std::collections::hash::map::HashMap<alloc::string::String, u64>",
                "HashMap<String, u64>",
            ),
            ("(a::B, [c::D; 3], &e::F)", "(B, [D; 3], &F)"),
        ] {
            assert_eq!(short_type_name(full), short);
        }
    }
}
