//! `pipeline gc`: what garbage collection removed, or would remove.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::text::{duration, size};
use crate::store::{GcPolicy, GcReport, Store};

/// A [`GcReport`] with the policy it ran under. Serializes as the report.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct GcSummary {
    /// What was (or, in a dry run, would be) removed and kept.
    pub report: GcReport,
    /// The policy's minimum age of an unreferenced blob file before it is removed.
    #[serde(skip)]
    pub min_blob_age: Duration,
}

impl GcSummary {
    /// Runs [`Store::gc`] with `policy`.
    ///
    /// # Errors
    ///
    /// What [`Store::gc`] returns.
    pub fn run(store: &Store, policy: &GcPolicy) -> crate::Result<GcSummary> {
        Ok(GcSummary {
            report: store.gc(policy)?,
            min_blob_age: policy.min_blob_age,
        })
    }
}

/// Which runs were removed, how many blobs and bytes were freed, what was kept.
impl fmt::Display for GcSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        let (verb, blob_verb) = if report.dry_run {
            ("Would remove", "would free")
        } else {
            ("Removed", "freed")
        };
        let total = report.runs_kept + report.runs_removed.len();
        if report.runs_removed.is_empty() {
            writeln!(f, "{verb} no runs (of {total}).")?;
        } else {
            writeln!(f, "{verb} {} of {total} runs:", report.runs_removed.len())?;
            for name in &report.runs_removed {
                writeln!(f, "  {name}")?;
            }
        }
        writeln!(
            f,
            "{verb} {} unreferenced blob(s): {blob_verb} {} ({} bytes).",
            report.blobs_removed,
            size(report.bytes_freed),
            report.bytes_freed
        )?;
        // The hint only helps when an age kept blobs back.
        if report.blobs_removed == 0
            && !report.runs_removed.is_empty()
            && !self.min_blob_age.is_zero()
        {
            writeln!(
                f,
                "(Blob files younger than {} are kept; lower --min-age to include them.)",
                duration(self.min_blob_age)
            )?;
        }
        if report.temp_files_removed > 0 {
            writeln!(
                f,
                "{verb} {} temporary file(s) left by dead processes.",
                report.temp_files_removed
            )?;
        }
        writeln!(
            f,
            "Kept {} run(s), whose blobs take {}.",
            report.runs_kept,
            size(report.bytes_kept)
        )?;
        if report.dry_run {
            writeln!(f, "Dry run: nothing was removed.")?;
        }
        Ok(())
    }
}
