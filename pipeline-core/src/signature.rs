//! Code signatures made of named parts.
//!
//! `#[step]` and `#[helper]` describe what a signature is made of as constant data: the
//! hash of the item's own tokens, its `version` salt, the files it includes, the `env!`
//! values and `cfg` predicates it reads, pinned dependency versions, the build profile, and
//! the helpers it `uses`. [`compile_signature`] folds these into the `SIGNATURE` constant
//! at compile time; [`StepDecl::code`] folds in, once per process, what only the running
//! program can hash cheaply (large included files, the values of constants and statics the
//! step names), and lists every part by name so an explanation can say *which* part changed:
//! `helper `scale` changed`, `included file `data.txt` changed`.
//!
//! Hashing in a `const` runs in the compiler's interpreter (about 7 s per MiB), so included
//! files up to [`SMALL_INCLUDE`] bytes are hashed at compile time and larger ones at run
//! time, once per process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// Included files up to this many bytes are hashed at compile time, larger ones at run time.
pub const SMALL_INCLUDE: usize = 4096;

/// What a part of a code signature stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CodePartKind {
    /// The step's own tokens (signature, body and options other than the ones below).
    Body,
    /// The `version = ".."` salt.
    Version,
    /// A `#[helper]` the step uses, directly or through other helpers (its own tokens).
    Helper,
    /// The value of a constant or static, hashed at run time through `Serialize`.
    Value,
    /// A file read by `include_str!`, `include_bytes!` or `include!`.
    Include,
    /// A build-time environment variable read by `env!` or `option_env!`.
    Env,
    /// A `cfg!(..)` predicate or `#[cfg(..)]` attribute.
    Cfg,
    /// A dependency's locked version (`deps = [..]`).
    Dependency,
    /// The build profile (`build_profile = true`): `debug` or `release`.
    Profile,
    /// The step's whole source file (`source_file = true`).
    SourceFile,
    /// A kind written by a newer version of this library.
    #[serde(other)]
    Unknown,
}

/// One named part of a step's code signature, as recorded in its key components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodePart {
    /// What the part stands for.
    pub kind: CodePartKind,
    /// Its name: a helper's path, a file, a variable, a predicate, a crate; empty for the
    /// body, the version and the profile.
    pub name: String,
    /// The `#[helper]` the part belongs to, if it is not the step's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<String>,
    /// Its value: a hash (16 hex digits), or a readable value for versions, `cfg`
    /// predicates (`true`/`false`), dependencies and the profile. Environment values are
    /// never recorded, only their hashes.
    pub value: String,
}

impl CodePart {
    /// Whether `self` and `other` are the same part (possibly with different values).
    pub fn same_part(&self, other: &CodePart) -> bool {
        self.kind == other.kind && self.name == other.name && self.helper == other.helper
    }

    /// How the part reads in an explanation: `helper `scale``, `env!(MODE)`.
    pub fn label(&self) -> String {
        let own = match self.kind {
            CodePartKind::Body => "step body".to_string(),
            CodePartKind::Version => "`version`".to_string(),
            CodePartKind::Helper => format!("helper `{}`", self.name),
            CodePartKind::Value => format!("value of `{}`", self.name),
            CodePartKind::Include => format!("included file `{}`", self.name),
            CodePartKind::Env => format!("env!({})", self.name),
            CodePartKind::Cfg => format!("cfg({})", self.name),
            CodePartKind::Dependency => format!("dependency `{}`", self.name),
            CodePartKind::Profile => "build profile".to_string(),
            CodePartKind::SourceFile => format!("source file `{}`", self.name),
            CodePartKind::Unknown => format!("code part `{}`", self.name),
        };
        match &self.helper {
            Some(helper) if self.kind == CodePartKind::Value => {
                format!("value of helper `{helper}`")
            }
            Some(helper) if self.kind != CodePartKind::Helper => {
                format!("{own} in helper `{helper}`")
            }
            _ => own,
        }
    }

    /// Whether the value is readable (shown in explanations) rather than a hash.
    pub fn value_is_readable(&self) -> bool {
        matches!(
            self.kind,
            CodePartKind::Version
                | CodePartKind::Cfg
                | CodePartKind::Dependency
                | CodePartKind::Profile
        )
    }
}

/// How one part changed between two signatures, for [`crate::Reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartChange {
    Added(CodePart),
    Removed(CodePart),
    Changed(CodePart, CodePart),
}

/// Every part that was added, removed or changed from `old` to `new`, in `new`'s order
/// (removed parts last).
pub(crate) fn part_changes(old: &[CodePart], new: &[CodePart]) -> Vec<PartChange> {
    let mut out = Vec::new();
    for part in new {
        match old.iter().find(|o| o.same_part(part)) {
            None => out.push(PartChange::Added(part.clone())),
            Some(before) if before.value != part.value => {
                out.push(PartChange::Changed(before.clone(), part.clone()))
            }
            Some(_) => {}
        }
    }
    for part in old {
        if !new.iter().any(|n| n.same_part(part)) {
            out.push(PartChange::Removed(part.clone()));
        }
    }
    out
}

impl fmt::Display for CodePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.label(), self.value)
    }
}

/// The value of one part as generated code declares it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum PartValue {
    /// A hash known at compile time (the tokens of a body).
    Hash(u64),
    /// A readable value known at compile time (a version salt, a dependency version).
    Text(&'static str),
    /// The value of a `cfg` predicate.
    Bool(bool),
    /// A build-time environment variable (`None`: unset). Only its hash is recorded.
    Env(Option<&'static str>),
    /// The bytes of an included file: hashed at compile time up to [`SMALL_INCLUDE`]
    /// bytes, else at run time.
    Bytes(&'static [u8]),
}

/// One part of a signature as generated code declares it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct PartDecl {
    /// What it stands for.
    pub kind: CodePartKind,
    /// Its name (see [`CodePart::name`]).
    pub name: &'static str,
    /// Its value.
    pub value: PartValue,
}

impl PartDecl {
    /// The part's contribution to the compile-time signature.
    pub const fn compile_hash(&self) -> u64 {
        let value = match self.value {
            PartValue::Hash(h) => splitmix(h ^ 1),
            PartValue::Text(s) => xxh3_const(s.as_bytes()) ^ 2,
            PartValue::Bool(b) => splitmix(b as u64 + 3),
            PartValue::Env(Some(s)) => xxh3_const(s.as_bytes()) ^ 4,
            PartValue::Env(None) => splitmix(5),
            PartValue::Bytes(bytes) if bytes.len() <= SMALL_INCLUDE => xxh3_const(bytes) ^ 6,
            // Hashed at run time; the length is free.
            PartValue::Bytes(bytes) => splitmix(bytes.len() as u64 ^ 0x6c61_7267_6500_0000),
        };
        mix(
            mix(splitmix(self.kind as u64), xxh3_const(self.name.as_bytes())),
            value,
        )
    }

    /// The part's contribution computed only at run time (large included files).
    fn runtime_hash(&self) -> Option<u64> {
        match self.value {
            PartValue::Bytes(bytes) if bytes.len() > SMALL_INCLUDE => {
                Some(mix(splitmix(self.kind as u64), large_bytes_hash(bytes)))
            }
            _ => None,
        }
    }

    /// The part as recorded, with `helper` as its owner.
    fn resolve(&self, helper: Option<&str>) -> CodePart {
        let value = match self.value {
            PartValue::Hash(h) => hex(h),
            PartValue::Text(s) => s.to_string(),
            PartValue::Bool(b) => b.to_string(),
            PartValue::Env(Some(s)) => hex(xxhash_rust::xxh3::xxh3_64(s.as_bytes())),
            PartValue::Env(None) => "unset".to_string(),
            PartValue::Bytes(bytes) if bytes.len() <= SMALL_INCLUDE => {
                hex(xxhash_rust::xxh3::xxh3_64(bytes))
            }
            PartValue::Bytes(bytes) => hex(large_bytes_hash(bytes)),
        };
        CodePart {
            kind: self.kind,
            name: self.name.to_string(),
            helper: helper.map(str::to_string),
            value,
        }
    }
}

/// What `#[helper]` publishes about one helper, as constant data.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HelperDecl {
    /// `module_path!()` of the helper's signature module (`my_crate::util::scale`), or the
    /// macro's name with `!` for a `macro_rules!` helper.
    pub name: &'static str,
    /// Hash of the helper's own tokens.
    pub own: u64,
    /// The compile-time signature, `uses` folded in (`<helper>::SIGNATURE`).
    pub signature: u64,
    /// Its own parts (included files, `env!`, `cfg`).
    pub parts: &'static [PartDecl],
    /// The helpers it uses.
    pub uses: &'static [&'static HelperDecl],
    /// For a `const` or `static` helper: a hash of its value when its type is `Serialize`.
    pub value: Option<fn() -> Option<u64>>,
}

/// What `#[step]` publishes about one step, as static data resolved once per process.
#[doc(hidden)]
#[derive(Debug)]
pub struct StepDecl {
    /// `module_path!()` of the step's generated module (`my_crate::kelvin::convert`).
    pub path: &'static str,
    /// Hash of the step's own tokens.
    pub own: u64,
    /// The compile-time signature (`<step>::SIGNATURE`).
    pub signature: u64,
    /// Its own parts.
    pub parts: &'static [PartDecl],
    /// The helpers it uses.
    pub uses: &'static [&'static HelperDecl],
    /// Hashes the values of the constants and statics the body names.
    pub values: Option<fn(&mut Values)>,
    /// The resolved code, computed on first use.
    resolved: OnceLock<StepCode>,
}

/// A step's complete code signature and its parts, computed once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCode {
    /// The complete signature: `SIGNATURE` with the run-time parts folded in
    /// (`<step>::signature()`).
    pub signature: u64,
    /// The module that defines the step (`my_crate::kelvin`).
    pub module: String,
    /// Every part by name, helpers' parts included.
    pub parts: Vec<CodePart>,
}

impl StepDecl {
    /// A step's description, for generated code.
    pub const fn new(
        path: &'static str,
        own: u64,
        signature: u64,
        parts: &'static [PartDecl],
        uses: &'static [&'static HelperDecl],
        values: Option<fn(&mut Values)>,
    ) -> StepDecl {
        StepDecl {
            path,
            own,
            signature,
            parts,
            uses,
            values,
            resolved: OnceLock::new(),
        }
    }

    /// The step's resolved code signature, computed on first use.
    pub fn code(&self) -> &StepCode {
        self.resolved.get_or_init(|| self.resolve())
    }

    /// The complete code signature (`<step>::signature()`).
    pub fn signature(&self) -> u64 {
        self.code().signature
    }

    fn resolve(&self) -> StepCode {
        let module = match self.path.rfind("::") {
            Some(at) => &self.path[..at],
            None => self.path,
        };
        let krate = module.split("::").next().unwrap_or(module);
        let mut parts = vec![CodePart {
            kind: CodePartKind::Body,
            name: String::new(),
            helper: None,
            value: hex(self.own),
        }];
        let mut runtime = Vec::new();
        for p in self.parts {
            push_unique(&mut parts, p.resolve(None));
            runtime.extend(p.runtime_hash());
        }
        if let Some(values) = self.values {
            let mut v = Values::default();
            values(&mut v);
            for (name, hash) in v.entries {
                push_unique(
                    &mut parts,
                    CodePart {
                        kind: CodePartKind::Value,
                        name: name.to_string(),
                        helper: None,
                        value: hex(hash),
                    },
                );
                runtime.push(mix(xxhash_rust::xxh3::xxh3_64(name.as_bytes()), hash));
            }
        }
        let mut seen: Vec<(&str, u64)> = Vec::new();
        for helper in self.uses {
            add_helper(helper, krate, &mut seen, &mut parts, &mut runtime);
        }
        let signature = runtime
            .iter()
            .fold(self.signature, |h, &x| mix(h, splitmix(x)));
        StepCode {
            signature,
            module: module.to_string(),
            parts,
        }
    }
}

/// Adds `helper` and the helpers it uses (depth first, each once) to `parts`, and their
/// run-time hashes to `runtime`.
fn add_helper(
    helper: &HelperDecl,
    krate: &str,
    seen: &mut Vec<(&'static str, u64)>,
    parts: &mut Vec<CodePart>,
    runtime: &mut Vec<u64>,
) {
    // A helper reached twice (a diamond of `uses`) is one part.
    if seen.contains(&(helper.name, helper.own)) {
        return;
    }
    seen.push((helper.name, helper.own));
    // Helpers of the step's own crate are named without the crate: `util::scale`.
    let name = helper
        .name
        .strip_prefix(krate)
        .and_then(|rest| rest.strip_prefix("::"))
        .unwrap_or(helper.name)
        .to_string();
    push_unique(
        parts,
        CodePart {
            kind: CodePartKind::Helper,
            name: name.clone(),
            helper: None,
            value: hex(helper.own),
        },
    );
    for p in helper.parts {
        push_unique(parts, p.resolve(Some(&name)));
        runtime.extend(p.runtime_hash());
    }
    if let Some(value) = helper.value.and_then(|f| f()) {
        push_unique(
            parts,
            CodePart {
                kind: CodePartKind::Value,
                name: name.clone(),
                helper: Some(name.clone()),
                value: hex(value),
            },
        );
        runtime.push(mix(helper.own, value));
    }
    for used in helper.uses {
        add_helper(used, krate, seen, parts, runtime);
    }
}

fn push_unique(parts: &mut Vec<CodePart>, part: CodePart) {
    if !parts.iter().any(|p| p.same_part(&part)) {
        parts.push(part);
    }
}

/// The values of constants and statics a step body names, collected at run time.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Values {
    entries: Vec<(&'static str, u64)>,
}

impl Values {
    /// Records the value of `name`; `None` (a type that is not `Serialize`) is skipped.
    pub fn add(&mut self, name: &'static str, hash: Option<u64>) {
        if let Some(hash) = hash {
            if !self.entries.iter().any(|(n, _)| *n == name) {
                self.entries.push((name, hash));
            }
        }
    }
}

/// Autoref specialization: `(&ValueProbe(&X)).__pl_value_hash()` hashes `X` through
/// `Serialize` when its type implements it, and is `None` otherwise.
#[doc(hidden)]
pub mod value_probe {
    use serde::Serialize;

    /// Wraps a reference to a constant or static.
    pub struct ValueProbe<'a, T: ?Sized>(pub &'a T);

    /// Chosen when `T: Serialize` (no autoref needed).
    pub trait SerializeValue {
        /// The hash of the canonical encoding of the value.
        fn __pl_value_hash(&self) -> Option<u64>;
    }

    impl<T: Serialize + ?Sized> SerializeValue for ValueProbe<'_, T> {
        fn __pl_value_hash(&self) -> Option<u64> {
            Some(match crate::canonical::to_canonical_bytes(self.0) {
                Ok(bytes) => xxhash_rust::xxh3::xxh3_64(&bytes),
                // A value that refuses to serialize (a poisoned lock) still counts, as one
                // fixed value, so the key stays stable.
                Err(_) => 0x756e_7365_7269_616c,
            })
        }
    }

    /// Chosen otherwise (one autoref away): the value is not part of the signature.
    pub trait OpaqueValue {
        /// `None`: the value cannot be hashed.
        fn __pl_value_hash(&self) -> Option<u64> {
            None
        }
    }

    impl<T: ?Sized> OpaqueValue for &ValueProbe<'_, T> {}
}

/// `SIGNATURE` of a step or helper: its own tokens, its parts and the signatures of the
/// helpers it uses, folded at compile time.
pub const fn compile_signature(own: u64, parts: &[PartDecl], uses: &[&HelperDecl]) -> u64 {
    let mut h = splitmix(own);
    let mut i = 0;
    while i < parts.len() {
        h = mix(h, parts[i].compile_hash());
        i += 1;
    }
    let mut j = 0;
    while j < uses.len() {
        h = mix(h, uses[j].signature.wrapping_add(j as u64 + 1));
        j += 1;
    }
    h
}

/// xxh3-64 of `bytes` at run time, remembered per included file for the process.
fn large_bytes_hash(bytes: &'static [u8]) -> u64 {
    static HASHES: OnceLock<Mutex<HashMap<(usize, usize), u64>>> = OnceLock::new();
    let key = (bytes.as_ptr() as usize, bytes.len());
    let map = HASHES.get_or_init(Default::default);
    if let Some(h) = map.lock().ok().and_then(|m| m.get(&key).copied()) {
        return h;
    }
    let h = xxhash_rust::xxh3::xxh3_64(bytes);
    if let Ok(mut m) = map.lock() {
        m.insert(key, h);
    }
    h
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

const fn xxh3_const(bytes: &[u8]) -> u64 {
    xxhash_rust::const_xxh3::xxh3_64(bytes)
}

const fn mix(h: u64, x: u64) -> u64 {
    splitmix(h ^ splitmix(x))
}

/// SplitMix64's finalizer: a cheap, well-distributed `u64` permutation.
pub(crate) const fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::value_probe::{OpaqueValue as _, SerializeValue as _, ValueProbe};
    use super::*;

    static SMALL: &[u8] = b"three";
    static LARGE: [u8; SMALL_INCLUDE + 1] = [7; SMALL_INCLUDE + 1];
    static LARGE_EDITED: [u8; SMALL_INCLUDE + 1] = [8; SMALL_INCLUDE + 1];

    const CLIP: HelperDecl = HelperDecl {
        name: "app::util::clip",
        own: 11,
        signature: compile_signature(11, &[], &[]),
        parts: &[],
        uses: &[],
        value: None,
    };
    const SCALE: HelperDecl = HelperDecl {
        name: "app::util::scale",
        own: 12,
        signature: compile_signature(12, &[], &[&CLIP]),
        parts: &[PartDecl {
            kind: CodePartKind::Env,
            name: "MODE",
            value: PartValue::Env(Some("alpha")),
        }],
        uses: &[&CLIP],
        value: None,
    };

    fn step(parts: &'static [PartDecl], uses: &'static [&'static HelperDecl]) -> StepDecl {
        StepDecl::new(
            "app::kelvin::convert",
            1,
            compile_signature(1, parts, uses),
            parts,
            uses,
            None,
        )
    }

    fn include(bytes: &'static [u8]) -> PartDecl {
        PartDecl {
            kind: CodePartKind::Include,
            name: "data.txt",
            value: PartValue::Bytes(bytes),
        }
    }

    #[test]
    fn each_part_changes_the_compile_time_signature() {
        let base = compile_signature(1, &[include(SMALL)], &[]);
        assert_ne!(base, compile_signature(2, &[include(SMALL)], &[]));
        assert_ne!(base, compile_signature(1, &[include(b"four")], &[]));
        assert_ne!(base, compile_signature(1, &[], &[]));
        assert_ne!(base, compile_signature(1, &[include(SMALL)], &[&CLIP]));
        let cfg = |b| PartDecl {
            kind: CodePartKind::Cfg,
            name: "feature = \"fast\"",
            value: PartValue::Bool(b),
        };
        assert_ne!(
            compile_signature(1, &[cfg(true)], &[]),
            compile_signature(1, &[cfg(false)], &[])
        );
        // The same value under another name or kind is another part.
        let env = |name| PartDecl {
            kind: CodePartKind::Env,
            name,
            value: PartValue::Env(Some("x")),
        };
        assert_ne!(
            compile_signature(1, &[env("A")], &[]),
            compile_signature(1, &[env("B")], &[])
        );
    }

    #[test]
    fn large_files_enter_only_the_run_time_signature() {
        // Same length, different bytes: the compile-time signature cannot tell them apart.
        let a = step(Box::leak(Box::new([include(&LARGE)])), &[]);
        let b = step(Box::leak(Box::new([include(&LARGE_EDITED)])), &[]);
        assert_eq!(a.signature, b.signature);
        assert_ne!(a.code().signature, b.code().signature);
        // A step with nothing to hash at run time keeps its compile-time signature.
        let small = step(Box::leak(Box::new([include(SMALL)])), &[]);
        assert_eq!(small.code().signature, small.signature);
    }

    #[test]
    fn parts_name_the_module_helpers_and_their_parts() {
        let s = step(&[], Box::leak(Box::new([&SCALE])));
        let code = s.code();
        assert_eq!(code.module, "app::kelvin");
        let labels: Vec<String> = code.parts.iter().map(CodePart::label).collect();
        assert_eq!(
            labels,
            [
                "step body",
                "helper `util::scale`",
                "env!(MODE) in helper `util::scale`",
                "helper `util::clip`",
            ]
        );
    }

    #[test]
    fn changes_list_added_removed_and_changed_parts() {
        let part = |kind, name: &str, value: &str| CodePart {
            kind,
            name: name.into(),
            helper: None,
            value: value.into(),
        };
        let old = vec![
            part(CodePartKind::Body, "", "1"),
            part(CodePartKind::Cfg, "test", "false"),
            part(CodePartKind::Env, "A", "1"),
        ];
        let new = vec![
            part(CodePartKind::Body, "", "1"),
            part(CodePartKind::Cfg, "test", "true"),
            part(CodePartKind::Helper, "h", "2"),
        ];
        let changes = part_changes(&old, &new);
        assert_eq!(
            changes,
            vec![
                PartChange::Changed(old[1].clone(), new[1].clone()),
                PartChange::Added(new[2].clone()),
                PartChange::Removed(old[2].clone()),
            ]
        );
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the borrow selects the impl
    fn the_value_probe_hashes_serialize_types_and_skips_the_rest() {
        struct Opaque;
        assert!((&ValueProbe(&273.15f64)).__pl_value_hash().is_some());
        assert_ne!(
            (&ValueProbe(&0.0f64)).__pl_value_hash(),
            (&ValueProbe(&273.15f64)).__pl_value_hash()
        );
        assert_eq!((&ValueProbe(&Opaque)).__pl_value_hash(), None);
        let mut v = Values::default();
        v.add("A", Some(1));
        v.add("B", None);
        v.add("A", Some(2));
        assert_eq!(v.entries, vec![("A", 1)]);
    }

    fn components(module: &str, parts: Vec<CodePart>) -> crate::KeyComponents {
        let signature = xxhash_rust::xxh3::xxh3_64(format!("{parts:?}").as_bytes());
        crate::KeyComponents {
            format: crate::key::KEY_FORMAT_VERSION,
            step: "convert".into(),
            module: module.into(),
            code_signature: hex(signature),
            code_parts: parts,
            outputs: Vec::new(),
            inputs: Vec::new(),
        }
    }

    fn part(kind: CodePartKind, name: &str, helper: Option<&str>, value: &str) -> CodePart {
        CodePart {
            kind,
            name: name.into(),
            helper: helper.map(str::to_string),
            value: value.into(),
        }
    }

    fn reasons(old: &crate::KeyComponents, new: &crate::KeyComponents) -> Vec<String> {
        crate::Reason::differences(old, new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reasons_name_each_changed_part() {
        use CodePartKind::*;
        let old = components(
            "app",
            vec![
                part(Body, "", None, "01"),
                part(Version, "", None, "1"),
                part(Include, "data.txt", None, "02"),
                part(Env, "MODE", None, "03"),
                part(Cfg, "feature = \"fast\"", None, "false"),
                part(Dependency, "smartcore", None, "0.4.1"),
                part(Profile, "", None, "release"),
                part(Helper, "util::scale", None, "04"),
                part(Include, "table.csv", Some("util::scale"), "05"),
                part(Helper, "factor!", None, "06"),
                part(Value, "OFFSET", None, "07"),
            ],
        );
        let new = components(
            "app",
            vec![
                part(Body, "", None, "11"),
                part(Version, "", None, "2"),
                part(Include, "data.txt", None, "12"),
                part(Env, "MODE", None, "13"),
                part(Cfg, "feature = \"fast\"", None, "true"),
                part(Dependency, "smartcore", None, "0.4.2"),
                part(Profile, "", None, "debug"),
                part(Helper, "util::scale", None, "04"),
                part(Include, "table.csv", Some("util::scale"), "15"),
                part(Value, "OFFSET", None, "17"),
                part(Helper, "clip", None, "18"),
                part(SourceFile, "src/lib.rs", None, "19"),
            ],
        );
        assert_eq!(
            reasons(&old, &new),
            [
                "step body changed",
                "`version` changed (1 -> 2)",
                "included file `data.txt` changed",
                "env!(MODE) changed",
                "cfg(feature = \"fast\") changed (false -> true)",
                "dependency `smartcore` 0.4.1 -> 0.4.2",
                "build profile changed (release -> debug)",
                "included file `table.csv` in helper `util::scale` changed",
                "value of `OFFSET` changed",
                "helper `clip` added",
                "source file `src/lib.rs` added",
                "helper `factor!` removed",
            ]
        );
    }

    #[test]
    fn rows_without_parts_still_say_the_code_changed() {
        let old = components("", Vec::new());
        let new = components("app", vec![part(CodePartKind::Body, "", None, "1")]);
        let said = reasons(&old, &new);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("code signature changed ("), "{said:?}");
        // Another module is named first.
        let moved = components("app::kelvin", vec![part(CodePartKind::Body, "", None, "1")]);
        let from = components(
            "app::celsius",
            vec![part(CodePartKind::Body, "", None, "1")],
        );
        assert_eq!(
            reasons(&from, &moved),
            ["a step of this name in another module ran before (`app::celsius`, now `app::kelvin`)"]
        );
    }

    #[test]
    fn parts_round_trip_through_json_and_unknown_kinds_parse() {
        let p = CodePart {
            kind: CodePartKind::Dependency,
            name: "smartcore".into(),
            helper: None,
            value: "0.4.1".into(),
        };
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(serde_json::from_str::<CodePart>(&json).ok(), Some(p));
        let future: Option<CodePart> =
            serde_json::from_str(r#"{"kind":"quantum","name":"q","value":"1"}"#).ok();
        assert_eq!(future.map(|p| p.kind), Some(CodePartKind::Unknown));
    }
}
