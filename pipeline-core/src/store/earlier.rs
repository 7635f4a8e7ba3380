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
//! 2. **A label**: when the call carries the label the user gave it (`.named(..)` in the
//!    pipeline body; see [`label_of`]), an earlier call with the same label.
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

/// The label a call of `step` named `name` carries: its name, unless that is one the
/// graph generates (`step`, or `step_k` for k = 2, 3, ...). Labels are names, so they are
/// not recorded apart; a label that looks generated (`.named("scale_2")`) pairs as a
/// generated name does, by key components and position.
pub(crate) fn label_of<'a>(step: &str, name: &'a str) -> Option<&'a str> {
    let generated = name == step
        || name
            .strip_prefix(step)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|k| {
                // The digits of a generated `k`: no sign, no leading zero, k >= 2.
                (!k.starts_with('0') && k.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| k.parse::<u64>().ok())
                    .flatten()
            })
            .is_some_and(|k| k >= 2);
    (!generated).then_some(name)
}

/// One call of a step, as matching sees it.
pub(crate) struct Call<'a> {
    /// The label the user gave the call ([`label_of`] its name).
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
    /// The label the user gave the call ([`label_of`] its name).
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
    /// Label -> calls carrying it (one per label in a run), so rule 2 is a lookup.
    labels: HashMap<String, Vec<usize>>,
}

/// Which calls of a [`Candidates`] are paired already, for one-to-one pairing
/// ([`Candidates::claim`]): the nearest free call on either side of a position is found
/// through two union-find arrays, so claiming stays near-linear on 10,000-call runs.
pub(crate) struct Taken {
    taken: Vec<bool>,
    /// `right[i]`: a step towards the first free call at or after `i` (`n` if none).
    right: Vec<usize>,
    /// `left[i + 1]`: a step towards the last free call at or before `i`, plus one (0 if
    /// none).
    left: Vec<usize>,
}

impl Taken {
    /// None of `n` calls taken.
    pub(crate) fn new(n: usize) -> Self {
        Taken {
            taken: vec![false; n],
            right: (0..=n).collect(),
            left: (0..=n).collect(),
        }
    }

    fn is_taken(&self, i: usize) -> bool {
        self.taken[i]
    }

    /// Marks call `i` paired.
    pub(crate) fn take(&mut self, i: usize) {
        if !self.taken[i] {
            self.taken[i] = true;
            self.right[i] = i + 1;
            self.left[i + 1] = i;
        }
    }

    fn root(parent: &mut [usize], x: usize) -> usize {
        let mut root = x;
        while parent[root] != root {
            root = parent[root];
        }
        let mut x = x;
        while parent[x] != root {
            let next = parent[x];
            parent[x] = root;
            x = next;
        }
        root
    }

    /// The first free call at or after `i`.
    fn free_at_or_after(&mut self, i: usize) -> Option<usize> {
        let r = Self::root(&mut self.right, i.min(self.taken.len()));
        (r < self.taken.len()).then_some(r)
    }

    /// The last free call before `i`.
    fn free_before(&mut self, i: usize) -> Option<usize> {
        Self::root(&mut self.left, i.min(self.taken.len())).checked_sub(1)
    }
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
        let mut labels: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            if let Some(label) = &call.label {
                labels.entry(label.clone()).or_default().push(i);
            }
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
            labels,
        }
    }

    /// How many calls there are (the size of a [`Taken`] for them).
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The earlier call that `call` is compared with (rules 2 to 4 of the module docs).
    pub(crate) fn best(&self, call: &Call<'_>) -> Option<&Candidate> {
        self.pick(call, None, true).map(|i| &self.calls[i])
    }

    /// [`Candidates::best`] among the calls not in `taken`, which the pick then joins: for
    /// pairing two runs' calls one to one ([`Store::compare_runs`](super::Store)). Rule 4
    /// (nearest position) only when `by_position`: a caller claims for every call by rules
    /// 2 and 3 first, so that a new call does not take, by position, the call that another
    /// call differs from in one place only.
    pub(crate) fn claim(
        &self,
        call: &Call<'_>,
        taken: &mut Taken,
        by_position: bool,
    ) -> Option<&Candidate> {
        let i = self.pick(call, Some(taken), by_position)?;
        taken.take(i);
        Some(&self.calls[i])
    }

    /// The index of the best call for `call` (rules 2 to 4; 4 when `by_position`), among
    /// those not taken.
    fn pick(&self, call: &Call<'_>, taken: Option<&mut Taken>, by_position: bool) -> Option<usize> {
        let free =
            |taken: &Option<&mut Taken>, i: usize| taken.as_ref().is_none_or(|t| !t.is_taken(i));
        let near = |i: usize| {
            let c = &self.calls[i];
            (
                c.ordinal.abs_diff(call.ordinal),
                c.ordinal,
                std::cmp::Reverse(c.execution),
            )
        };
        let labelled = call
            .label
            .and_then(|label| self.labels.get(label))
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| free(&taken, i))
            .min_by_key(|&i| near(i));
        if labelled.is_some() {
            return labelled;
        }
        // A map's per-item call (`<call>[i]`) is the same call only as item i: a new item
        // has no earlier execution, rather than the nearest call of another item.
        if call.label.and_then(crate::map::item_call).is_some() {
            return None;
        }
        let own = slots(call.components);
        let mut close: Vec<usize> = std::iter::once(None)
            .chain((0..own.len()).map(Some))
            .filter_map(|left_out| self.index.get(&signature(&own, left_out)))
            .flatten()
            .copied()
            .filter(|&i| free(&taken, i))
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
        if best.is_some() || !by_position {
            return best;
        }
        // Calls are in position order: the nearest (free) one is at the partition point or
        // just before it (the lower one on a tie).
        let at = self.calls.partition_point(|c| c.ordinal < call.ordinal);
        let sides = match taken {
            Some(t) => [t.free_before(at), t.free_at_or_after(at)],
            None => [at.checked_sub(1), (at < self.calls.len()).then_some(at)],
        };
        sides.into_iter().flatten().min_by_key(|&i| near(i))
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
        Ok(calls_of(run_id, run_name, step, rows, completed))
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
        type Row = (String, String, Option<String>, String, String, String);
        let row: Option<Row> = self
            .db()
            .prepare_cached(concat!(
                "SELECT e.run_id, e.step, e.compared, ",
                super::components_of_e!(),
                ", r.pipeline, e.name FROM executions e JOIN runs r ON r.id = e.run_id \
                     WHERE e.id = ?1"
            ))
            .and_then(|mut s| {
                s.query_row([execution], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.db_error(e))?;
        let Some((run_id, step, compared, components, pipeline, name)) = row else {
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
            label: label_of(&step, &name),
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

/// The calls of `step` in run `run_id` from its rows `(id, name, status, components)` in
/// position order; only completed ones when `completed`. Ordinals count every row.
pub(crate) fn calls_of(
    run_id: &str,
    run_name: &str,
    step: &str,
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
                label: label_of(step, &name).map(str::to_string),
                name,
                ordinal,
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
        let mut calls = earlier(vec![scale(1, 7, 3), scale(1, 7, 5)]).calls;
        calls[0].label = Some("small".into());
        calls[1].label = Some("large".into());
        let c = Candidates::new("r1".into(), "run-1".into(), calls);
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
    fn generated_names_are_not_labels() {
        assert_eq!(label_of("scale", "scale"), None);
        assert_eq!(label_of("scale", "scale_2"), None);
        assert_eq!(label_of("scale", "scale_10"), None);
        for label in [
            "scale[3]", "scale_1", "scale_02", "scale_", "scale_x", "scale_+3", "other", "scal",
        ] {
            assert_eq!(label_of("scale", label), Some(label));
        }
        // A step whose own name ends in a number.
        assert_eq!(label_of("inc_2", "inc_2"), None);
        assert_eq!(label_of("inc_2", "inc_2_2"), None);
        assert_eq!(label_of("inc", "inc_2"), None);
    }

    #[test]
    fn claimed_calls_are_paired_once() {
        let c = earlier(vec![
            scale(1, 7, 1),
            scale(1, 7, 3),
            scale(1, 7, 5),
            scale(1, 7, 7),
        ]);
        let mut taken = Taken::new(c.len());
        let mut claim = |ordinal: usize, k: u128| {
            c.claim(
                &Call {
                    label: None,
                    ordinal,
                    components: &scale(1, 7, k),
                },
                &mut taken,
                true,
            )
            .map(|c| c.name.clone())
        };
        // Equal components first, then one component away at the nearest free position.
        assert_eq!(claim(0, 3).as_deref(), Some("scale_2"));
        assert_eq!(claim(1, 9).as_deref(), Some("scale"));
        assert_eq!(claim(1, 9).as_deref(), Some("scale_3"));
        // Nothing one component away (new code and input): the nearest free position, on
        // either side of the taken ones.
        let mut far = |ordinal: usize, by_position: bool| {
            c.claim(
                &Call {
                    label: None,
                    ordinal,
                    components: &scale(2, 8, 9),
                },
                &mut taken,
                by_position,
            )
            .map(|c| c.name.clone())
        };
        assert_eq!(far(0, false), None);
        assert_eq!(far(0, true).as_deref(), Some("scale_4"));
        assert_eq!(far(0, true), None);
    }

    #[test]
    fn taken_finds_the_nearest_free_call_on_both_sides() {
        let mut t = Taken::new(6);
        for i in [1, 2, 4] {
            t.take(i);
        }
        assert_eq!(t.free_at_or_after(1), Some(3));
        assert_eq!(t.free_at_or_after(4), Some(5));
        assert_eq!(t.free_before(3), Some(0));
        assert_eq!(t.free_before(5), Some(3));
        t.take(0);
        t.take(5);
        assert_eq!(t.free_before(3), None);
        assert_eq!(t.free_at_or_after(4), None);
        assert_eq!(t.free_at_or_after(9), None);
        assert_eq!(t.free_before(9), Some(3));
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
