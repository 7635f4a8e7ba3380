//! Key assembly: the [`KeyComponents`] of one step call, from its node in the graph and the
//! content hashes of the upstream outputs it reads. The executor hashes them into the cache
//! key ([`KeyComponents::cache_key`]) and records them beside it.

use crate::graph::{InputSource, Node, NodeId};
use crate::key::{signature_hex, Hash128, InputComponent, KeyComponents, KEY_FORMAT_VERSION};

/// The key components of `node`, a node of `nodes`. `upstream(node, output)` is the content
/// hash of an upstream output, `None` when it is not known (then the component records an
/// empty hash: the key of a step that cannot run, recorded with its skipped row).
pub(crate) fn components(
    nodes: &[Node],
    node: &Node,
    upstream: impl Fn(NodeId, usize) -> Option<Hash128>,
) -> KeyComponents {
    let inputs = node
        .inputs
        .iter()
        .map(|input| match &input.source {
            InputSource::Artifact { node: up, output } => {
                let hash = upstream(*up, *output)
                    .map(Hash128::to_hex)
                    .unwrap_or_default();
                InputComponent::Artifact {
                    name: input.name.to_string(),
                    content_hash: hash,
                    producer: nodes[*up].name.clone(),
                }
            }
            InputSource::Param(p) => InputComponent::Parameter {
                name: input.name.to_string(),
                type_name: p.type_name.to_string(),
                shape: p.shape.clone(),
                hash: p.hash.to_hex(),
                value: p.json.clone(),
                text: p.text.clone(),
            },
        })
        .collect();
    let code = node.code.code();
    KeyComponents {
        format: KEY_FORMAT_VERSION,
        step: node.step.to_string(),
        module: code.module.clone(),
        code_signature: signature_hex(code.signature),
        code_parts: code.parts.clone(),
        outputs: node.outputs.iter().map(|o| o.decl.clone()).collect(),
        inputs,
    }
}
