//! Key assembly: the [`KeyComponents`] of one step call, from its step, its code, its
//! output declarations and its inputs (upstream outputs by content hash, parameters by
//! their canonical bytes' hash). The executor hashes them into the cache key
//! ([`KeyComponents::cache_key`]) and records them beside it.
//!
//! This file knows no graph: the caller describes each input as a [`KeyInput`], so the key
//! stays below the graph that holds key types.

use crate::key::KEY_FORMAT_VERSION;
use crate::key::{signature_hex, Hash128, InputComponent, KeyComponents, OutputDecl};
use crate::signature::StepCode;

/// One input of a step call as it enters the key.
pub(crate) enum KeyInput<'a> {
    /// An output of an upstream call.
    Artifact {
        /// Argument name.
        name: &'a str,
        /// Content hash of the upstream output; `None` when it is not known (then the
        /// component records an empty hash: the key of a step that cannot run, recorded
        /// with its skipped row).
        content_hash: Option<Hash128>,
        /// Call name of the upstream step (for explanations).
        producer: &'a str,
    },
    /// A plain value.
    Parameter {
        /// Argument name.
        name: &'a str,
        /// Rust type name.
        type_name: &'a str,
        /// Fingerprint of the type's serde shape.
        shape: &'a str,
        /// xxh3-128 of the value's canonical bytes.
        hash: Hash128,
        /// The value as JSON (for explanations).
        value: &'a serde_json::Value,
        /// The value as text where JSON cannot show it (for explanations).
        text: Option<&'a str>,
        /// Named in the step's `cache_ignore`: left out of the key.
        ignored: bool,
        /// Named in the step's `secret`: `value` and `text` are `<secret>` already.
        secret: bool,
    },
}

/// The key components of a call of `step`, whose code is `code`, declaring `outputs` in
/// order and reading `inputs` in declaration order.
pub(crate) fn components<'a>(
    step: &str,
    code: &StepCode,
    outputs: impl IntoIterator<Item = &'a OutputDecl>,
    inputs: impl IntoIterator<Item = KeyInput<'a>>,
) -> KeyComponents {
    let inputs = inputs
        .into_iter()
        .map(|input| match input {
            KeyInput::Artifact {
                name,
                content_hash,
                producer,
            } => InputComponent::Artifact {
                name: name.to_string(),
                content_hash: content_hash.map(Hash128::to_hex).unwrap_or_default(),
                producer: producer.to_string(),
            },
            KeyInput::Parameter {
                name,
                type_name,
                shape,
                hash,
                value,
                text,
                ignored,
                secret,
            } => InputComponent::Parameter {
                name: name.to_string(),
                type_name: type_name.to_string(),
                shape: shape.to_string(),
                hash: hash.to_hex(),
                // A secret's value never reaches the components, even if the caller
                // passed it.
                value: if secret {
                    serde_json::Value::String(crate::key::SECRET.to_string())
                } else {
                    value.clone()
                },
                text: if secret {
                    Some(crate::key::SECRET.to_string())
                } else {
                    text.map(str::to_string)
                },
                ignored,
                secret,
            },
        })
        .collect();
    KeyComponents {
        format: KEY_FORMAT_VERSION,
        step: step.to_string(),
        module: code.module.clone(),
        code_signature: signature_hex(code.signature),
        code_parts: code.parts.clone(),
        outputs: outputs.into_iter().cloned().collect(),
        inputs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_take_inputs_in_order_and_a_missing_upstream_hash_as_empty() {
        let code = StepCode {
            signature: 7,
            module: "app::train".into(),
            parts: Vec::new(),
        };
        let decl = OutputDecl {
            name: "output".into(),
            type_name: "f64".into(),
            shape: "a".repeat(32),
            cacher: "bincode".into(),
            cacher_version: 1,
        };
        let json = serde_json::json!(0.5);
        let input = |content_hash| {
            [
                KeyInput::Parameter {
                    name: "gamma",
                    type_name: "f64",
                    shape: "s",
                    hash: Hash128(3),
                    value: &json,
                    text: None,
                    ignored: false,
                    secret: false,
                },
                KeyInput::Artifact {
                    name: "data",
                    content_hash,
                    producer: "loader",
                },
            ]
        };
        let known = components("trainer", &code, [&decl], input(Some(Hash128(9))));
        assert_eq!(known.format, KEY_FORMAT_VERSION);
        assert_eq!(known.module, "app::train");
        assert_eq!(known.code_signature, signature_hex(7));
        assert_eq!(known.outputs, std::slice::from_ref(&decl));
        let names: Vec<&str> = known.inputs.iter().map(InputComponent::name).collect();
        assert_eq!(names, ["gamma", "data"]);
        assert!(matches!(
            &known.inputs[1],
            InputComponent::Artifact { content_hash, producer, .. }
                if *content_hash == Hash128(9).to_hex() && producer == "loader"
        ));
        let unknown = components("trainer", &code, [&decl], input(None));
        assert!(matches!(
            &unknown.inputs[1],
            InputComponent::Artifact { content_hash, .. } if content_hash.is_empty()
        ));
        assert_ne!(known.cache_key(), unknown.cache_key());
    }
}
