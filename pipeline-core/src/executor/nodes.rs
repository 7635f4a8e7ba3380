//! The nodes of one run: the graph's, plus those the run adds as it goes (the per-item
//! calls of a map, and the gather that replaces each map's placeholder once the list is
//! split: `map.rs`).
//!
//! Worker threads borrow `&Node`s for the whole run while the coordinator adds nodes, so
//! added nodes live in append-only arenas (`elsa`), whose entries never move.

use elsa::{FrozenMap, FrozenVec};

use crate::graph::{Graph, Node, NodeId, Role};

/// The nodes of one run, by id: the graph's first, then the added ones.
pub(super) struct RunNodes<'g> {
    graph: &'g Graph,
    /// Nodes added while running, ids `graph.nodes.len()..`.
    added: FrozenVec<Box<Node>>,
    /// Nodes the run replaced: a map's gather, given one input per item (a gather of a
    /// map nested in another is itself an added node).
    replaced: FrozenMap<NodeId, Box<Node>>,
}

impl<'g> RunNodes<'g> {
    pub(super) fn new(graph: &'g Graph) -> Self {
        RunNodes {
            graph,
            added: FrozenVec::new(),
            replaced: FrozenMap::new(),
        }
    }

    /// Node `id`.
    ///
    /// # Panics
    ///
    /// When no node has that id (a bug: ids come from the graph or from [`Self::add`]).
    pub(super) fn get(&self, id: NodeId) -> &Node {
        let n = self.graph.nodes.len();
        let node = if id < n {
            &self.graph.nodes[id]
        } else {
            &self.added[id - n]
        };
        // Only a map's gather is ever replaced: other nodes skip the lookup.
        if matches!(node.role, Role::MapGather(..)) {
            if let Some(replaced) = self.replaced.get(&id) {
                return replaced;
            }
        }
        node
    }

    /// How many nodes there are now.
    pub(super) fn len(&self) -> usize {
        self.graph.nodes.len() + self.added.len()
    }

    /// Adds `node`; returns its id.
    pub(super) fn add(&self, node: Node) -> NodeId {
        let id = self.len();
        self.added.push(Box::new(node));
        id
    }

    /// Replaces node `id` (a map's gather) for the rest of the run.
    pub(super) fn replace(&self, id: NodeId, node: Node) {
        self.replaced.insert(id, Box::new(node));
    }

    /// The graph the run started from.
    pub(super) fn graph(&self) -> &'g Graph {
        self.graph
    }
}
