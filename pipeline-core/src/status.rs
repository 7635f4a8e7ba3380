//! Statuses and reasons: what happened to a step or a run, and why.
//!
//! These types sit below both the store (which records them) and the run report (which
//! returns them), so neither imports the other for them. Each status is written to the
//! store as its [`Display`](fmt::Display) text and read back with [`FromStr`]; a text this
//! version does not know is an error ([`UnknownValue`], surfaced by the store as
//! [`Error::UnknownStoredValue`](crate::Error::UnknownStoredValue)), never a default.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::UnknownValue;
use crate::signature::{CodePart, CodePartKind};

/// What happened to a step in a run.
///
/// Written to the store and shown by the CLI as its [`Display`](fmt::Display) text
/// (`executed`, `cached`, ...), which [`FromStr`] reads back. New statuses may be added,
/// so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// The step body ran and its outputs were stored.
    Executed,
    /// A completed execution with the same cache key was reused; the body did not run.
    Cached,
    /// The body returned `Err` or panicked, or its outputs could not be stored.
    Failed,
    /// Not run: an upstream step failed, or the run was cancelled before the step started
    /// (its [`Reason`] says which).
    Skipped,
    /// The body is executing now (recorded while it runs, so other processes can watch).
    Running,
}

impl StepStatus {
    /// Every status, in the order above.
    pub const ALL: [StepStatus; 5] = [
        StepStatus::Executed,
        StepStatus::Cached,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Running,
    ];

    /// The stored text: the one table [`Display`](fmt::Display) and [`FromStr`] share.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepStatus::Executed => "executed",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Running => "running",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = UnknownValue;

    /// Reads a status as [`Display`](fmt::Display) writes it.
    ///
    /// # Errors
    ///
    /// [`UnknownValue`] for a text no status of this version has.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue::new("step status", s))
    }
}

/// State of a run.
///
/// Written to the store and shown by the CLI as its [`Display`](fmt::Display) text
/// (`running`, `completed`, ...), which [`FromStr`] reads back. New statuses may be added,
/// so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Still running, or the process died during the run.
    Running,
    /// Every step executed or was cached.
    Completed,
    /// At least one step failed.
    Failed,
    /// Cancelled through a [`CancelToken`](crate::CancelToken): the steps running then
    /// finished, the ones not started were recorded [`StepStatus::Skipped`] with
    /// [`Reason::Cancelled`].
    Cancelled,
}

impl RunStatus {
    /// Every status, in the order above.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The stored text: the one table [`Display`](fmt::Display) and [`FromStr`] share.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = UnknownValue;

    /// Reads a status as [`Display`](fmt::Display) writes it.
    ///
    /// # Errors
    ///
    /// [`UnknownValue`] for a text no status of this version has.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownValue::new("run status", s))
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
    /// A `secret` parameter differs: its values are never shown, so neither is this.
    SecretChanged {
        /// Parameter name.
        name: String,
    },
    /// The reused execution is older than the step's `cache_expires` (or the run's): the
    /// step executes again under the same key.
    CacheExpired {
        /// How long before the lookup the execution finished (seconds in the JSON, as
        /// `age_s`).
        #[serde(rename = "age_s", serialize_with = "seconds")]
        age: std::time::Duration,
        /// The expiry that applied (seconds in the JSON, as `expires_after_s`).
        #[serde(rename = "expires_after_s", serialize_with = "seconds")]
        expires_after: std::time::Duration,
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
    /// A gathered list (fan-in, or a map's result) has another number of items: items
    /// were added or removed (each item new to the list is its own
    /// [`Reason::ListItemChanged`]).
    ListLengthChanged {
        /// Items before.
        old: usize,
        /// Items now.
        new: usize,
    },
    /// More items of a gathered list changed than are listed one by one (the first few
    /// are each a [`Reason::ListItemChanged`]), so a reason stays one readable line.
    MoreItemsChanged {
        /// Changed items not listed.
        more: usize,
    },
    /// An item of a gathered list (fan-in, or a map's result) whose content the earlier
    /// list did not hold: a new item, or one changed in place. Items are compared by
    /// content, so an item inserted at the front is the one item that changed, not every
    /// item after it.
    ListItemChanged {
        /// Its position in the list now.
        index: usize,
        /// The call that produced it (`fit_ridge_2`, `train_fold[3]`).
        producer: String,
    },
    /// A gathered list holds the same items as before, in another order.
    ListReordered,
    /// A map's per-item call whose item changed: item `index` of the list, read through
    /// the map's built-in split.
    ItemChanged {
        /// The input that is the item.
        name: String,
        /// The item's position in the list.
        index: usize,
        /// In a map nested in another, where the list is an item itself: its position in
        /// the outer list, innermost first (`[1]`: the list is item 1 of `list`'s list).
        /// Empty for a list a call returned.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        outer: Vec<usize>,
        /// The call that produced the (outermost) list (`make_folds`).
        list: String,
    },
    /// An input that is a gathered list (fan-in, or a map's result) changed: how the list
    /// changed, read through the built-in gather (its [`Reason::ListItemChanged`],
    /// [`Reason::MoreItemsChanged`], [`Reason::ListLengthChanged`],
    /// [`Reason::ListReordered`]).
    ListInputChanged {
        /// Input name.
        name: String,
        /// How the list changed; at least one.
        changes: Vec<Reason>,
    },
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
    /// The run was cancelled (see [`CancelToken`](crate::CancelToken)) before the step
    /// started.
    Cancelled,
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

fn seconds<S: serde::Serializer>(
    d: &std::time::Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
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
            Reason::SecretChanged { name } => {
                write!(
                    f,
                    "parameter `{name}` changed ({})",
                    crate::key::SECRET_CHANGED
                )
            }
            Reason::CacheExpired { age, expires_after } => write!(
                f,
                "cached execution expired (produced {} ago, expires after {})",
                crate::policy::human_duration(*age),
                crate::policy::human_duration(*expires_after)
            ),
            Reason::InputChanged { name, producer } => {
                write!(f, "input `{name}` changed (produced by `{producer}`)")
            }
            Reason::DeclarationChanged => f.write_str("input or output declarations changed"),
            Reason::MoreItemsChanged { more } => {
                let items = if *more == 1 { "item" } else { "items" };
                write!(f, "{more} more {items} changed")
            }
            Reason::ListLengthChanged { old, new } => {
                let items = if *new == 1 { "item" } else { "items" };
                write!(f, "the list has {new} {items}, was {old}")
            }
            Reason::ListItemChanged { index, producer } => {
                write!(f, "item {index} changed (produced by `{producer}`)")
            }
            Reason::ListReordered => f.write_str("the same items, in another order"),
            Reason::ItemChanged {
                index, outer, list, ..
            } => {
                write!(f, "item {index} of ")?;
                for o in outer {
                    write!(f, "item {o} of ")?;
                }
                write!(f, "`{list}`'s list changed")
            }
            Reason::ListInputChanged { name, changes } => {
                write!(f, "input `{name}` changed: ")?;
                write_joined(f, changes)
            }
            Reason::CacheDisabled => f.write_str("caching disabled"),
            Reason::BlobMissing { output } => write!(f, "blob of output `{output}` missing"),
            Reason::BlobCorrupt { output } => write!(f, "blob of output `{output}` corrupt"),
            Reason::UpstreamFailed { step } => write!(f, "upstream step `{step}` failed"),
            Reason::Cancelled => f.write_str("run cancelled before the step started"),
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
            Reason::Changes { changes } => write_joined(f, changes),
        }
    }
}

/// Reasons one after another, separated by `; `.
fn write_joined(f: &mut fmt::Formatter<'_>, reasons: &[Reason]) -> fmt::Result {
    for (i, reason) in reasons.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{reason}")?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_statuses_round_trip_through_display_and_from_str() {
        for status in StepStatus::ALL {
            let text = status.to_string();
            assert_eq!(text.parse::<StepStatus>(), Ok(status), "{text}");
            // The stored text is the serde name too, so JSON and the store agree.
            assert_eq!(serde_json::to_value(status).unwrap(), text.as_str());
        }
        assert_eq!(StepStatus::Running.to_string(), "running");
    }

    #[test]
    fn run_statuses_round_trip_through_display_and_from_str() {
        for status in RunStatus::ALL {
            let text = status.to_string();
            assert_eq!(text.parse::<RunStatus>(), Ok(status), "{text}");
            assert_eq!(serde_json::to_value(status).unwrap(), text.as_str());
        }
        assert_eq!(RunStatus::Cancelled.to_string(), "cancelled");
    }

    #[test]
    fn an_unknown_status_text_is_an_error_naming_it() {
        let err = "paused".parse::<StepStatus>().unwrap_err();
        assert_eq!((err.what(), err.value()), ("step status", "paused"));
        assert_eq!(err.to_string(), "unknown step status `paused`");
        let err = "archived".parse::<RunStatus>().unwrap_err();
        assert_eq!((err.what(), err.value()), ("run status", "archived"));
        // Case matters: the store writes lowercase, anything else was not written by us.
        assert!("Executed".parse::<StepStatus>().is_err());
        assert!("".parse::<RunStatus>().is_err());
    }

    #[test]
    fn cancelled_reason_reads_as_a_sentence() {
        assert_eq!(
            Reason::Cancelled.to_string(),
            "run cancelled before the step started"
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
