//! `pipeline verify [--repair]`: renders [`pipeline::Store::verify`] and
//! [`pipeline::Store::repair`].

use std::fmt::Write as _;

use pipeline::Problem;
use serde_json::Value;

use super::{to_json, CliResult, Ctx, Printed};
use crate::fmt::size;

impl Ctx<'_> {
    /// Exit code 1 when problems remain after the check (and the repair).
    pub(super) fn verify(&self, repair: bool) -> CliResult<Printed> {
        let report = if repair {
            self.store.repair()
        } else {
            self.store.verify()
        }
        .map_err(|e| self.error(e))?;
        let code = u8::from(!report.is_ok());
        if self.json {
            let mut doc = serde_json::to_value(&report).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut doc {
                map.insert("ok".into(), Value::Bool(report.is_ok()));
            }
            return Ok(Printed {
                text: to_json(&doc),
                code,
            });
        }
        let mut out = String::new();
        if !report.repaired.is_empty() {
            let _ = writeln!(out, "Repaired {}:", count(report.repaired.len()));
            for problem in &report.repaired {
                let _ = writeln!(out, "  {}", repaired(problem));
            }
        }
        let checked = format!(
            "Checked {} blob(s) ({})",
            report.blobs_checked,
            size(report.bytes_checked)
        );
        if report.is_ok() {
            let _ = writeln!(out, "{checked}: no problems.");
            return Ok(Printed { text: out, code });
        }
        let _ = writeln!(out, "{checked}: {}:", count(report.problems.len()));
        for problem in &report.problems {
            let _ = writeln!(out, "  {}", describe(problem));
        }
        let sidecars = report.problems.iter().any(|p| {
            matches!(
                p,
                Problem::MissingSidecar { .. } | Problem::CorruptSidecar { .. }
            )
        });
        if sidecars && !repair {
            let _ = writeln!(out, "Restore the sidecars with `pipeline verify --repair`.");
        }
        Ok(Printed { text: out, code })
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
        other => format!("{other:?}"),
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
