//! The narrow store-facing part of a run: everything the coordinator asks of the store,
//! in the executor's terms. Looks keys up, claims them (`acquire`), checks the keys other
//! runs hold, finds the earlier execution a miss is explained against, records the cached
//! and skipped rows, and binds outputs to the store (a claim is a `LeaseGuard`, which its
//! store handle keeps alive). It decides nothing about order: that is the coordinator's and the schedule's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::nodes::RunNodes;
use super::step::{output_rows, Runner};
use super::{Job, Produced};
use crate::artifact::BoundArtifact;
use crate::error::Result;
use crate::graph::{InputSource, Node, NodeId, OutputSpec};
use crate::key::{Hash128, KeyComponents};
use crate::run::{Reason, StepStatus};
use crate::store::{
    Begin, Call, Candidates, Damage, ExecutionRow, InputRow, LeaseGuard, Lookup, MetadataPass,
    OutputsHolder, StepInput, StepStart, Store,
};

/// Who holds the claim on a key (another run, or another call of this run): the
/// coordinator keeps it, compares it and shows it, and hands it back to
/// [`Ledger::still_held`].
pub(super) use crate::store::Holder;

/// A cached or skipped row waiting to be committed with the others of its wave.
pub(super) struct PendingRow {
    pub(super) node: NodeId,
    pub(super) status: StepStatus,
    pub(super) key: Option<Hash128>,
    pub(super) components: KeyComponents,
    pub(super) reason: Reason,
    pub(super) reused: Option<i64>,
    pub(super) started_at_us: i64,
    pub(super) outputs: Vec<Produced>,
    /// Where the reused execution's rows are, as the pass that recorded this row found it.
    pub(super) holder: Option<OutputsHolder>,
}

/// A completed execution that can be reused.
pub(super) struct Reusable {
    /// Its id.
    pub(super) execution: i64,
    /// Its outputs' content hashes and sizes, in output order.
    pub(super) outputs: Vec<(Hash128, u64)>,
    /// The execution holding its output rows, which the cached row points at.
    pub(super) holder: OutputsHolder,
    /// When that execution finished (microseconds since the Unix epoch).
    pub(super) produced_at_us: i64,
}

/// What claiming a key found (see [`Ledger::acquire`]).
pub(super) enum Claim {
    /// Another run completed the key meanwhile: execution `reused` is reused, and this
    /// run's cached row is recorded as `execution`.
    Hit {
        execution: i64,
        reused: i64,
        outputs: Vec<(Hash128, u64)>,
    },
    /// The key is this run's to execute under `lease`. `redo` says why a completed
    /// execution with the key cannot be reused (a damaged output), if there was one.
    Claimed {
        lease: LeaseGuard,
        redo: Option<Reason>,
        /// Per input: the blob of a parameter's stored form (see [`Ledger::write_params`]).
        params: Vec<Option<Hash128>>,
    },
    /// `holder` is computing the key right now.
    Busy { holder: Holder },
}

/// The store, as one run sees it.
pub(super) struct Ledger<'a> {
    store: &'a Store,
    run_id: &'a str,
    run_name: &'a str,
    pipeline: &'a str,
    /// Per step: its completed calls in the earlier run that misses are compared with.
    earlier: HashMap<&'static str, Option<Candidates>>,
    /// The open pass, if any: lookups, explanations and cached rows of the steps the
    /// coordinator resolves at once go in one transaction (`store/pass.rs`).
    pass: RefCell<Option<Box<dyn MetadataPass + 'a>>>,
}

impl<'a> Ledger<'a> {
    pub(super) fn new(
        store: &'a Store,
        run_id: &'a str,
        run_name: &'a str,
        pipeline: &'a str,
    ) -> Self {
        Ledger {
            store,
            run_id,
            run_name,
            pipeline,
            earlier: HashMap::new(),
            pass: RefCell::new(None),
        }
    }

    /// Opens a pass (see `store/pass.rs`) unless one is open.
    pub(super) fn open_pass(&self) -> Result<()> {
        let mut pass = self.pass.borrow_mut();
        if pass.is_none() {
            *pass = Some(self.store.pass()?);
        }
        Ok(())
    }

    /// Rolls the open pass back, if any (its rows failed to insert).
    pub(super) fn abandon_pass(&self) {
        self.pass.borrow_mut().take();
    }

    /// Commits the open pass, if any. Claims and commits of leases go outside passes.
    pub(super) fn close_pass(&self) -> Result<()> {
        match self.pass.borrow_mut().take() {
            Some(pass) => pass.commit(),
            None => Ok(()),
        }
    }

    /// What a worker needs to run a step of this run.
    pub(super) fn runner(&self) -> Runner<'a> {
        Runner {
            store: self.store,
            run_id: self.run_id,
        }
    }

    /// A completed execution with `key` whose outputs are all present: its id and its
    /// outputs' content hashes and sizes. A plain read, no claim (see `State::resolve`).
    pub(super) fn lookup(&self, key: Hash128) -> Result<Option<Reusable>> {
        let found = match &*self.pass.borrow() {
            Some(pass) => pass.lookup(key)?,
            None => self.store.lookup(key)?,
        };
        Ok(match found {
            Lookup::Hit {
                execution,
                outputs,
                holder,
                produced_at_us,
            } => Some(Reusable {
                execution,
                produced_at_us,
                outputs,
                holder,
            }),
            Lookup::Miss | Lookup::Damaged(_) => None,
        })
    }

    /// In one write transaction, claims the key of `job` for node `id`, or reuses an
    /// execution completed meanwhile (recording the cached row), or finds its holder. A
    /// damaged output of a completed execution is logged and becomes the job's new reason.
    pub(super) fn acquire(
        &self,
        nodes: &RunNodes<'_>,
        id: NodeId,
        job: &Job,
        produced: &[Option<Vec<Produced>>],
    ) -> Result<Claim> {
        let node = nodes.get(id);
        let params = self.write_params(node)?;
        let step = StepStart {
            run_id: self.run_id.to_string(),
            run_name: self.run_name.to_string(),
            name: node.name.clone(),
            step: node.step.to_string(),
            position: node.position,
            cache_key: job.key,
            components: job.components.clone(),
            inputs: input_rows(node, produced)
                .into_iter()
                .zip(&params)
                .map(|(i, value)| StepInput {
                    name: i.name,
                    hash: i.hash,
                    producer: i.producer,
                    value: *value,
                })
                .collect(),
            outputs: node.outputs.iter().map(|o| o.decl.clone()).collect(),
            not_before_us: job.not_before_us,
        };
        Ok(match self.store.begin_step(&step)? {
            Begin::Hit {
                execution,
                reused,
                outputs,
            } => Claim::Hit {
                execution,
                reused,
                outputs,
            },
            Begin::Claimed { lease, damaged } => {
                let redo = damaged.map(|damage| {
                    let (output, what, reason) = match damage {
                        Damage::Missing { output } => {
                            (output.clone(), "missing", Reason::BlobMissing { output })
                        }
                        Damage::Corrupt { output } => {
                            (output.clone(), "corrupt", Reason::BlobCorrupt { output })
                        }
                        Damage::Undecodable { output, type_name } => (
                            output.clone(),
                            "not decodable as the type the step returns",
                            Reason::Undecodable { output, type_name },
                        ),
                    };
                    warn!(
                        target: "pipeline",
                        "Cached output `{}` of `{}` is {}; executing the step again.",
                        output,
                        node.name,
                        what
                    );
                    reason
                });
                Claim::Claimed {
                    lease,
                    redo,
                    params,
                }
            }
            Begin::Busy(holder) => Claim::Busy { holder },
        })
    }

    /// Writes the stored form of each parameter of `node` (bincode) as a content-addressed
    /// blob, for a worker process or a later replay to decode; returns the blobs' hashes,
    /// `None` for artifacts. Only for a step about to be claimed: cached steps write nothing.
    /// A parameter that cannot be encoded gets no blob (its step can then only run on
    /// threads, and cannot be replayed); neither does a `secret` one, whose value is never
    /// written anywhere.
    pub(super) fn write_params(&self, node: &Node) -> Result<Vec<Option<Hash128>>> {
        node.inputs
            .iter()
            .map(|input| match &input.source {
                InputSource::Param(_) if input.secret => Ok(None),
                InputSource::Param(p) => match (p.encode)(&p.value) {
                    Ok(bytes) => {
                        let mut writer = self.store.blob_writer()?;
                        if let Err(e) = std::io::Write::write_all(&mut writer, &bytes) {
                            writer.abandon();
                            return Err(crate::error::Error::io(self.store.blobs_location(), e));
                        }
                        Ok(Some(self.store.finish_blob(writer)?.0))
                    }
                    Err(e) => {
                        tracing::debug!(
                            target: "pipeline",
                            "Parameter `{}` of `{}` has no stored form: {e}",
                            input.name,
                            node.name
                        );
                        Ok(None)
                    }
                },
                InputSource::Artifact { .. } => Ok(None),
            })
            .collect()
    }

    /// Per `(key, holder)` waited for, whether `holder` still holds `key`: one read for all.
    pub(super) fn still_held(&self, waits: &[(Hash128, &Holder)]) -> Result<Vec<bool>> {
        self.store.still_held(waits)
    }

    /// Why a call of `step` named `name` (its `ordinal`-th call in the graph) missed the cache: its key
    /// components compared with those of the earlier execution of the same call (see
    /// `store::earlier` for how it is found), and that execution as JSON, to record with
    /// the miss.
    pub(super) fn explain_miss(
        &mut self,
        step: &'static str,
        name: &str,
        ordinal: usize,
        components: &KeyComponents,
    ) -> Result<(Reason, Option<String>)> {
        if !self.earlier.contains_key(step) {
            // Once per step and run: a 10,000-call sweep reads the earlier run's calls once.
            let calls = match &*self.pass.borrow() {
                Some(pass) => pass.earlier_calls(step, self.pipeline, self.run_id)?,
                None => self
                    .store
                    .earlier_calls(step, self.pipeline, self.run_id, None)?,
            };
            self.earlier.insert(step, calls);
        }
        let earlier = self.earlier.get(step).and_then(|calls| {
            calls.as_ref()?.earlier_call(&Call {
                label: crate::store::label_of(step, name),
                ordinal,
                components,
            })
        });
        let reason = Reason::explain(earlier.as_ref().map(|e| &e.components), components);
        let compared = earlier.and_then(|e| serde_json::to_string(&e).ok());
        Ok((reason, compared))
    }

    /// Commits cached and skipped rows in one transaction; returns their execution ids.
    pub(super) fn record_pending(
        &self,
        nodes: &RunNodes<'_>,
        pending: &[PendingRow],
        produced: &[Option<Vec<Produced>>],
    ) -> Result<Vec<i64>> {
        let rows: Vec<ExecutionRow<'_>> = pending
            .iter()
            .map(|p| {
                let node = nodes.get(p.node);
                ExecutionRow {
                    details: Default::default(),
                    run_id: self.run_id,
                    name: &node.name,
                    step: node.step,
                    position: node.position,
                    status: p.status,
                    cache_key: p.key,
                    components: &p.components,
                    reason: Some(p.reason.to_string()),
                    error: None,
                    reused: p.reused,
                    compared: None,
                    started_at_us: p.started_at_us,
                    duration: Duration::ZERO,
                    outputs: output_rows(node, &p.outputs, &[]),
                    inputs: input_rows(node, produced),
                    outputs_of: p.holder,
                    lease_holder: None,
                }
            })
            .collect();
        match &*self.pass.borrow() {
            Some(pass) => pass.record(&rows),
            None => self.store.record(&rows),
        }
    }

    /// Output `i` of `node`, declared by `spec` and stored as `p`, bound to the store for
    /// loading.
    pub(super) fn bind(
        &self,
        node: &Node,
        i: usize,
        spec: &Arc<OutputSpec>,
        p: &Produced,
    ) -> BoundArtifact {
        BoundArtifact {
            store: self.store.clone(),
            hash: p.hash,
            size: p.size,
            step: node.name.clone(),
            output_name: node.output_name(i).unwrap_or_default(),
            type_name: spec.decl.type_name.clone(),
            spec: Arc::clone(spec),
            execution: p.execution,
        }
    }
}

/// The input rows of `node`: each input's content hash and producing execution, for the
/// artifacts among them that `produced` knows.
pub(super) fn input_rows(node: &Node, produced: &[Option<Vec<Produced>>]) -> Vec<InputRow> {
    node.inputs
        .iter()
        .map(|input| match &input.source {
            InputSource::Param(_) => InputRow {
                name: input.name.to_string(),
                hash: None,
                producer: None,
                value: None,
            },
            InputSource::Artifact { node: up, output } => {
                let p = produced[*up].as_ref().and_then(|p| p.get(*output));
                InputRow {
                    name: input.name.to_string(),
                    hash: p.map(|p| p.hash),
                    producer: p.map(|p| p.execution),
                    value: None,
                }
            }
        })
        .collect()
}
