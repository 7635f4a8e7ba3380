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
    /// Explains a cache miss by comparing the new key components with those of the earlier
    /// execution of the same call: every one of [`Reason::differences`], as the difference
    /// itself when there is one, as [`Reason::Changes`] when there are several.
    pub(crate) fn explain(prev: Option<&KeyComponents>, new: &KeyComponents) -> Reason {
        let Some(prev) = prev else {
            return Reason::FirstExecution;
        };
        let mut changes = Reason::differences(prev, new);
        match changes.len() {
            0 => Reason::KeyChanged,
            1 => changes.remove(0),
            _ => Reason::Changes { changes },
        }
    }

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

    /// Every difference between two sets of key components: the step's module, its code
    /// (one reason per changed part when both sides list their parts), then each changed
    /// parameter (its type's shape first) and input in declaration order, then the shapes
    /// of output types, then declarations.
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
                    Some(
                        before @ InputComponent::Parameter {
                            hash: h0,
                            type_name: t0,
                            shape: s0,
                            ..
                        },
                    ),
                    InputComponent::Parameter {
                        name,
                        hash,
                        type_name,
                        shape,
                        ..
                    },
                ) => {
                    // Records from before key format 2 have no shape: no claim about it.
                    if t0 == type_name && shape_changed(s0, shape) {
                        out.push(Reason::ParameterShapeChanged {
                            name: name.clone(),
                            type_name: type_name.clone(),
                        });
                    }
                    if h0 != hash || t0 != type_name {
                        out.push(Reason::ParameterChanged {
                            name: name.clone(),
                            old: before.value_text().unwrap_or_default(),
                            new: input.value_text().unwrap_or_default(),
                        });
                    }
                }
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
        for output in &new.outputs {
            let before = old.outputs.iter().find(|o| o.name == output.name);
            if let Some(before) = before {
                if before.type_name == output.type_name
                    && shape_changed(&before.shape, &output.shape)
                {
                    out.push(Reason::OutputShapeChanged {
                        output: output.name.clone(),
                        type_name: output.type_name.clone(),
                    });
                }
            }
        }
        // Shapes are compared above; here everything else about the outputs.
        let outputs = |c: &KeyComponents| {
            c.outputs
                .iter()
                .map(|o| {
                    (
                        o.name.clone(),
                        o.type_name.clone(),
                        o.cacher.clone(),
                        o.cacher_version,
                    )
                })
                .collect::<Vec<_>>()
        };
        if outputs(old) != outputs(new) || shape(old) != shape(new) {
            out.push(Reason::DeclarationChanged);
        }
        out
    }
}

/// Whether two recorded shape fingerprints differ; an empty one (recorded before key format
/// 2) is unknown, not different.
fn shape_changed(old: &str, new: &str) -> bool {
    !old.is_empty() && !new.is_empty() && old != new
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
    use crate::key::OutputDecl;

    fn components(output_shape: &str, param_shape: &str, param_hash: &str) -> KeyComponents {
        KeyComponents {
            format: crate::key::KEY_FORMAT_VERSION,
            step: "split".into(),
            module: String::new(),
            code_parts: Vec::new(),
            code_signature: "0000000000000001".into(),
            outputs: vec![OutputDecl {
                name: "output".into(),
                type_name: "my_crate::data::Split".into(),
                shape: output_shape.into(),
                cacher: "bincode".into(),
                cacher_version: 1,
            }],
            inputs: vec![InputComponent::Parameter {
                name: "mode".into(),
                type_name: "my_crate::Mode".into(),
                shape: param_shape.into(),
                hash: param_hash.into(),
                value: serde_json::json!("Fast"),
                text: None,
            }],
        }
    }

    #[test]
    fn an_output_shape_change_is_named_with_its_type() {
        let old = components("aa", "pp", "h1");
        let new = components("bb", "pp", "h1");
        let diffs = Reason::differences(&old, &new);
        assert_eq!(
            diffs,
            vec![Reason::OutputShapeChanged {
                output: "output".into(),
                type_name: "my_crate::data::Split".into(),
            }]
        );
        assert_eq!(
            Reason::explain(Some(&old), &new).to_string(),
            "output type `Split` changed shape"
        );
    }

    #[test]
    fn a_parameter_shape_change_comes_before_its_value_change() {
        let old = components("aa", "pp", "h1");
        let same_value = components("aa", "qq", "h1");
        assert_eq!(
            Reason::explain(Some(&old), &same_value).to_string(),
            "type `Mode` of parameter `mode` changed shape"
        );
        let both = components("aa", "qq", "h2");
        let diffs = Reason::differences(&old, &both);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(matches!(diffs[0], Reason::ParameterShapeChanged { .. }));
        assert!(matches!(diffs[1], Reason::ParameterChanged { .. }));
    }

    #[test]
    fn records_without_shapes_claim_no_shape_change() {
        let before_shapes = components("", "", "h1");
        let now = components("aa", "pp", "h1");
        assert!(Reason::differences(&before_shapes, &now).is_empty());
    }

    #[test]
    fn a_retyped_output_is_a_declaration_change_not_a_shape_change() {
        let old = components("aa", "pp", "h1");
        let mut new = components("bb", "pp", "h1");
        new.outputs[0].type_name = "my_crate::data::Other".into();
        assert_eq!(
            Reason::differences(&old, &new),
            vec![Reason::DeclarationChanged]
        );
    }

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
