//! The schedule of one run: which nodes are ready, which still wait for upstream nodes,
//! which are blocked by a failure upstream, and which in-memory values a consumer still
//! wants. It knows nodes only by number and never touches the store, so it is tested alone
//! (below), as cargo's `util/dependency_queue.rs` is.
//!
//! A node is ready once every distinct upstream node it reads from is done. A node that
//! failed, or was skipped, blocks its dependents: each is skipped in turn, and names the
//! first failed node upstream of it. A value kept for consumers is released when its last
//! consumer has taken it (or was skipped).

use std::collections::{HashMap, VecDeque};

/// A node of the graph, by position (the same numbers as `graph::NodeId`).
pub(crate) type NodeId = usize;

/// One output of a node: `(node, output index)`.
pub(crate) type Slot = (NodeId, usize);

/// How a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// It executed or was reused: its dependents may run.
    Succeeded,
    /// It failed: its dependents are skipped, blocked by it.
    Failed,
    /// It was skipped: its dependents are skipped, blocked by what blocked it.
    Skipped,
}

/// Ready / waiting / blocked bookkeeping for one run, and the values kept for consumers.
pub(crate) struct Schedule<V> {
    /// Per node: the outputs its inputs read, in input order (repeats allowed).
    inputs: Vec<Vec<Slot>>,
    /// Per node: how many distinct upstream nodes are not done yet.
    waiting_on: Vec<usize>,
    /// Per node: distinct downstream nodes, in increasing order.
    dependents: Vec<Vec<NodeId>>,
    /// Per output: inputs not yet handed to a consumer.
    unconsumed: HashMap<Slot, usize>,
    /// In-memory outputs still wanted by a consumer.
    memory: HashMap<Slot, V>,
    /// Per node: the failed node upstream that blocks it.
    blocked_by: Vec<Option<NodeId>>,
    /// Per node: how it ended, once it has (nodes added later look their upstream up).
    ended: Vec<Option<Done>>,
    ready: VecDeque<NodeId>,
    done: usize,
}

impl<V: Clone> Schedule<V> {
    /// A schedule for nodes `0..inputs.len()`, where `inputs[n]` lists the upstream outputs
    /// node `n` reads, one per input, or is `None` for a dormant node (a map's template,
    /// which never runs: it counts as done from the start and nothing waits for it).
    /// Every upstream node must come before its consumers (graphs are recorded in call
    /// order, so they do). Nodes with no upstream are ready.
    pub(crate) fn new(inputs: Vec<impl Into<Option<Vec<Slot>>>>) -> Self {
        let inputs: Vec<Option<Vec<Slot>>> = inputs.into_iter().map(Into::into).collect();
        let n = inputs.len();
        let dormant: Vec<bool> = inputs.iter().map(Option::is_none).collect();
        let inputs: Vec<Vec<Slot>> = inputs.into_iter().map(Option::unwrap_or_default).collect();
        let mut waiting_on = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        let mut unconsumed = HashMap::new();
        for (id, slots) in inputs.iter().enumerate() {
            for &(up, output) in slots {
                *unconsumed.entry((up, output)).or_insert(0) += 1;
            }
            let ups = distinct_nodes(slots);
            waiting_on[id] = ups.len();
            for up in ups {
                if let Some(d) = dependents.get_mut(up) {
                    d.push(id);
                }
            }
        }
        let ready = (0..n)
            .filter(|&i| waiting_on[i] == 0 && !dormant[i])
            .collect();
        Schedule {
            inputs,
            waiting_on,
            dependents,
            unconsumed,
            memory: HashMap::new(),
            blocked_by: vec![None; n],
            ended: dormant
                .iter()
                .map(|&d| d.then_some(Done::Succeeded))
                .collect(),
            ready,
            done: dormant.iter().filter(|&&d| d).count(),
        }
    }

    /// Adds a node that reads `inputs` (upstream nodes that exist: done or not) and returns
    /// its number, the next one. It is ready at once if its upstream nodes are done, and
    /// blocked if one of them failed or was skipped.
    pub(crate) fn add(&mut self, inputs: Vec<Slot>) -> NodeId {
        let id = self.len();
        self.waiting_on.push(0);
        self.dependents.push(Vec::new());
        self.blocked_by.push(None);
        self.ended.push(None);
        self.inputs.push(Vec::new());
        self.attach(id, inputs);
        id
    }

    /// Adds a dormant node (a template of a map nested in another map's closure, copied
    /// for one item of the outer list): done from the start, and nothing waits for it.
    pub(crate) fn add_dormant(&mut self) -> NodeId {
        let id = self.len();
        self.waiting_on.push(0);
        self.dependents.push(Vec::new());
        self.blocked_by.push(None);
        self.ended.push(Some(Done::Succeeded));
        self.inputs.push(Vec::new());
        self.done += 1;
        id
    }

    /// Gives node `id`, which has not started, new inputs instead of those it had (a map's
    /// gather, once the list is split). Its old upstream nodes must not be done yet.
    pub(crate) fn replace_inputs(&mut self, id: NodeId, inputs: Vec<Slot>) {
        let old = std::mem::take(&mut self.inputs[id]);
        for (up, output) in old {
            if let Some(n) = self.unconsumed.get_mut(&(up, output)) {
                *n = n.saturating_sub(1);
            }
            self.dependents[up].retain(|&d| d != id);
        }
        self.waiting_on[id] = 0;
        self.ready.retain(|&r| r != id);
        self.attach(id, inputs);
    }

    /// Makes `id` read `inputs`: counts the upstream nodes not done yet, takes the block of
    /// a failed one, and queues `id` if nothing is left to wait for.
    fn attach(&mut self, id: NodeId, inputs: Vec<Slot>) {
        for &(up, output) in &inputs {
            *self.unconsumed.entry((up, output)).or_insert(0) += 1;
        }
        let ups = distinct_nodes(&inputs);
        for up in ups {
            match self.ended[up] {
                None => {
                    self.waiting_on[id] += 1;
                    self.dependents[up].push(id);
                }
                Some(Done::Succeeded) => {}
                Some(Done::Failed) => {
                    self.blocked_by[id].get_or_insert(up);
                }
                Some(Done::Skipped) => {
                    let blocker = self.blocked_by[up].unwrap_or(up);
                    self.blocked_by[id].get_or_insert(blocker);
                }
            }
        }
        self.inputs[id] = inputs;
        if self.waiting_on[id] == 0 {
            self.ready.push_back(id);
        }
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.waiting_on.len()
    }

    /// Whether every node is done.
    pub(crate) fn is_finished(&self) -> bool {
        self.done == self.len()
    }

    /// The next node whose upstream nodes are all done, in the order they became ready.
    pub(crate) fn next_ready(&mut self) -> Option<NodeId> {
        self.ready.pop_front()
    }

    /// Puts a node that was taken from the ready queue back at its front (a cancelled run
    /// decides it again, as skipped).
    pub(crate) fn requeue(&mut self, id: NodeId) {
        self.ready.push_front(id);
    }

    /// Whether a node is ready.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The failed node upstream that blocks `id`, if one does: `id` must then be skipped.
    pub(crate) fn blocked_by(&self, id: NodeId) -> Option<NodeId> {
        self.blocked_by.get(id).copied().flatten()
    }

    /// Records `id` as done, blocks its dependents if it failed or was skipped, and makes
    /// ready the dependents that waited only for it. Call once per node.
    pub(crate) fn complete(&mut self, id: NodeId, how: Done) {
        let blocker = match how {
            Done::Succeeded => None,
            Done::Failed => Some(id),
            Done::Skipped => Some(self.blocked_by(id).unwrap_or(id)),
        };
        if let Some(blocker) = blocker {
            for &d in &self.dependents[id] {
                self.blocked_by[d].get_or_insert(blocker);
            }
        }
        self.done += 1;
        self.ended[id] = Some(how);
        for i in 0..self.dependents[id].len() {
            let d = self.dependents[id][i];
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.ready.push_back(d);
            }
        }
    }

    /// Whether some consumer has yet to take output `at`.
    pub(crate) fn is_wanted(&self, at: Slot) -> bool {
        self.unconsumed.get(&at).copied().unwrap_or(0) > 0
    }

    /// Keeps `value` as output `at` for its consumers, unless none wants it.
    pub(crate) fn keep(&mut self, at: Slot, value: V) {
        if self.is_wanted(at) {
            self.memory.insert(at, value);
        }
    }

    /// The kept value of output `at`, if it is in memory.
    pub(crate) fn value(&self, at: Slot) -> Option<V> {
        self.memory.get(&at).cloned()
    }

    /// Marks one consumption of output `at`; drops the kept value after the last one.
    pub(crate) fn consume(&mut self, at: Slot) {
        if let Some(n) = self.unconsumed.get_mut(&at) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.memory.remove(&at);
            }
        }
    }

    /// Marks every input of `id` consumed, for a node that will not take its inputs (reused
    /// from the cache, or skipped).
    pub(crate) fn release_inputs(&mut self, id: NodeId) {
        for i in 0..self.inputs[id].len() {
            let at = self.inputs[id][i];
            self.consume(at);
        }
    }
}

/// The distinct nodes `slots` read, in increasing order: sorted, so a gather of 10,000
/// items costs `n log n`, not `n²`.
fn distinct_nodes(slots: &[Slot]) -> Vec<NodeId> {
    let mut ups: Vec<NodeId> = slots.iter().map(|&(up, _)| up).collect();
    ups.sort_unstable();
    ups.dedup();
    ups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the schedule to the end, completing each node as `how(node)` says; returns the
    /// order nodes became ready and what blocked each skipped node.
    fn drain(
        s: &mut Schedule<&'static str>,
        how: impl Fn(NodeId) -> Done,
    ) -> (Vec<NodeId>, Vec<(NodeId, NodeId)>) {
        let (mut order, mut skipped) = (Vec::new(), Vec::new());
        while let Some(id) = s.next_ready() {
            order.push(id);
            let done = match s.blocked_by(id) {
                Some(blocker) => {
                    skipped.push((id, blocker));
                    s.release_inputs(id);
                    Done::Skipped
                }
                None => how(id),
            };
            s.complete(id, done);
        }
        (order, skipped)
    }

    #[test]
    fn a_chain_runs_in_order_and_each_node_waits_for_its_upstream() {
        // 0 -> 1 -> 2
        let mut s = Schedule::<&str>::new(vec![vec![], vec![(0, 0)], vec![(1, 0)]]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), None, "1 waits for 0");
        s.complete(0, Done::Succeeded);
        assert_eq!(s.next_ready(), Some(1));
        assert_eq!(s.next_ready(), None, "2 waits for 1");
        assert!(!s.is_finished());
        s.complete(1, Done::Succeeded);
        assert_eq!(s.next_ready(), Some(2));
        s.complete(2, Done::Succeeded);
        assert!(s.is_finished());
    }

    #[test]
    fn nodes_without_upstream_start_ready_in_graph_order() {
        let mut s = Schedule::<&str>::new(vec![vec![], vec![(0, 0)], vec![], vec![]]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), Some(2));
        assert_eq!(s.next_ready(), Some(3));
        assert_eq!(s.next_ready(), None);
    }

    #[test]
    fn a_diamond_joins_once_both_sides_are_done() {
        // 0 -> {1, 2} -> 3, with 3 reading 1 twice.
        let mut s = Schedule::<&str>::new(vec![
            vec![],
            vec![(0, 0)],
            vec![(0, 0)],
            vec![(1, 0), (2, 0), (1, 0)],
        ]);
        assert_eq!(s.next_ready(), Some(0));
        s.complete(0, Done::Succeeded);
        assert_eq!((s.next_ready(), s.next_ready()), (Some(1), Some(2)));
        s.complete(1, Done::Succeeded);
        assert!(!s.has_ready(), "3 still waits for 2");
        s.complete(2, Done::Succeeded);
        assert_eq!(s.next_ready(), Some(3));
        s.complete(3, Done::Succeeded);
        assert!(s.is_finished());
    }

    #[test]
    fn a_failure_skips_every_node_downstream_and_names_the_failed_one() {
        // 0 -> 1 -> 2 -> 3, and 4 reads 1 and 0; 1 fails.
        let mut s = Schedule::<&str>::new(vec![
            vec![],
            vec![(0, 0)],
            vec![(1, 0)],
            vec![(2, 0)],
            vec![(0, 0), (1, 0)],
        ]);
        let (order, skipped) = drain(&mut s, |id| {
            if id == 1 {
                Done::Failed
            } else {
                Done::Succeeded
            }
        });
        assert_eq!(order, [0, 1, 2, 4, 3]);
        assert_eq!(
            skipped,
            [(2, 1), (4, 1), (3, 1)],
            "all blocked by 1, not by 2"
        );
        assert!(s.is_finished());
    }

    #[test]
    fn independent_branches_keep_running_after_a_failure() {
        // Two chains: 0 -> 1 and 2 -> 3; 0 fails.
        let mut s = Schedule::<&str>::new(vec![vec![], vec![(0, 0)], vec![], vec![(2, 0)]]);
        let (order, skipped) = drain(&mut s, |id| {
            if id == 0 {
                Done::Failed
            } else {
                Done::Succeeded
            }
        });
        assert_eq!(order, [0, 2, 1, 3]);
        assert_eq!(skipped, [(1, 0)], "3 runs: nothing upstream of it failed");
    }

    #[test]
    fn the_first_failure_to_reach_a_node_blocks_it() {
        // 2 reads 0 and 1, which both fail; 0 completes first.
        let mut s = Schedule::<&str>::new(vec![vec![], vec![], vec![(0, 0), (1, 0)]]);
        let (_, skipped) = drain(&mut s, |_| Done::Failed);
        assert_eq!(skipped, [(2, 0)]);
    }

    #[test]
    fn a_value_is_released_after_its_last_consumer() {
        // Output (0, 0) is read by 1 and twice by 2; output (0, 1) by nobody.
        let mut s = Schedule::new(vec![vec![], vec![(0, 0)], vec![(0, 0), (0, 0)]]);
        s.keep((0, 0), "value");
        s.keep((0, 1), "unread");
        assert_eq!(s.value((0, 1)), None, "a value nobody reads is not kept");
        assert!(s.is_wanted((0, 0)));
        s.consume((0, 0));
        assert_eq!(s.value((0, 0)), Some("value"), "2 still wants it");
        s.consume((0, 0));
        assert_eq!(s.value((0, 0)), Some("value"));
        s.consume((0, 0));
        assert_eq!(s.value((0, 0)), None, "released after the third read");
        assert!(!s.is_wanted((0, 0)));
    }

    #[test]
    fn a_node_that_does_not_take_its_inputs_still_releases_them() {
        // 1 is reused from the cache (takes nothing), 2 is the other consumer.
        let mut s = Schedule::new(vec![vec![], vec![(0, 0)], vec![(0, 0)]]);
        s.keep((0, 0), "value");
        s.release_inputs(1);
        assert_eq!(s.value((0, 0)), Some("value"));
        s.release_inputs(2);
        assert_eq!(s.value((0, 0)), None);
    }

    #[test]
    fn fan_out_makes_every_consumer_ready_at_once() {
        let mut inputs = vec![vec![]];
        inputs.extend((0..5).map(|_| vec![(0, 0)]));
        let mut s = Schedule::<&str>::new(inputs);
        assert_eq!(s.next_ready(), Some(0));
        s.complete(0, Done::Succeeded);
        let ready: Vec<_> = std::iter::from_fn(|| s.next_ready()).collect();
        assert_eq!(ready, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn dormant_nodes_never_run_and_added_nodes_join_the_schedule() {
        // 0 -> split 1; 2 is a template (dormant); 3 is the gather, waiting on a slot of 1
        // that nothing produces until its inputs are replaced.
        let mut s = Schedule::<&str>::new(vec![
            Some(vec![]),
            Some(vec![(0, 0)]),
            None,
            Some(vec![(1, usize::MAX)]),
        ]);
        assert_eq!(s.next_ready(), Some(0));
        s.complete(0, Done::Succeeded);
        assert_eq!(s.next_ready(), Some(1));
        // The split is known: two per-item nodes, and the gather reads them.
        let a = s.add(vec![(1, 0)]);
        let b = s.add(vec![(1, 1)]);
        assert_eq!((a, b), (4, 5));
        s.replace_inputs(3, vec![(a, 0), (b, 0)]);
        assert!(!s.has_ready(), "the items wait for the split");
        s.complete(1, Done::Succeeded);
        assert_eq!((s.next_ready(), s.next_ready()), (Some(4), Some(5)));
        s.complete(4, Done::Succeeded);
        s.complete(5, Done::Failed);
        assert_eq!(s.next_ready(), Some(3));
        assert_eq!(s.blocked_by(3), Some(5), "a failed item blocks the gather");
        s.complete(3, Done::Skipped);
        assert!(s.is_finished(), "the dormant template counts as done");
        // A node added after its upstream failed is blocked at once, and ready.
        let late = s.add(vec![(5, 0)]);
        assert_eq!(s.next_ready(), Some(late));
        assert_eq!(s.blocked_by(late), Some(5));
    }

    #[test]
    fn a_gather_with_no_items_is_ready_at_once() {
        let mut s = Schedule::<&str>::new(vec![Some(vec![]), Some(vec![(0, usize::MAX)])]);
        assert_eq!(s.next_ready(), Some(0));
        s.replace_inputs(1, vec![]);
        assert_eq!(s.next_ready(), Some(1));
    }
}
