//! Which earlier execution a call is compared with, to explain why it missed the cache.
//!
//! A step called in a loop gets one generated name per call (`scale`, `scale_2`, ...), and
//! those names only count calls, so they shift when the loop changes. An explanation
//! therefore never pairs calls by generated name alone, and never with a sibling call of
//! the same run. One rule serves `StepReport::reason()` at run time, `pipeline explain`
//! and [`Store::compare_runs`]:
//!
//! 1. **The earlier run**: the newest other run with a completed (executed or cached) call
//!    of the step, preferring runs of the same pipeline. `compare_runs` uses the run it is
//!    given.
//! 2. **A label**: when the call carries the label the user gave it, an earlier call with
//!    the same label. (Calls have no labels yet: the issue "Typed dynamic fan-out" adds
//!    them and fills in [`Call::label`] and [`Candidate::label`].)
//! 3. **Key components**: else the earlier calls whose key components differ from the
//!    call's in at most one place (the code signature, the output declarations, or one
//!    input): the fewest differences, then the nearest position among the step's calls in
//!    its run (the same position first), then the newest.
//! 4. **Position**: else the call at the nearest position among the step's calls.
//!
//! Rule 3 is found through an index of each earlier call's components with each one left
//! out in turn, so matching one call costs a few hash lookups, not a scan of a 10,000-call
//! sweep.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::SqliteMetadata;
use crate::error::{Error, Result};
use crate::key::{InputComponent, KeyComponents};
use crate::status::StepStatus;

/// The earlier execution that a cache miss was compared with, as recorded with the miss.
///
/// Recorded when the miss is explained, with the earlier execution's key components, so
/// the comparison still reads the same after garbage collection removed that execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierCall {
    /// Id of the earlier execution (it may since have been removed from the store).
    pub execution_id: i64,
    /// Its name within its run (`scale_2`).
    pub name: String,
    /// Id of its run.
    pub run_id: String,
    /// Name of its run.
    pub run_name: String,
    /// Its key components.
    pub components: KeyComponents,
}

/// One call of a step, as matching sees it.
pub(crate) struct Call<'a> {
    /// The label the user gave the call. Always `None` until calls can be labelled.
    pub label: Option<&'a str>,
    /// Position among its run's calls of the same step, in call order (0 for `scale`, 1
    /// for `scale_2`, ...).
    pub ordinal: usize,
    /// Its key components.
    pub components: &'a KeyComponents,
}

/// An earlier call a call may be compared with.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub execution: i64,
    pub name: String,
    pub ordinal: usize,
    /// The label the user gave the call. Always `None` until calls can be labelled.
    pub label: Option<String>,
    pub components: KeyComponents,
}

/// The calls of one step in one earlier run, indexed for matching.
pub(crate) struct Candidates {
    // Invariant: `calls` is sorted by `ordinal`, each ordinal once.
    pub run_id: String,
    pub run_name: String,
    calls: Vec<Candidate>,
    /// Signature of the components with slot `i` left out (or none) -> calls having it.
    index: HashMap<u128, Vec<usize>>,
}

/// The places where key components can differ, in order: code signature, output
/// declarations, then each input by name. Display-only fields (parameter JSON, producer
/// names) are left out, as the cache key leaves them out.
fn slots(c: &KeyComponents) -> Vec<(&str, String)> {
    let mut out = Vec::with_capacity(c.inputs.len() + 2);
    out.push(("", c.code_signature.clone()));
    let outputs: Vec<String> = c
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                o.name, o.type_name, o.cacher, o.cacher_version
            )
        })
        .collect();
    out.push(("", outputs.join("\u{1e}")));
    // `cache_ignore` parameters are left out too, as the key leaves them out.
    for input in c.inputs.iter().filter(|i| i.in_key()) {
        let value = match input {
            InputComponent::Artifact { content_hash, .. } => format!("a\u{1f}{content_hash}"),
            InputComponent::Parameter {
                type_name, hash, ..
            } => format!("p\u{1f}{type_name}\u{1f}{hash}"),
        };
        out.push((input.name(), value));
    }
    out
}

/// xxh3-128 over the slots' names and values, with slot `left_out`'s value left out.
fn signature(slots: &[(&str, String)], left_out: Option<usize>) -> u128 {
    let mut h = Xxh3::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&(slots.len() as u64).to_le_bytes());
    for (i, (name, value)) in slots.iter().enumerate() {
        field(name.as_bytes());
        if Some(i) == left_out {
            field(b"\x00left out");
        } else {
            field(value.as_bytes());
        }
    }
    h.digest128()
}

/// The number of slots in which two sets of components differ, when they have the same
/// slots (same inputs by name, in order); `None` otherwise.
fn distance(a: &[(&str, String)], b: &[(&str, String)]) -> Option<usize> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0) {
        return None;
    }
    Some(a.iter().zip(b).filter(|(x, y)| x.1 != y.1).count())
}

impl Candidates {
    /// Indexes `calls`, which must be in position order (ascending, distinct ordinals).
    pub(crate) fn new(run_id: String, run_name: String, mut calls: Vec<Candidate>) -> Self {
        calls.sort_by_key(|c| c.ordinal);
        let mut index: HashMap<u128, Vec<usize>> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let slots = slots(&call.components);
            for left_out in std::iter::once(None).chain((0..slots.len()).map(Some)) {
                index
                    .entry(signature(&slots, left_out))
                    .or_default()
                    .push(i);
            }
        }
        Candidates {
            run_id,
            run_name,
            calls,
            index,
        }
    }

    /// The earlier call that `call` is compared with (rules 2 to 4 of the module docs).
    pub(crate) fn best(&self, call: &Call<'_>) -> Option<&Candidate> {
        let labelled: Vec<usize> = match call.label {
            Some(label) => (0..self.calls.len())
                .filter(|&i| self.calls[i].label.as_deref() == Some(label))
                .collect(),
            None => Vec::new(),
        };
        let near = |i: usize| {
            let c = &self.calls[i];
            (
                c.ordinal.abs_diff(call.ordinal),
                c.ordinal,
                std::cmp::Reverse(c.execution),
            )
        };
        if !labelled.is_empty() {
            return labelled
                .into_iter()
                .min_by_key(|&i| near(i))
                .map(|i| &self.calls[i]);
        }
        let own = slots(call.components);
        let mut close: Vec<usize> = std::iter::once(None)
            .chain((0..own.len()).map(Some))
            .filter_map(|left_out| self.index.get(&signature(&own, left_out)))
            .flatten()
            .copied()
            .collect();
        close.sort_unstable();
        close.dedup();
        let best = close
            .into_iter()
            .filter_map(|i| {
                let d = distance(&own, &slots(&self.calls[i].components))?;
                (d <= 1).then_some((d, i))
            })
            .min_by_key(|&(d, i)| (d, near(i)))
            .map(|(_, i)| i);
        let best = best.or_else(|| {
            // Calls are in position order: the nearest is at the partition point or just
            // before it (the lower one on a tie).
            let at = self.calls.partition_point(|c| c.ordinal < call.ordinal);
            [at.checked_sub(1), (at < self.calls.len()).then_some(at)]
                .into_iter()
                .flatten()
                .min_by_key(|&i| near(i))
        });
        best.map(|i| &self.calls[i])
    }

    /// [`Candidates::best`] as the record of the comparison.
    pub(crate) fn earlier_call(&self, call: &Call<'_>) -> Option<EarlierCall> {
        self.best(call).map(|c| EarlierCall {
            execution_id: c.execution,
            name: c.name.clone(),
            run_id: self.run_id.clone(),
            run_name: self.run_name.clone(),
            components: c.components.clone(),
        })
    }
}

impl SqliteMetadata {
    /// The calls of `step` in run `run_id`, in position order; only completed ones (executed
    /// or cached) when `completed`. Ordinals count every call of the step in the run.
    pub(crate) fn step_calls_in(
        &self,
        conn: &Connection,
        run_id: &str,
        run_name: &str,
        step: &str,
        completed: bool,
    ) -> Result<Candidates> {
        let rows: Vec<(i64, String, StepStatus, String)> = {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT e.id, e.name, e.status, ",
                    super::components_of_e!(),
                    " FROM executions e WHERE e.run_id = ?1 AND e.step = ?2 \
                         ORDER BY e.position"
                ))
                .map_err(|e| self.db_error(e))?;
            let rows = stmt
                .query_map(params![run_id, step], |r| {
                    let status = r
                        .get::<_, String>(2)?
                        .parse::<StepStatus>()
                        .map_err(|e| e.in_column(2))?;
                    Ok((r.get(0)?, r.get(1)?, status, r.get(3)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.db_error(e))?;
            rows
        };
        Ok(calls_of(run_id, run_name, rows, completed))
    }

    /// The completed calls of `step` in the run a miss is compared with (rule 1 of the
    /// module docs): the newest run other than `exclude_run` with a completed call of the
    /// step among the executions before `before`, preferring runs of `pipeline`.
    pub(crate) fn earlier_calls(
        &self,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>> {
        self.earlier_calls_in(&self.db(), step, pipeline, exclude_run, before)
    }

    /// [`earlier_calls`](Store::earlier_calls) on a connection the caller holds (inside
    /// its transaction).
    pub(crate) fn earlier_calls_in(
        &self,
        conn: &Connection,
        step: &str,
        pipeline: &str,
        exclude_run: &str,
        before: Option<i64>,
    ) -> Result<Option<Candidates>> {
        let before = before.unwrap_or(i64::MAX);
        let run: Option<(String, String)> = {
            let newest = |pipeline: Option<&str>| {
                let sql = format!(
                    "SELECT e.run_id, r.name FROM executions e JOIN runs r ON r.id = e.run_id \
                     WHERE e.id = ({})",
                    newest_call_sql(pipeline.is_some())
                );
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        let found = match pipeline {
                            Some(p) => s.query_row(params![step, exclude_run, before, p], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            }),
                            None => s.query_row(params![step, exclude_run, before], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            }),
                        };
                        found.optional()
                    })
                    .map_err(|e| self.db_error(e))
            };
            match newest(Some(pipeline))? {
                Some(run) => Some(run),
                None => newest(None)?,
            }
        };
        run.map(|(id, name)| self.step_calls_in(conn, &id, &name, step, true))
            .transpose()
    }

    /// The earlier execution that a cache miss of execution `execution` was compared with
    /// (see [`EarlierCall`]): the one recorded with it at run time, or, for an execution
    /// recorded without one (by an older version, or one that ran with caching off or
    /// over a damaged blob), the one the same rule finds among the executions before it.
    /// `None` when there is no earlier completed call of the step.
    ///
    /// # Errors
    /// [`Error::UnknownRun`] when no execution `execution` is in the store; database errors.
    pub fn compared_execution(&self, execution: i64) -> Result<Option<EarlierCall>> {
        type Row = (String, String, Option<String>, String, String);
        let row: Option<Row> = self
            .db()
            .prepare_cached(concat!(
                "SELECT e.run_id, e.step, e.compared, ",
                super::components_of_e!(),
                ", r.pipeline FROM executions e JOIN runs r ON r.id = e.run_id \
                     WHERE e.id = ?1"
            ))
            .and_then(|mut s| {
                s.query_row([execution], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(|e| self.db_error(e))?;
        let Some((run_id, step, compared, components, pipeline)) = row else {
            return Err(Error::UnknownRun(format!("execution {execution}")));
        };
        if let Some(recorded) = compared.and_then(|c| serde_json::from_str(&c).ok()) {
            return Ok(Some(recorded));
        }
        let Ok(components) = serde_json::from_str::<KeyComponents>(&components) else {
            return Ok(None);
        };
        let Some(earlier) = self.earlier_calls(&step, &pipeline, &run_id, Some(execution))? else {
            return Ok(None);
        };
        let ordinal = self.ordinal(&run_id, &step, execution)?;
        Ok(earlier.earlier_call(&Call {
            label: None,
            ordinal,
            components: &components,
        }))
    }

    /// Position of execution `execution` among its run's calls of `step`.
    fn ordinal(&self, run_id: &str, step: &str, execution: i64) -> Result<usize> {
        let n: i64 = self
            .db()
            .prepare_cached(
                "SELECT count(*) FROM executions WHERE run_id = ?1 AND step = ?2 \
                 AND position < (SELECT position FROM executions WHERE id = ?3)",
            )
            .and_then(|mut s| s.query_row(params![run_id, step, execution], |r| r.get(0)))
            .map_err(|e| self.db_error(e))?;
        Ok(n as usize)
    }
}

/// The calls of a step in run `run_id` from its rows `(id, name, status, components)` in
/// position order; only completed ones when `completed`. Ordinals count every row.
pub(crate) fn calls_of(
    run_id: &str,
    run_name: &str,
    rows: Vec<(i64, String, StepStatus, String)>,
    completed: bool,
) -> Candidates {
    let calls = rows
        .into_iter()
        .enumerate()
        .filter_map(|(ordinal, (execution, name, status, components))| {
            if completed && !matches!(status, StepStatus::Executed | StepStatus::Cached) {
                return None;
            }
            // A row whose components do not parse cannot be compared with.
            let components = serde_json::from_str(&components).ok()?;
            Some(Candidate {
                execution,
                name,
                ordinal,
                label: None,
                components,
            })
        })
        .collect();
    Candidates::new(run_id.to_string(), run_name.to_string(), calls)
}

/// A query for the id of the newest completed execution of step `?1` outside run `?2`
/// with an id below `?3` (of a run of pipeline `?4` when `in_pipeline`); `NULL` when there
/// is none.
///
/// Cached rows that point at the execution holding their outputs (`outputs_of`) are not in
/// the index on steps (a cached run would otherwise pay for an entry in the middle of it
/// per step; schema 7). They have the key, and so the step, of the row they point at, so
/// they are reached through it: the newest of the step's holding rows and, for each of
/// them, the newest row pointing at it.
pub(crate) fn newest_call_sql(in_pipeline: bool) -> String {
    let (join, pipeline) = if in_pipeline {
        ("JOIN runs r ON r.id = x.run_id", "AND r.pipeline = ?4")
    } else {
        ("", "")
    };
    format!(
        "SELECT max(id) FROM ( \
           SELECT (SELECT x.id FROM executions x {join} \
                   WHERE x.step = ?1 AND x.outputs_of IS NULL \
                   AND x.status IN ('executed', 'cached') \
                   AND x.run_id <> ?2 AND x.id < ?3 {pipeline} \
                   ORDER BY x.id DESC LIMIT 1) AS id \
           UNION ALL \
           SELECT (SELECT x.id FROM executions x {join} \
                   WHERE x.outputs_of = h.id AND x.status = 'cached' \
                   AND x.run_id <> ?2 AND x.id < ?3 {pipeline} \
                   ORDER BY x.id DESC LIMIT 1) \
           FROM executions h \
           WHERE h.step = ?1 AND h.outputs_of IS NULL AND h.status IN ('executed', 'cached')) \
         AS newest"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{signature_hex, Hash128, OutputDecl, KEY_FORMAT_VERSION};

    /// `scale(xs, k)` with code version `code`, input content `xs` and parameter `k`.
    fn scale(code: u64, xs: u128, k: u128) -> KeyComponents {
        KeyComponents {
            format: KEY_FORMAT_VERSION,
            step: "scale".into(),
            module: String::new(),
            code_parts: Vec::new(),
            code_signature: signature_hex(code),
            outputs: vec![OutputDecl {
                name: "output".into(),
                type_name: "f64".into(),
                shape: String::new(),
                cacher: "bincode".into(),
                cacher_version: 1,
            }],
            inputs: vec![
                InputComponent::Artifact {
                    name: "xs".into(),
                    content_hash: Hash128(xs).to_hex(),
                    producer: "load".into(),
                },
                InputComponent::Parameter {
                    name: "k".into(),
                    type_name: "u32".into(),
                    shape: String::new(),
                    hash: Hash128(k).to_hex(),
                    value: serde_json::json!(k),
                    text: None,
                    ignored: false,
                    secret: false,
                },
            ],
        }
    }

    /// An earlier run whose calls of `scale` have these components, in call order.
    fn earlier(calls: Vec<KeyComponents>) -> Candidates {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, components)| Candidate {
                execution: 100 + i as i64,
                name: if i == 0 {
                    "scale".into()
                } else {
                    format!("scale_{}", i + 1)
                },
                ordinal: i,
                label: None,
                components,
            })
            .collect();
        Candidates::new("r1".into(), "run-1".into(), calls)
    }

    fn pick(c: &Candidates, ordinal: usize, components: &KeyComponents) -> Option<String> {
        c.best(&Call {
            label: None,
            ordinal,
            components,
        })
        .map(|c| c.name.clone())
    }

    #[test]
    fn a_changed_parameter_pairs_the_call_at_the_same_position() {
        // k = [1, 3] then [1, 5]: the second call compares with the second, not the first.
        let c = earlier(vec![scale(1, 7, 1), scale(1, 7, 3)]);
        assert_eq!(pick(&c, 1, &scale(1, 7, 5)).as_deref(), Some("scale_2"));
        assert_eq!(pick(&c, 0, &scale(1, 7, 1)).as_deref(), Some("scale"));
    }

    #[test]
    fn a_call_pairs_the_earlier_call_one_component_away_wherever_it_was() {
        // A value inserted at the front of the loop: k = [3, 5] then [1, 3, 5] with new
        // code. The call with k = 5 is now third; it pairs the earlier k = 5 call (only
        // the code differs), not the earlier call at its position.
        let c = earlier(vec![scale(1, 7, 3), scale(1, 7, 5)]);
        assert_eq!(pick(&c, 2, &scale(2, 7, 5)).as_deref(), Some("scale_2"));
        assert_eq!(pick(&c, 1, &scale(2, 7, 3)).as_deref(), Some("scale"));
        // Identical components win over one difference at the same position.
        assert_eq!(pick(&c, 0, &scale(1, 7, 5)).as_deref(), Some("scale_2"));
    }

    #[test]
    fn with_nothing_close_the_nearest_position_wins() {
        let c = earlier(vec![scale(1, 7, 3), scale(1, 7, 5)]);
        // Code, input and parameter all differ from both.
        assert_eq!(pick(&c, 0, &scale(2, 8, 9)).as_deref(), Some("scale"));
        assert_eq!(pick(&c, 1, &scale(2, 8, 9)).as_deref(), Some("scale_2"));
        assert_eq!(pick(&c, 7, &scale(2, 8, 9)).as_deref(), Some("scale_2"));
        assert_eq!(pick(&earlier(Vec::new()), 0, &scale(1, 7, 3)), None);
    }

    #[test]
    fn a_label_pairs_the_call_with_the_same_label() {
        let mut c = earlier(vec![scale(1, 7, 3), scale(1, 7, 5)]);
        c.calls[0].label = Some("small".into());
        c.calls[1].label = Some("large".into());
        let components = scale(1, 7, 3);
        let call = Call {
            label: Some("large"),
            ordinal: 0,
            components: &components,
        };
        assert_eq!(c.best(&call).map(|c| c.name.as_str()), Some("scale_2"));
        // An unknown label falls back to components and position.
        let call = Call {
            label: Some("new"),
            ..call
        };
        assert_eq!(c.best(&call).map(|c| c.name.as_str()), Some("scale"));
    }

    #[test]
    fn different_inputs_by_name_are_never_one_component_apart() {
        let mut renamed = scale(1, 7, 3);
        if let InputComponent::Parameter { name, .. } = &mut renamed.inputs[1] {
            *name = "factor".into();
        }
        let c = earlier(vec![scale(1, 7, 5), renamed.clone()]);
        assert_eq!(
            distance(&slots(&renamed), &slots(&scale(1, 7, 3))),
            None,
            "inputs differ by name"
        );
        // The renamed call at the same position has the same values, yet the call one
        // component away wins.
        assert_eq!(pick(&c, 1, &scale(1, 7, 3)).as_deref(), Some("scale"));
    }
}
