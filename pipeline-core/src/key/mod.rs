//! Cache keys and the components they are made of.
//!
//! A cache key is xxh3-128 over a canonical, length-prefixed encoding of: the key-format
//! version, the step name, the module that defines the step, the complete code signature
//! (`<step>::signature()`; its named parts are recorded beside it), each output's
//! declaration (name, type name, the type's serde shape, cacher id and version) and each
//! input in declaration order (name plus the upstream artifact's content hash, or the
//! parameter's type name, serde shape and
//! canonical bytes). The components are recorded beside the key so a miss can say exactly
//! what changed.
//!
//! Step options that touch the key:
//! * `cache_ignore = [threads, verbose]` removes the named parameters from the key (as
//!   Flyte's `cache_ignore_input_vars`): runs that differ only in them share entries. Their
//!   values are still recorded with the components (flagged `ignored`), for lineage, but
//!   no miss is ever explained by them.
//! * `secret = [token]` keeps the parameter's canonical bytes in the key, but its value is
//!   never stored: the components record its hash, flagged `secret`, with `<secret>` as
//!   its value, and a changed secret is explained as `<secret, changed>`.
//! * `cache_expires = "7d"`, retries, timeouts and resources never enter the key: an
//!   expired entry executes again under the same key.
//!
//! Keys of steps that use none of these options are those of key format 2, unchanged.
//!
//! `assemble.rs` builds the components of a step call; `explain.rs` diffs two sets of them
//! into the [`Reason`](crate::Reason)s a miss is explained by.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::signature::CodePart;

mod assemble;
mod explain;

pub(crate) use explain::Through;

pub(crate) use assemble::{components, KeyInput};

/// Bump when the encoding below changes: every key changes with it, which is what we want.
///
/// 2: output declarations and parameters carry their type's serde shape; sets in
/// parameters are encoded in canonical order; the module that defines the step and the
/// complete run-time code signature enter the key.
pub const KEY_FORMAT_VERSION: u32 = 2;

/// What a secret parameter's value is replaced by wherever it would be recorded or shown.
pub const SECRET: &str = "<secret>";

/// What a changed secret parameter shows instead of its old and new values.
pub const SECRET_CHANGED: &str = "<secret, changed>";

/// A 128-bit hash (content hash or cache key).
///
/// Written everywhere people and other programs see it (records, the store, JSON, logs) as
/// 32 lowercase hex digits: [`Display`](fmt::Display) writes them, [`FromStr`](std::str::FromStr)
/// reads them, and serde uses the same string.
///
/// ```
/// use pipeline::Hash128;
///
/// let h = Hash128::of(b"hello");
/// let text = h.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<Hash128>().unwrap(), h);
/// assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{text}\""));
/// assert!("not a hash".parse::<Hash128>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash128(pub u128);

/// A text that is not a [`Hash128`]: not exactly 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a 128-bit hash: expected 32 hex digits")]
pub struct ParseHashError(String);

impl std::str::FromStr for Hash128 {
    type Err = ParseHashError;

    /// Reads 32 hex digits (either case), as [`Display`](fmt::Display) writes them.
    ///
    /// # Errors
    ///
    /// [`ParseHashError`] for anything else: another length, a sign, a non-hex digit.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash128::from_hex(s).ok_or_else(|| ParseHashError(s.to_string()))
    }
}

impl Serialize for Hash128 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash128 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Hash128 {
    /// 32 lowercase hex digits.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses 32 hex digits; `None` for anything else (see also [`FromStr`](std::str::FromStr)).
    pub fn from_hex(s: &str) -> Option<Self> {
        // `from_str_radix` also takes a leading `+`.
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Hash128)
    }

    /// xxh3-128 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash128(xxhash_rust::xxh3::xxh3_128(bytes))
    }
}

impl fmt::Debug for Hash128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for Hash128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One output's declaration as it enters the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDecl {
    /// Output name (`output` for a single-output step).
    pub name: String,
    /// Rust type name of the value.
    pub type_name: String,
    /// Fingerprint of the type's serde shape (32 hex digits), `untraced` when it could not
    /// be traced (see [`crate::shape`]), empty in records older than key format 2.
    #[serde(default)]
    pub shape: String,
    /// Cacher id.
    pub cacher: String,
    /// Cacher format version.
    pub cacher_version: u32,
}

/// One input as it enters the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputComponent {
    /// An upstream artifact, by content hash.
    Artifact {
        /// Argument name.
        name: String,
        /// Content hash of the upstream artifact (hex).
        content_hash: String,
        /// Upstream step that produced it (not part of the key: for explanations).
        producer: String,
    },
    /// A plain value.
    Parameter {
        /// Argument name.
        name: String,
        /// Rust type name.
        type_name: String,
        /// Fingerprint of the type's serde shape, as in [`OutputDecl::shape`].
        #[serde(default)]
        shape: String,
        /// xxh3-128 of the canonical bytes (hex).
        hash: String,
        /// The value as JSON (not part of the key: for explanations).
        value: serde_json::Value,
        /// The value as text where its JSON cannot show it: a NaN or infinite float anywhere
        /// in the value, which JSON records as `null`, shows here as `NaN`, `inf` or `-inf`;
        /// a value JSON cannot hold at all (a map with tuple keys; `value` is then `null`)
        /// shows here whole. `None` when `value` shows the value exactly. Not part of the
        /// key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Named in the step's `cache_ignore`: left out of the key, recorded for lineage.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ignored: bool,
        /// Named in the step's `secret`: `hash` enters the key, `value` and `text` are
        /// `<secret>`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secret: bool,
    },
}

impl InputComponent {
    /// The argument name.
    pub fn name(&self) -> &str {
        match self {
            InputComponent::Artifact { name, .. } | InputComponent::Parameter { name, .. } => name,
        }
    }

    /// A parameter's value as people read it: its JSON, except that NaN and infinite floats
    /// show as `NaN`, `inf` and `-inf`, and a value JSON cannot hold shows at all (see the
    /// `text` field). `None` for an artifact.
    pub fn value_text(&self) -> Option<String> {
        match self {
            InputComponent::Parameter { secret: true, .. } => Some(SECRET.to_string()),
            InputComponent::Parameter { text: Some(t), .. } => Some(t.clone()),
            InputComponent::Parameter { value, .. } => Some(value.to_string()),
            InputComponent::Artifact { .. } => None,
        }
    }

    /// Whether this input enters the cache key: every input but a `cache_ignore` one.
    pub fn in_key(&self) -> bool {
        !matches!(self, InputComponent::Parameter { ignored: true, .. })
    }

    /// Whether this is a `secret` parameter.
    pub fn is_secret(&self) -> bool {
        matches!(self, InputComponent::Parameter { secret: true, .. })
    }
}

/// Everything a cache key is computed from, recorded beside the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    /// Key-format version.
    pub format: u32,
    /// Step name.
    pub step: String,
    /// The module that defines the step (`my_crate::kelvin`): two steps of the same name in
    /// different modules never share a key. Empty in rows written before format 2.
    #[serde(default)]
    pub module: String,
    /// Code signature (hex of the u64): the complete, run-time one (`<step>::signature()`).
    pub code_signature: String,
    /// The named parts the code signature is made of (not part of the key, which has their
    /// combination: for explanations). Empty in rows written before format 2.
    #[serde(default)]
    pub code_parts: Vec<CodePart>,
    /// Output declarations in order.
    pub outputs: Vec<OutputDecl>,
    /// Inputs in declaration order.
    pub inputs: Vec<InputComponent>,
}

impl KeyComponents {
    /// The cache key: xxh3-128 over a length-prefixed encoding of the components
    /// (display-only fields such as parameter JSON and producer names are left out).
    pub fn cache_key(&self) -> Hash128 {
        // The encoding is gathered first and hashed in one call (xxh3's one-shot and
        // streaming digests of the same bytes are equal), as many small streaming
        // updates cost more than the hashing itself.
        let mut encoded = Vec::with_capacity(512);
        let mut field = |bytes: &[u8]| {
            encoded.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            encoded.extend_from_slice(bytes);
        };
        field(&self.format.to_le_bytes());
        field(self.step.as_bytes());
        field(self.module.as_bytes());
        field(self.code_signature.as_bytes());
        field(&(self.outputs.len() as u64).to_le_bytes());
        for o in &self.outputs {
            field(o.name.as_bytes());
            field(o.type_name.as_bytes());
            field(o.shape.as_bytes());
            field(o.cacher.as_bytes());
            field(&o.cacher_version.to_le_bytes());
        }
        // `cache_ignore` parameters are left out, count included, so a step without them
        // keeps its key.
        let keyed = self.inputs.iter().filter(|i| i.in_key());
        field(&(keyed.clone().count() as u64).to_le_bytes());
        for i in keyed {
            match i {
                InputComponent::Artifact {
                    name, content_hash, ..
                } => {
                    field(b"a");
                    field(name.as_bytes());
                    field(content_hash.as_bytes());
                }
                InputComponent::Parameter {
                    name,
                    type_name,
                    shape,
                    hash,
                    ..
                } => {
                    field(b"p");
                    field(name.as_bytes());
                    field(type_name.as_bytes());
                    field(shape.as_bytes());
                    field(hash.as_bytes());
                }
            }
        }
        Hash128(xxhash_rust::xxh3::xxh3_128(&encoded))
    }

    /// A 64-bit fingerprint of every field, display-only ones included: components with
    /// equal fingerprints are equal, but for a 64-bit collision (whose only effect is that
    /// a cached row shows the display-only fields of the row it reuses, such as a
    /// producer's call name). The store records it beside the components, so that a cached
    /// row can tell that its components are those of the row it points at without
    /// writing them out as JSON (perf figure 1). Not part of the key.
    pub(crate) fn fingerprint(&self) -> i64 {
        // Every field, each length-prefixed, gathered and hashed at once as in
        // `cache_key`.
        struct Fields(Vec<u8>);
        impl Fields {
            fn put(&mut self, bytes: &[u8]) {
                self.0
                    .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                self.0.extend_from_slice(bytes);
            }
        }
        let mut h = Fields(Vec::with_capacity(768));
        h.put(&self.format.to_le_bytes());
        h.put(self.step.as_bytes());
        h.put(self.module.as_bytes());
        h.put(self.code_signature.as_bytes());
        h.put(&(self.code_parts.len() as u64).to_le_bytes());
        for part in &self.code_parts {
            h.put(&[part.kind as u8]);
            h.put(part.name.as_bytes());
            match &part.helper {
                Some(helper) => h.put(helper.as_bytes()),
                None => h.put(b"\xff"),
            }
            h.put(part.value.as_bytes());
        }
        h.put(&(self.outputs.len() as u64).to_le_bytes());
        for o in &self.outputs {
            h.put(o.name.as_bytes());
            h.put(o.type_name.as_bytes());
            h.put(o.shape.as_bytes());
            h.put(o.cacher.as_bytes());
            h.put(&o.cacher_version.to_le_bytes());
        }
        h.put(&(self.inputs.len() as u64).to_le_bytes());
        for i in &self.inputs {
            match i {
                InputComponent::Artifact {
                    name,
                    content_hash,
                    producer,
                } => {
                    h.put(b"a");
                    h.put(name.as_bytes());
                    h.put(content_hash.as_bytes());
                    h.put(producer.as_bytes());
                }
                InputComponent::Parameter {
                    name,
                    type_name,
                    shape,
                    hash,
                    value,
                    text,
                    ignored,
                    secret,
                } => {
                    h.put(b"p");
                    h.put(name.as_bytes());
                    h.put(type_name.as_bytes());
                    h.put(shape.as_bytes());
                    h.put(hash.as_bytes());
                    // The value's JSON text, streamed into the hash; then a separator no
                    // JSON text holds.
                    let _ = serde_json::to_writer(&mut h.0, value);
                    h.put(b"\xff");
                    match text {
                        Some(text) => h.put(text.as_bytes()),
                        None => h.put(b"\xff"),
                    }
                    // Only when set, so rows without these options keep their fingerprints.
                    if *ignored {
                        h.put(b"ignored");
                    }
                    if *secret {
                        h.put(b"secret");
                    }
                }
            }
        }
        xxhash_rust::xxh3::xxh3_64(&h.0) as i64
    }
}

/// Formats a code signature as 16 hex digits.
pub fn signature_hex(signature: u64) -> String {
    format!("{signature:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash128_reads_only_what_display_writes() {
        let h = Hash128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(h.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!(h.to_string().parse::<Hash128>(), Ok(h));
        assert_eq!("0123456789ABCDEF0011223344556677".parse::<Hash128>(), Ok(h));
        for bad in [
            "",
            "0123",
            "+123456789abcdef0011223344556677",
            "g123456789abcdef0011223344556677",
        ] {
            let err = bad.parse::<Hash128>().unwrap_err();
            assert!(err.to_string().contains("expected 32 hex digits"), "{err}");
        }
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<Hash128>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash128>("\"xyz\"").is_err());
        assert!(serde_json::from_str::<Hash128>("17").is_err());
    }

    fn components() -> KeyComponents {
        KeyComponents {
            format: KEY_FORMAT_VERSION,
            step: "trainer".into(),
            module: "app::train".into(),
            code_signature: signature_hex(7),
            code_parts: Vec::new(),
            outputs: vec![OutputDecl {
                name: "output".into(),
                type_name: "f64".into(),
                shape: "a".repeat(32),
                cacher: "bincode".into(),
                cacher_version: 1,
            }],
            inputs: vec![InputComponent::Parameter {
                name: "gamma".into(),
                type_name: "f64".into(),
                shape: "b".repeat(32),
                hash: Hash128(1).to_hex(),
                value: serde_json::json!(0.1),
                text: None,
                ignored: false,
                secret: false,
            }],
        }
    }

    #[test]
    fn ignored_parameters_leave_the_key_and_secret_ones_stay() {
        let base = components();
        let with = |ignored: bool, secret: bool, value: f64| {
            let mut c = components();
            c.inputs.push(InputComponent::Parameter {
                name: "threads".into(),
                type_name: "u32".into(),
                shape: "c".repeat(32),
                hash: Hash128(value as u128).to_hex(),
                value: serde_json::json!(value),
                text: None,
                ignored,
                secret,
            });
            c
        };
        // An ignored parameter, whatever its value, gives the key of the step without it.
        assert_eq!(with(true, false, 4.0).cache_key(), base.cache_key());
        assert_eq!(with(true, false, 8.0).cache_key(), base.cache_key());
        assert_ne!(with(false, false, 4.0).cache_key(), base.cache_key());
        // A secret one is in the key by its hash, as a plain parameter is.
        assert_eq!(
            with(false, true, 4.0).cache_key(),
            with(false, false, 4.0).cache_key()
        );
        assert_ne!(
            with(false, true, 4.0).cache_key(),
            with(false, true, 8.0).cache_key()
        );
        // The flags are recorded fields: the fingerprint sees them.
        assert_ne!(
            with(true, false, 4.0).fingerprint(),
            with(false, false, 4.0).fingerprint()
        );
        assert_ne!(
            with(false, true, 4.0).fingerprint(),
            with(false, false, 4.0).fingerprint()
        );
        assert_eq!(
            with(false, true, 4.0).inputs[1].value_text().as_deref(),
            Some(SECRET)
        );
        // Flags are written only when set: rows without them read and write as before.
        let json = serde_json::to_string(&base).unwrap_or_default();
        assert!(
            !json.contains("ignored") && !json.contains("secret"),
            "{json}"
        );
    }

    #[test]
    fn key_ignores_display_only_fields() {
        let a = components();
        let mut b = components();
        if let InputComponent::Parameter { value, .. } = &mut b.inputs[0] {
            *value = serde_json::json!("shown differently");
        }
        b.code_parts.push(crate::signature::CodePart {
            kind: crate::signature::CodePartKind::Body,
            name: String::new(),
            helper: None,
            value: "1".into(),
        });
        assert_eq!(a.cache_key(), b.cache_key());
    }

    #[test]
    fn key_format_is_pinned() {
        // Keys are stored: a change here makes every stored execution a miss, so it must
        // come with a new KEY_FORMAT_VERSION. Computed by the streaming hasher the key used
        // before it gathered its encoding for one-shot hashing (the same digest).
        let mut streamed = xxhash_rust::xxh3::Xxh3::new();
        let c = components();
        let mut field = |bytes: &[u8]| {
            streamed.update(&(bytes.len() as u64).to_le_bytes());
            streamed.update(bytes);
        };
        field(&c.format.to_le_bytes());
        field(c.step.as_bytes());
        field(c.module.as_bytes());
        field(c.code_signature.as_bytes());
        field(&1u64.to_le_bytes());
        let o = &c.outputs[0];
        for f in [&o.name, &o.type_name, &o.shape, &o.cacher] {
            field(f.as_bytes());
        }
        field(&o.cacher_version.to_le_bytes());
        field(&1u64.to_le_bytes());
        field(b"p");
        field(b"gamma");
        field(b"f64");
        field("b".repeat(32).as_bytes());
        field(Hash128(1).to_hex().as_bytes());
        assert_eq!(c.cache_key(), Hash128(streamed.digest128()));
        assert_eq!(
            c.cache_key().to_hex(),
            "1cc5f9b241a43e99db73d7f711b6e4c8",
            "the key of the test components"
        );
    }

    #[test]
    fn fingerprint_sees_every_field_the_key_ignores() {
        let base = components();
        assert_eq!(base.fingerprint(), components().fingerprint());
        let mut c = components();
        if let InputComponent::Parameter { value, .. } = &mut c.inputs[0] {
            *value = serde_json::json!(0.2);
        }
        assert_eq!(c.cache_key(), base.cache_key());
        assert_ne!(c.fingerprint(), base.fingerprint(), "parameter JSON");
        let mut c = components();
        if let InputComponent::Parameter { text, .. } = &mut c.inputs[0] {
            *text = Some("NaN".into());
        }
        assert_ne!(c.fingerprint(), base.fingerprint(), "parameter text");
        let mut c = components();
        c.code_parts.push(crate::signature::CodePart {
            kind: crate::signature::CodePartKind::Helper,
            name: "scale".into(),
            helper: None,
            value: "1".into(),
        });
        let one_part = c.fingerprint();
        assert_ne!(one_part, base.fingerprint(), "code parts");
        c.code_parts[0].kind = crate::signature::CodePartKind::Include;
        assert_ne!(c.fingerprint(), one_part, "a code part's kind");
        let mut c = components();
        c.inputs.push(InputComponent::Artifact {
            name: "data".into(),
            content_hash: Hash128(5).to_hex(),
            producer: "load".into(),
        });
        let with_producer = c.fingerprint();
        if let InputComponent::Artifact { producer, .. } = &mut c.inputs[1] {
            *producer = "load_2".into();
        }
        assert_ne!(c.fingerprint(), with_producer, "producer names");
        let mut c = components();
        c.code_signature = signature_hex(8);
        assert_ne!(c.fingerprint(), base.fingerprint(), "key fields too");
    }

    #[test]
    fn rows_written_before_format_2_still_parse() {
        let old = r#"{"format":1,"step":"s","code_signature":"0000000000000007","outputs":[],"inputs":[]}"#;
        let parsed: Option<KeyComponents> = serde_json::from_str(old).ok();
        let parsed = parsed.map(|c| (c.module, c.code_parts.len()));
        assert_eq!(parsed, Some((String::new(), 0)));
    }

    #[test]
    fn key_changes_with_each_component() {
        let base = components().cache_key();
        let mut c = components();
        c.code_signature = signature_hex(8);
        assert_ne!(c.cache_key(), base);
        let mut c = components();
        c.outputs[0].cacher_version = 2;
        assert_ne!(c.cache_key(), base);
        let mut c = components();
        if let InputComponent::Parameter { hash, .. } = &mut c.inputs[0] {
            *hash = Hash128(2).to_hex();
        }
        assert_ne!(c.cache_key(), base);
        let mut c = components();
        c.step = "trainer2".into();
        assert_ne!(c.cache_key(), base);
        let mut c = components();
        c.module = "app::other".into();
        assert_ne!(c.cache_key(), base, "same name, another module");
        let mut c = components();
        c.outputs[0].shape = "c".repeat(32);
        assert_ne!(c.cache_key(), base, "output shape");
        let mut c = components();
        if let InputComponent::Parameter { shape, .. } = &mut c.inputs[0] {
            *shape = "c".repeat(32);
        }
        assert_ne!(c.cache_key(), base, "parameter shape");
    }

    #[test]
    fn components_recorded_before_shapes_still_parse() {
        let old = r#"{"format":1,"step":"s","code_signature":"0000000000000007",
            "outputs":[{"name":"output","type_name":"u64","cacher":"bincode","cacher_version":1}],
            "inputs":[{"kind":"parameter","name":"n","type_name":"u32","hash":"00","value":3}]}"#;
        let parsed: KeyComponents = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.outputs[0].shape, "");
        assert!(
            matches!(&parsed.inputs[0], InputComponent::Parameter { shape, .. } if shape.is_empty())
        );
    }

    #[test]
    fn hex_round_trips() {
        let h = Hash128::of(b"abc");
        assert_eq!(Hash128::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash128::from_hex("xyz"), None);
    }
}
