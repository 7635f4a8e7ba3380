//! `pipeline diff A B`: two runs compared step by step.

use std::fmt;

use serde::Serialize;

use super::explain::Change;
use super::group::{grouped, range_name, Grouped, GROUP_LIMIT, GROUP_SHOWN};
use super::text::table;
use super::{metric_text, run_header, RunView};
use crate::error::Result;
use crate::run::StepStatus;
use crate::store::{compare_records, RunComparison, Store};

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
    /// Whether it is a built-in call of a map or a fan-in (`pipeline.split`,
    /// `pipeline.gather`): bookkeeping, not a step of the user's. The text leaves it out
    /// and [`RunDiff::changed`] does not count it; the calls that read the list or an item
    /// say what changed in it.
    pub builtin: bool,
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
        let (run_a, run_b) = (store.run(a)?, store.run(b)?);
        // Each run's records are read once, for the comparison and the metrics.
        let (records_a, records_b) = (store.run_steps(&run_a.id)?, store.run_steps(&run_b.id)?);
        let mut diff = RunDiff::from(compare_records(run_a, run_b, &records_a, &records_b));
        // Each run's metrics by call name, so pairing stays linear on 10,000-step runs.
        let by_name = |steps: Vec<crate::store::StepRecord>| {
            steps
                .into_iter()
                .filter(|s| !s.metrics.is_empty())
                .map(|s| (s.name, s.metrics))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let steps_a = by_name(records_a);
        let steps_b = by_name(records_b);
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

    /// The steps whose cache keys differ, built-in calls left out (see
    /// [`DiffStep::builtin`]).
    pub fn changed(&self) -> impl Iterator<Item = &DiffStep> {
        self.calls().filter(|s| !s.same_key)
    }

    /// Every call of either run but the built-in ones: what the text lists and counts.
    pub fn calls(&self) -> impl Iterator<Item = &DiffStep> {
        self.steps.iter().filter(|s| !s.builtin)
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
                    builtin: s.builtin,
                    changes: s.changes.into_iter().map(Change::new).collect(),
                    metrics: Vec::new(),
                })
                .collect(),
        }
    }
}

/// Both runs' headers, a table of the calls (status in A and B, same key or what differs),
/// and how many calls differ. Built-in calls are left out; a large group of a map's
/// per-item calls (`<call>[i]`) shows its runs of equal calls as one row each
/// (`train_fold[0..=9999]  10000 same`) and its first different calls one by one.
impl fmt::Display for RunDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "A: {}", run_header(&self.run_a.0))?;
        writeln!(f, "B: {}", run_header(&self.run_b.0))?;
        writeln!(f)?;
        let calls: Vec<&DiffStep> = self.calls().collect();
        let mut rows: Vec<Vec<String>> = Vec::new();
        // The calls of large groups: their unchanged metrics are counted, not listed.
        let mut grouped_calls = vec![false; calls.len()];
        for entry in grouped(calls.iter().map(|s| s.name.as_str())) {
            match entry {
                Grouped::One(i) => rows.push(diff_row(calls[i])),
                Grouped::Items { members, .. } if members.len() <= GROUP_LIMIT => {
                    rows.extend(members.iter().map(|&(_, i)| diff_row(calls[i])));
                }
                Grouped::Items { base, members } => {
                    group_rows(base, &members, &calls, &mut rows);
                    for &(_, i) in &members {
                        grouped_calls[i] = true;
                    }
                }
            }
        }
        f.write_str(&table(&["STEP", "A", "B", "CACHE KEY"], &rows))?;
        writeln!(
            f,
            "\n{} of {} steps differ.",
            self.changed().count(),
            calls.len()
        )?;
        let mut unlisted = 0;
        let metrics: Vec<Vec<String>> = calls
            .iter()
            .zip(&grouped_calls)
            .flat_map(|(s, &grouped)| s.metrics.iter().map(move |m| (s, m, grouped)))
            .filter(|&(_, m, grouped)| {
                let listed = !grouped || m.change() != Some(0.0);
                unlisted += usize::from(!listed);
                listed
            })
            .map(|(s, m, _)| {
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
        if unlisted > 0 {
            writeln!(
                f,
                "\n{unlisted} unchanged metrics of a map's per-item calls are not listed; `--json` lists every one."
            )?;
        }
        Ok(())
    }
}

/// `executed`, `-` (not in the run).
fn status_text(s: Option<StepStatus>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
}

/// One call's row: its name (with its name in A when paired with another), its status in
/// A and B, and the verdict with what differs.
fn diff_row(s: &DiffStep) -> Vec<String> {
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
    vec![
        name,
        status_text(s.status_a),
        status_text(s.status_b),
        verdict,
    ]
}

/// The statuses of several calls in one run: the status when they share one
/// (`cached`), else how many have each (`9 cached, 1 executed`).
fn statuses_text<'a>(calls: impl Iterator<Item = &'a DiffStep>, b: bool) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for s in calls {
        *counts
            .entry(status_text(if b { s.status_b } else { s.status_a }))
            .or_default() += 1;
    }
    match counts.len() {
        1 => counts.into_keys().next().unwrap_or_default(),
        _ => counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The rows of a large group of per-item calls (`members`: `(item, index in calls)`, by
/// item): each run of consecutive items with equal keys as one row
/// (`train_fold[0..=9999]  10000 same`), the different calls one by one, at most
/// [`GROUP_SHOWN`] of them when more than [`GROUP_LIMIT`] differ, then one row for the
/// rest (`train_fold[812..=9999]  9188 more: 9000 same, 188 different`).
fn group_rows(
    base: &str,
    members: &[(u64, usize)],
    calls: &[&DiffStep],
    rows: &mut Vec<Vec<String>>,
) {
    let different = members.iter().filter(|&&(_, i)| !calls[i].same_key).count();
    let listed = if different > GROUP_LIMIT {
        GROUP_SHOWN
    } else {
        different
    };
    let same_row = |run: &[(u64, usize)]| -> Vec<String> {
        let steps = || run.iter().map(|&(_, i)| calls[i]);
        vec![
            range_name(base, run.iter().map(|&(n, _)| n)),
            statuses_text(steps(), false),
            statuses_text(steps(), true),
            format!("{} same", run.len()),
        ]
    };
    let mut shown = 0;
    // The run of equal calls being collected: members[start..k].
    let mut start = 0;
    let mut k = 0;
    while k < members.len() {
        let (n, i) = members[k];
        let contiguous = k == start || members[k - 1].0 + 1 == n;
        if calls[i].same_key && contiguous {
            k += 1;
            continue;
        }
        // The run ends here.
        match k - start {
            0 => {}
            1 => rows.push(diff_row(calls[members[start].1])),
            _ => rows.push(same_row(&members[start..k])),
        }
        start = k;
        if calls[i].same_key {
            // A gap in the item numbers: a new run starts with this call.
            continue;
        }
        if shown == listed {
            break;
        }
        rows.push(diff_row(calls[i]));
        shown += 1;
        k += 1;
        start = k;
    }
    if k == members.len() {
        match k - start {
            0 => {}
            1 => rows.push(diff_row(calls[members[start].1])),
            _ => rows.push(same_row(&members[start..k])),
        }
        return;
    }
    // The rest, summed up by verdict.
    let rest = &members[k..];
    let mut verdicts: std::collections::BTreeMap<&str, usize> = Default::default();
    for &(_, i) in rest {
        *verdicts.entry(calls[i].verdict()).or_default() += 1;
    }
    let counts: Vec<String> = verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    let steps = || rest.iter().map(|&(_, i)| calls[i]);
    rows.push(vec![
        range_name(base, rest.iter().map(|&(n, _)| n)),
        statuses_text(steps(), false),
        statuses_text(steps(), true),
        format!("{} more: {}", rest.len(), counts.join(", ")),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-item call `base[i]`: cached and the same, or executed and different.
    fn call(name: String, same: bool) -> DiffStep {
        DiffStep {
            name_a: Some(name.clone()),
            name,
            status_a: Some(StepStatus::Executed),
            status_b: Some(if same {
                StepStatus::Cached
            } else {
                StepStatus::Executed
            }),
            same_key: same,
            builtin: false,
            changes: if same {
                Vec::new()
            } else {
                vec![Change::new(crate::status::Reason::KeyChanged)]
            },
            metrics: Vec::new(),
        }
    }

    fn rows(calls: &[DiffStep]) -> Vec<String> {
        let calls: Vec<&DiffStep> = calls.iter().collect();
        let mut rows = Vec::new();
        for entry in grouped(calls.iter().map(|s| s.name.as_str())) {
            if let Grouped::Items { base, members } = entry {
                group_rows(base, &members, &calls, &mut rows);
            }
        }
        rows.into_iter().map(|r| r.join(" | ")).collect()
    }

    #[test]
    fn many_different_items_are_listed_three_then_counted() {
        // Items 0..100; every 10th differs (10 of them, more than 8).
        let calls: Vec<DiffStep> = (0..100)
            .map(|i| call(format!("fit[{i}]"), i % 10 != 5))
            .collect();
        assert_eq!(
            rows(&calls),
            [
                "fit[0..=4] | executed | cached | 5 same",
                "fit[5] | executed | executed | different: cache key changed",
                "fit[6..=14] | executed | cached | 9 same",
                "fit[15] | executed | executed | different: cache key changed",
                "fit[16..=24] | executed | cached | 9 same",
                "fit[25] | executed | executed | different: cache key changed",
                "fit[26..=34] | executed | cached | 9 same",
                "fit[35..=99] | executed | 58 cached, 7 executed | 65 more: 7 different, 58 same",
            ]
        );
    }

    #[test]
    fn a_large_groups_unchanged_metrics_are_counted_not_listed() {
        let run = crate::store::RunRecord {
            id: "0123456789abcdef".into(),
            pipeline: "cv".into(),
            name: "cv-1".into(),
            status: crate::status::RunStatus::Completed,
            started_at_us: 0,
            duration: None,
            executed: 0,
            cached: 0,
            failed: 0,
            skipped: 0,
        };
        let metric = |a: f64, b: f64| MetricChange {
            name: "accuracy".into(),
            a: Some(a),
            b: Some(b),
        };
        let with_metric = |name: String, m: MetricChange| DiffStep {
            metrics: vec![m],
            ..call(name, true)
        };
        let mut steps: Vec<DiffStep> = (0..20)
            .map(|i| with_metric(format!("fit[{i}]"), metric(0.5, 0.5)))
            .collect();
        steps[7].metrics = vec![metric(0.5, 0.75)];
        steps.push(with_metric("mean".into(), metric(0.5, 0.5)));
        let diff = RunDiff {
            run_a: RunView(run.clone()),
            run_b: RunView(run),
            steps,
        };
        let text = diff.to_string();
        // The header, then the one changed per-item metric and `mean`'s.
        let metric_rows: Vec<&str> = text.lines().filter(|l| l.contains(" -> ")).collect();
        assert_eq!(metric_rows.len(), 3, "{text}");
        assert!(metric_rows[1].starts_with("fit[7] "), "{text}");
        assert!(metric_rows[1].ends_with("+0.25"), "{text}");
        assert!(metric_rows[2].starts_with("mean "), "{text}");
        assert!(
            text.ends_with("\n19 unchanged metrics of a map's per-item calls are not listed; `--json` lists every one.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_gap_in_the_item_numbers_starts_a_new_row_and_a_lone_item_keeps_its_row() {
        let mut calls: Vec<DiffStep> = (0..12)
            .filter(|&i| i != 6)
            .map(|i| call(format!("fit[{i}]"), i != 11))
            .collect();
        calls.push(call("fit[20]".into(), true));
        assert_eq!(
            rows(&calls),
            [
                "fit[0..=5] | executed | cached | 6 same",
                "fit[7..=10] | executed | cached | 4 same",
                "fit[11] | executed | executed | different: cache key changed",
                "fit[20] | executed | cached | same",
            ]
        );
    }
}
