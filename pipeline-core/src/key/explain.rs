//! The miss explanation: why a step call's cache key differs from the one its earlier
//! execution had, as [`Reason`]s, found by diffing the two sets of [`KeyComponents`] (as
//! cargo's `dirty_reason.rs` sits beside its fingerprints).

use crate::key::{InputComponent, KeyComponents};
use crate::signature::{part_changes, PartChange};
use crate::status::Reason;

impl Reason {
    /// Explains a cache miss by comparing the new key components with those of the earlier
    /// execution of the same call: every one of [`Reason::differences`], as the difference
    /// itself when there is one, as [`Reason::Changes`] when there are several.
    pub(crate) fn explain(prev: Option<&KeyComponents>, new: &KeyComponents) -> Reason {
        let Some(prev) = prev else {
            return Reason::FirstExecution;
        };
        let mut changes = Reason::differences(prev, new);
        match changes.len() {
            0 => Reason::KeyChanged,
            1 => changes.remove(0),
            _ => Reason::Changes { changes },
        }
    }

    /// Every difference between two sets of key components: the step's module, its code
    /// (one reason per changed part when both sides list their parts), then each changed
    /// parameter (its type's shape first) and input in declaration order, then the shapes
    /// of output types, then declarations. For two calls of the built-in gather (a fan-in,
    /// or a map's result) the items are compared by content instead of input by input: the
    /// items new to the list (the first three, then [`Reason::MoreItemsChanged`]), then
    /// [`Reason::ListLengthChanged`] or [`Reason::ListReordered`].
    pub fn differences(old: &KeyComponents, new: &KeyComponents) -> Vec<Reason> {
        let mut out = Vec::new();
        if !old.module.is_empty() && !new.module.is_empty() && old.module != new.module {
            out.push(Reason::ModuleChanged {
                old: old.module.clone(),
                new: new.module.clone(),
            });
        }
        if old.code_signature != new.code_signature {
            let changes = if old.code_parts.is_empty() || new.code_parts.is_empty() {
                Vec::new()
            } else {
                part_changes(&old.code_parts, &new.code_parts)
            };
            if changes.is_empty() {
                // Rows written before parts were recorded.
                out.push(Reason::CodeChanged {
                    old: old.code_signature.clone(),
                    new: new.code_signature.clone(),
                });
            }
            for change in changes {
                let (part, old, new) = match change {
                    PartChange::Added(p) => {
                        let new = Some(p.value.clone());
                        (p, None, new)
                    }
                    PartChange::Removed(p) => {
                        let old = Some(p.value.clone());
                        (p, old, None)
                    }
                    PartChange::Changed(before, p) => {
                        let new = Some(p.value.clone());
                        (p, Some(before.value), new)
                    }
                };
                out.push(Reason::CodePartChanged {
                    part: part.kind,
                    name: part.name,
                    helper: part.helper,
                    old,
                    new,
                });
            }
        }
        // A gathered list's items are compared by content, below, not input by input.
        let gathered = |c: &KeyComponents| c.step == crate::gather::GATHER_STEP;
        let lists = gathered(old) && gathered(new);
        // A `cache_ignore` parameter is not in the key: a change of it explains nothing.
        for input in new.inputs.iter().filter(|i| i.in_key() && !lists) {
            let before = old
                .inputs
                .iter()
                .find(|i| i.name() == input.name())
                .filter(|i| i.in_key());
            match (before, input) {
                (
                    Some(
                        before @ InputComponent::Parameter {
                            hash: h0,
                            type_name: t0,
                            shape: s0,
                            ..
                        },
                    ),
                    InputComponent::Parameter {
                        name,
                        hash,
                        type_name,
                        shape,
                        ..
                    },
                ) => {
                    // Records from before key format 2 have no shape: no claim about it.
                    if t0 == type_name && shape_changed(s0, shape) {
                        out.push(Reason::ParameterShapeChanged {
                            name: name.clone(),
                            type_name: type_name.clone(),
                        });
                    }
                    if (h0 != hash || t0 != type_name) && (before.is_secret() || input.is_secret())
                    {
                        // Never a value, not even the hash: only that it changed.
                        out.push(Reason::SecretChanged { name: name.clone() });
                    } else if h0 != hash || t0 != type_name {
                        out.push(Reason::ParameterChanged {
                            name: name.clone(),
                            old: before.value_text().unwrap_or_default(),
                            new: input.value_text().unwrap_or_default(),
                        });
                    }
                }
                (
                    Some(InputComponent::Artifact {
                        content_hash: h0, ..
                    }),
                    InputComponent::Artifact {
                        name,
                        content_hash,
                        producer,
                    },
                ) if h0 != content_hash => out.push(Reason::InputChanged {
                    name: name.clone(),
                    producer: producer.clone(),
                }),
                _ => {}
            }
        }
        let shape = |c: &KeyComponents| {
            c.inputs
                .iter()
                .map(|i| {
                    (
                        i.name().to_string(),
                        matches!(i, InputComponent::Parameter { .. }),
                        i.in_key(),
                    )
                })
                .collect::<Vec<_>>()
        };
        for output in &new.outputs {
            let before = old.outputs.iter().find(|o| o.name == output.name);
            if let Some(before) = before {
                if before.type_name == output.type_name
                    && shape_changed(&before.shape, &output.shape)
                {
                    out.push(Reason::OutputShapeChanged {
                        output: output.name.clone(),
                        type_name: output.type_name.clone(),
                    });
                }
            }
        }
        // Shapes are compared above; here everything else about the outputs.
        let outputs = |c: &KeyComponents| {
            c.outputs
                .iter()
                .map(|o| {
                    (
                        o.name.clone(),
                        o.type_name.clone(),
                        o.cacher.clone(),
                        o.cacher_version,
                    )
                })
                .collect::<Vec<_>>()
        };
        if lists {
            out.extend(list_changes(old, new));
            if outputs(old) != outputs(new) {
                out.push(Reason::DeclarationChanged);
            }
        } else if outputs(old) != outputs(new) || shape(old) != shape(new) {
            out.push(Reason::DeclarationChanged);
        }
        out
    }
}

/// How a gathered list changed, its items compared by content (so an item inserted at the
/// front is one new item, not a change of every item after it): the items the earlier list
/// did not hold, the first few one by one and then how many more, then the length, or that
/// the same items came in another order. Linear in the items.
fn list_changes(old: &KeyComponents, new: &KeyComponents) -> Vec<Reason> {
    /// Changed items listed one by one; more than one more are counted instead.
    const LISTED: usize = 3;
    let items = |c: &'_ KeyComponents| -> Vec<(String, String)> {
        c.inputs
            .iter()
            .filter_map(|i| match i {
                InputComponent::Artifact {
                    content_hash,
                    producer,
                    ..
                } => Some((content_hash.clone(), producer.clone())),
                InputComponent::Parameter { .. } => None,
            })
            .collect()
    };
    let (before, now) = (items(old), items(new));
    // Equal items at both ends are the same items: an item inserted at the front leaves
    // the rest in place, even when the new item equals one further on.
    let same = |i: usize, j: usize| before[i].0 == now[j].0;
    let head = (0..before.len().min(now.len()))
        .take_while(|&i| same(i, i))
        .count();
    let tail = (0..before.len().min(now.len()) - head)
        .take_while(|&k| same(before.len() - 1 - k, now.len() - 1 - k))
        .count();
    // Between them, items are matched by content wherever they are (a reordered list).
    let mut held: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (hash, _) in &before[head..before.len() - tail] {
        *held.entry(hash).or_default() += 1;
    }
    let mut fresh = Vec::new();
    for (index, (hash, producer)) in now.iter().enumerate().take(now.len() - tail).skip(head) {
        match held.get_mut(hash.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => fresh.push(Reason::ListItemChanged {
                index,
                producer: producer.clone(),
            }),
        }
    }
    let mut out = Vec::new();
    let changed = fresh.len();
    if changed > LISTED + 1 {
        fresh.truncate(LISTED);
        out.extend(fresh);
        out.push(Reason::MoreItemsChanged {
            more: changed - LISTED,
        });
    } else {
        out.extend(fresh);
    }
    if before.len() != now.len() {
        out.push(Reason::ListLengthChanged {
            old: before.len(),
            new: now.len(),
        });
    } else if changed == 0 && before.iter().map(|i| &i.0).ne(now.iter().map(|i| &i.0)) {
        out.push(Reason::ListReordered);
    }
    out
}

/// What a changed input is, read through the built-in call that produced it (see
/// [`Reason::read_through`]).
pub(crate) enum Through {
    /// A gathered list: how it changed (its gather's differences).
    List(Vec<Reason>),
    /// Item `index` of a map's list, produced by `list` (see [`Reason::ItemChanged`]).
    Item {
        /// The item's position.
        index: usize,
        /// For a list that is itself an item of a list: its position, innermost first.
        outer: Vec<usize>,
        /// The (outermost) list's producer.
        list: String,
    },
}

impl Reason {
    /// This reason with each changed input that a built-in call produced read through it:
    /// an input that is a gathered list as [`Reason::ListInputChanged`] (how the list
    /// changed), a map's per-item call's item as [`Reason::ItemChanged`]. `through` says,
    /// for an input's name and producer, what that producer is; `None` leaves the input as
    /// it is.
    pub(crate) fn read_through(
        self,
        through: &mut impl FnMut(&str, &str) -> Option<Through>,
    ) -> Reason {
        match self {
            Reason::InputChanged { name, producer } => match through(&name, &producer) {
                Some(Through::List(changes)) if !changes.is_empty() => {
                    Reason::ListInputChanged { name, changes }
                }
                Some(Through::Item { index, outer, list }) => Reason::ItemChanged {
                    name,
                    index,
                    outer,
                    list,
                },
                _ => Reason::InputChanged { name, producer },
            },
            Reason::Changes { changes } => Reason::Changes {
                changes: changes
                    .into_iter()
                    .map(|c| c.read_through(through))
                    .collect(),
            },
            other => other,
        }
    }
}

/// Whether two recorded shape fingerprints differ; an empty one (recorded before key format
/// 2) is unknown, not different.
fn shape_changed(old: &str, new: &str) -> bool {
    !old.is_empty() && !new.is_empty() && old != new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::OutputDecl;

    fn components(output_shape: &str, param_shape: &str, param_hash: &str) -> KeyComponents {
        KeyComponents {
            format: crate::key::KEY_FORMAT_VERSION,
            step: "split".into(),
            module: String::new(),
            code_parts: Vec::new(),
            code_signature: "0000000000000001".into(),
            outputs: vec![OutputDecl {
                name: "output".into(),
                type_name: "my_crate::data::Split".into(),
                shape: output_shape.into(),
                cacher: "bincode".into(),
                cacher_version: 1,
            }],
            inputs: vec![InputComponent::Parameter {
                name: "mode".into(),
                type_name: "my_crate::Mode".into(),
                shape: param_shape.into(),
                hash: param_hash.into(),
                value: serde_json::json!("Fast"),
                text: None,
                ignored: false,
                secret: false,
            }],
        }
    }

    #[test]
    fn an_output_shape_change_is_named_with_its_type() {
        let old = components("aa", "pp", "h1");
        let new = components("bb", "pp", "h1");
        let diffs = Reason::differences(&old, &new);
        assert_eq!(
            diffs,
            vec![Reason::OutputShapeChanged {
                output: "output".into(),
                type_name: "my_crate::data::Split".into(),
            }]
        );
        assert_eq!(
            Reason::explain(Some(&old), &new).to_string(),
            "output type `Split` changed shape"
        );
    }

    #[test]
    fn a_parameter_shape_change_comes_before_its_value_change() {
        let old = components("aa", "pp", "h1");
        let same_value = components("aa", "qq", "h1");
        assert_eq!(
            Reason::explain(Some(&old), &same_value).to_string(),
            "type `Mode` of parameter `mode` changed shape"
        );
        let both = components("aa", "qq", "h2");
        let diffs = Reason::differences(&old, &both);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(matches!(diffs[0], Reason::ParameterShapeChanged { .. }));
        assert!(matches!(diffs[1], Reason::ParameterChanged { .. }));
    }

    #[test]
    fn records_without_shapes_claim_no_shape_change() {
        let before_shapes = components("", "", "h1");
        let now = components("aa", "pp", "h1");
        assert!(Reason::differences(&before_shapes, &now).is_empty());
    }

    #[test]
    fn a_retyped_output_is_a_declaration_change_not_a_shape_change() {
        let old = components("aa", "pp", "h1");
        let mut new = components("bb", "pp", "h1");
        new.outputs[0].type_name = "my_crate::data::Other".into();
        assert_eq!(
            Reason::differences(&old, &new),
            vec![Reason::DeclarationChanged]
        );
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;
    use crate::key::{Hash128, OutputDecl};

    /// A gather's key components over items with these content hashes.
    fn gathered(items: impl Iterator<Item = u128>) -> KeyComponents {
        KeyComponents {
            format: crate::key::KEY_FORMAT_VERSION,
            step: crate::gather::GATHER_STEP.into(),
            module: String::new(),
            code_parts: Vec::new(),
            code_signature: "0000000000000001".into(),
            outputs: vec![OutputDecl {
                name: "output".into(),
                type_name: "alloc::vec::Vec<f64>".into(),
                shape: String::new(),
                cacher: "bincode".into(),
                cacher_version: 1,
            }],
            inputs: items
                .enumerate()
                .map(|(i, h)| InputComponent::Artifact {
                    name: crate::gather::item_name(i).into(),
                    content_hash: Hash128(h).to_hex(),
                    producer: format!("fit[{h}]"),
                })
                .collect(),
        }
    }

    #[test]
    fn an_item_inserted_at_the_front_of_a_long_list_is_the_one_change() {
        let old = gathered(1..=10_000);
        let new = gathered(std::iter::once(0).chain(1..=10_000));
        assert_eq!(
            Reason::differences(&old, &new),
            [
                Reason::ListItemChanged {
                    index: 0,
                    producer: "fit[0]".into()
                },
                Reason::ListLengthChanged {
                    old: 10_000,
                    new: 10_001
                }
            ]
        );
    }

    #[test]
    fn an_item_inserted_at_the_front_that_equals_a_later_one_is_still_the_new_one() {
        // The new first item equals the second one: the rest stayed in place.
        let old = gathered([5, 7, 9].into_iter());
        let new = gathered([7, 5, 7, 9].into_iter());
        assert_eq!(
            Reason::differences(&old, &new),
            [
                Reason::ListItemChanged {
                    index: 0,
                    producer: "fit[7]".into()
                },
                Reason::ListLengthChanged { old: 3, new: 4 }
            ]
        );
    }

    #[test]
    fn removed_reordered_and_repeated_items_are_told_apart() {
        // One removed: the length says it, no item is new.
        let removed = Reason::differences(&gathered(1..=5), &gathered([1, 2, 4, 5].into_iter()));
        assert_eq!(removed, [Reason::ListLengthChanged { old: 5, new: 4 }]);
        let reordered = Reason::differences(&gathered(1..=5), &gathered((1..=5).rev()));
        assert_eq!(reordered, [Reason::ListReordered]);
        // An item held twice now but once before: the second copy is new.
        let twice = Reason::differences(&gathered(1..=2), &gathered([1, 1].into_iter()));
        assert_eq!(
            twice,
            [Reason::ListItemChanged {
                index: 1,
                producer: "fit[1]".into()
            }]
        );
        assert!(Reason::differences(&gathered(1..=3), &gathered(1..=3)).is_empty());
    }
}

#[cfg(test)]
mod key_option_tests {
    use super::*;
    use crate::key::{Hash128, SECRET};

    fn with_param(
        name: &str,
        hash: u128,
        value: &str,
        ignored: bool,
        secret: bool,
    ) -> KeyComponents {
        KeyComponents {
            format: crate::key::KEY_FORMAT_VERSION,
            step: "fetch".into(),
            module: String::new(),
            code_parts: Vec::new(),
            code_signature: "0000000000000001".into(),
            outputs: Vec::new(),
            inputs: vec![InputComponent::Parameter {
                name: name.into(),
                type_name: "alloc::string::String".into(),
                shape: String::new(),
                hash: Hash128(hash).to_hex(),
                value: serde_json::json!(if secret { SECRET } else { value }),
                text: secret.then(|| SECRET.to_string()),
                ignored,
                secret,
            }],
        }
    }

    #[test]
    fn an_ignored_parameter_never_explains_a_miss() {
        let old = with_param("verbose", 1, "yes", true, false);
        let new = with_param("verbose", 2, "no", true, false);
        assert_eq!(old.cache_key(), new.cache_key());
        assert!(Reason::differences(&old, &new).is_empty());
    }

    #[test]
    fn a_changed_secret_shows_no_value() {
        let old = with_param("token", 1, "", false, true);
        let new = with_param("token", 2, "", false, true);
        let reason = Reason::explain(Some(&old), &new);
        assert_eq!(
            reason,
            Reason::SecretChanged {
                name: "token".into()
            }
        );
        assert_eq!(
            reason.to_string(),
            "parameter `token` changed (<secret, changed>)"
        );
        // Made secret since a run that showed it: still no value, the old one included.
        let shown = with_param("token", 1, "hunter2", false, false);
        let text = Reason::explain(Some(&shown), &new).to_string();
        assert!(!text.contains("hunter2"), "{text}");
    }
}
