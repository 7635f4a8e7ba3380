//! `pipeline verify [--repair]`: what [`Store::verify`] or [`Store::repair`] found.

use std::fmt;

use serde::Serialize;

use super::text::size;
use crate::store::{Problem, Store, VerifyReport};

/// A [`VerifyReport`] with whether the store is fine. Serializes as the report's fields
/// plus `ok`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    /// What the check found (and the repair restored).
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Whether no problem remains.
    pub ok: bool,
    /// Whether this was `--repair`.
    #[serde(skip)]
    pub repair: bool,
}

impl VerifySummary {
    /// Checks the store ([`Store::verify`]), or checks it and restores what the metadata
    /// alone can restore when `repair` ([`Store::repair`]).
    ///
    /// # Errors
    ///
    /// What [`Store::verify`] or [`Store::repair`] returns.
    pub fn run(store: &Store, repair: bool) -> crate::Result<VerifySummary> {
        let report = if repair {
            store.repair()
        } else {
            store.verify()
        }?;
        Ok(VerifySummary {
            ok: report.is_ok(),
            report,
            repair,
        })
    }
}

/// What was repaired, how many blobs were checked, and one line per problem left, naming
/// what to do.
impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        if !report.repaired.is_empty() {
            writeln!(f, "Repaired {}:", count(report.repaired.len()))?;
            for problem in &report.repaired {
                writeln!(f, "  {}", repaired(problem))?;
            }
        }
        let checked = format!(
            "Checked {} blob(s) ({})",
            report.blobs_checked,
            size(report.bytes_checked)
        );
        if report.is_ok() {
            return writeln!(f, "{checked}: no problems.");
        }
        writeln!(f, "{checked}: {}:", count(report.problems.len()))?;
        for problem in &report.problems {
            writeln!(f, "  {}", describe(problem))?;
        }
        let sidecars = report.problems.iter().any(|p| {
            matches!(
                p,
                Problem::MissingSidecar { .. } | Problem::CorruptSidecar { .. }
            )
        });
        if sidecars && !self.repair {
            writeln!(f, "Restore the sidecars with `pipeline verify --repair`.")?;
        }
        Ok(())
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

/// One line per problem, naming what is wrong and what to do.
fn describe(problem: &Problem) -> String {
    match problem {
        Problem::MissingBlob { hash, execution } => format!(
            "blob {hash} is missing (execution {execution} produced it); rerun the pipeline to recreate it"
        ),
        Problem::CorruptBlob { hash, actual } => format!(
            "blob {hash} is corrupt (its bytes hash to {actual}); the next run that needs it re-executes its step"
        ),
        Problem::IncompleteExecution {
            execution,
            declared,
            recorded,
        } => format!(
            "execution {execution} declares {declared} output(s) but records {recorded}; it is never reused"
        ),
        Problem::OrphanExecution { execution } => {
            format!("execution {execution} belongs to no recorded run")
        }
        Problem::InterruptedRun { run } => format!(
            "run {run} is marked running, but its process is gone; `pipeline gc` or the next run marks it failed"
        ),
        Problem::LeftoverTempFile { path } => format!(
            "temporary file {} was left by a process that is gone; `pipeline gc` or the next run removes it",
            path.display()
        ),
        Problem::MissingSidecar { hash, path } => {
            format!("blob {hash} has no sidecar {}", path.display())
        }
        Problem::CorruptSidecar { hash, path } => format!(
            "sidecar {} of blob {hash} is not valid JSON or names another blob",
            path.display()
        ),
    }
}

/// What `--repair` did about a problem.
fn repaired(problem: &Problem) -> String {
    match problem {
        Problem::MissingSidecar { hash, path } | Problem::CorruptSidecar { hash, path } => {
            format!("restored sidecar {} of blob {hash}", path.display())
        }
        other => describe(other),
    }
}
