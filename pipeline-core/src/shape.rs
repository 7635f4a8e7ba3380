//! Fingerprints of a type's serde shape: what a binary format such as bincode relies on
//! to read stored bytes back.
//!
//! A cache key holds each output's type *name*; the shape fingerprint adds its layout, so
//! that editing a stored type (swapping two fields, adding one, adding an enum variant)
//! changes the key and re-executes the step instead of decoding old bytes into the new
//! shape (which silently swaps values, or fails on every load). Parameter types get the
//! same treatment, since workers on other machines decode parameters.
//!
//! # What the fingerprint covers
//!
//! The type's `Deserialize` impl is driven by a tracing deserializer (no bytes involved):
//! struct, tuple-struct, newtype and unit-struct names; field names and their order; the
//! shape of every field; enum names, every variant's name and index and the shape of its
//! payload; options, sequences, maps, tuples and their element shapes; primitive kinds
//! (`u32` and `u64` differ, `String` and `&str` do not). Recursive types are traced to a
//! finite description (a recursive occurrence refers back to its definition). The trace is
//! non-human-readable, as bincode sees the type. Rust module paths are not part of the
//! shape (moving a type does not change it; the output's type name is in the key anyway).
//!
//! # What falls back to the type name
//!
//! When a type cannot be traced, its fingerprint is [`UNTRACED`] and the key sees its name
//! only, as before. That happens for:
//!
//! * types that need `deserialize_any`: untagged and internally tagged enums,
//!   `#[serde(flatten)]`, `serde_json::Value` and the like (bincode cannot read them
//!   either; the JSON cacher can);
//! * `Deserialize` impls that reject every sample the tracer offers (it offers `1` for
//!   numbers, `"a"` for strings, one element for sequences and maps, `Some` for options), or
//!   that panic;
//! * types nested more than 128 levels deep, enums none of whose variants ends a recursion,
//!   and enums with more variants than the tracer explores (4096 passes).
//!
//! Whatever the fingerprint, a stored output that fails to decode is a cache miss: the step
//! executes again (see [`Reason::Undecodable`](crate::Reason::Undecodable)).
//!
//! Each type is traced once per process, on a helper thread with a large stack, and the
//! result is cached.
//!
//! # Why not `serde-reflection`
//!
//! That crate traces the same way, but explores the variants of nested enums only when
//! each enum is traced by its own type (a variant added to an enum inside a struct would go
//! unseen), conflates containers that share a name, and overflows the stack (aborting the
//! process) on a recursive enum whose first variant recurses. This tracer explores nested
//! enums through the outer type, keys containers by their Rust type, and stops runaway
//! recursion with a depth limit, learning which variants end it.

use std::any::{type_name, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// The fingerprint of a type that could not be traced (see the module docs).
pub const UNTRACED: &str = "untraced";

/// The outcome of tracing a type's serde shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The shape's fingerprint: xxh3-128 of its canonical description, 32 hex digits.
    Traced(String),
    /// The type could not be traced; keys see its name only.
    Untraced {
        /// Why, for logs and diagnostics.
        reason: String,
    },
}

impl Shape {
    /// The fingerprint that enters cache keys: 32 hex digits, or [`UNTRACED`].
    pub fn fingerprint(&self) -> &str {
        match self {
            Shape::Traced(hex) => hex,
            Shape::Untraced { .. } => UNTRACED,
        }
    }
}

/// The serde shape of `T`, traced once per process and cached.
///
/// ```
/// use pipeline_core::shape::shape_of;
///
/// #[derive(serde::Deserialize)]
/// struct Split { train: u64, test: u64 }
/// mod edited {
///     #[derive(serde::Deserialize)]
///     pub struct Split { pub test: u64, pub train: u64 }
/// }
/// assert_ne!(shape_of::<Split>(), shape_of::<edited::Split>());
/// assert_ne!(shape_of::<Split>().fingerprint(), pipeline_core::shape::UNTRACED);
/// ```
pub fn shape_of<T: DeserializeOwned + 'static>() -> Shape {
    // Generic code is compiled in every crate that names a step value type (BENCHMARKS.md,
    // figure 7): only the trace pass depends on `T`; the cache, the tracing thread and the
    // passes' loop are compiled once, here.
    cached_shape(TypeId::of::<T>(), type_name::<T>(), pass::<T>)
}

/// One trace pass of `T` from `root` (see [`trace`]).
fn pass<T: DeserializeOwned>(st: &mut State, root: &mut Node) -> Result<(), TraceError> {
    T::deserialize(De { st, slot: root }).map(drop)
}

/// A trace pass of one type.
type Pass = fn(&mut State, &mut Node) -> Result<(), TraceError>;

/// [`shape_of`] for the type `id` (named `name`), traced by `pass`.
fn cached_shape(id: TypeId, name: &str, pass: Pass) -> Shape {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Shape>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(shape) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return shape.clone();
    }
    // Traced outside the lock: a `Deserialize` impl is user code.
    let shape = trace_on_large_stack(pass);
    if let Shape::Untraced { reason } = &shape {
        tracing::debug!(
            target: "pipeline",
            "The serde shape of `{name}` cannot be traced ({reason}); cache keys see its name only."
        );
    }
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id)
        .or_insert(shape)
        .clone()
}

/// Nesting levels (containers, options, elements) before a trace gives up.
const MAX_DEPTH: usize = 128;
/// Traces of the whole type before giving up on exploring every enum variant.
const MAX_PASSES: usize = 4096;
/// Stack of the tracing thread: deep types in debug builds need more than 2 MiB.
const STACK_BYTES: usize = 64 << 20;

fn trace_on_large_stack(pass: Pass) -> Shape {
    let run = move || match trace(pass) {
        Ok(hex) => Shape::Traced(hex),
        Err(reason) => Shape::Untraced { reason },
    };
    let panicked = || Shape::Untraced {
        reason: "its Deserialize impl panicked while traced".into(),
    };
    match std::thread::Builder::new()
        .name("pipeline-shape".into())
        .stack_size(STACK_BYTES)
        .spawn(run)
    {
        Ok(handle) => handle.join().unwrap_or_else(|_| panicked()),
        Err(_) => std::panic::catch_unwind(run).unwrap_or_else(|_| panicked()),
    }
}

/// A container's identity: the Rust type its visitor produces, and its serde name.
type Ident = (&'static str, &'static str);

/// The shape at one position of a type.
#[derive(Debug, Clone)]
enum Node {
    /// Not explored (a sequence whose visitor asked for no element).
    Unknown,
    Prim(&'static str),
    Option(Box<Node>),
    Seq(Box<Node>),
    Map(Box<Node>, Box<Node>),
    Tuple(Vec<Node>),
    /// A struct or enum, defined once in [`State::defs`].
    Named(Ident),
}

impl Node {
    fn named(&self, out: &mut Vec<Ident>) {
        match self {
            Node::Unknown | Node::Prim(_) => {}
            Node::Option(n) | Node::Seq(n) => n.named(out),
            Node::Map(k, v) => {
                k.named(out);
                v.named(out);
            }
            Node::Tuple(ns) => ns.iter().for_each(|n| n.named(out)),
            Node::Named(ident) => out.push(*ident),
        }
    }
}

#[derive(Debug)]
enum Def {
    Unit,
    Newtype(Node),
    Tuple(Vec<Node>),
    Struct(&'static [&'static str], Vec<Node>),
    Enum(EnumDef),
}

#[derive(Debug)]
struct EnumDef {
    variants: &'static [&'static str],
    /// Per variant, its payload once explored.
    payloads: Vec<Option<Payload>>,
    /// Per variant: chosen to end a recursion, it recursed without end.
    endless: Vec<bool>,
}

#[derive(Debug)]
enum Payload {
    Unit,
    Newtype(Node),
    Tuple(Vec<Node>),
    Struct(&'static [&'static str], Vec<Node>),
}

impl Payload {
    fn named(&self, out: &mut Vec<Ident>) {
        match self {
            Payload::Unit => {}
            Payload::Newtype(n) => n.named(out),
            Payload::Tuple(ns) | Payload::Struct(_, ns) => ns.iter().for_each(|n| n.named(out)),
        }
    }
}

impl Def {
    fn named(&self) -> Vec<Ident> {
        let mut out = Vec::new();
        match self {
            Def::Unit => {}
            Def::Newtype(n) => n.named(&mut out),
            Def::Tuple(ns) | Def::Struct(_, ns) => ns.iter().for_each(|n| n.named(&mut out)),
            Def::Enum(e) => e.payloads.iter().flatten().for_each(|p| p.named(&mut out)),
        }
        out
    }
}

/// What the tracer knows, kept across passes (`defs`) or per pass (the rest).
#[derive(Default)]
struct State {
    defs: HashMap<Ident, Def>,
    /// Containers being traced, outermost first.
    stack: Vec<Ident>,
    /// Above zero inside a recursive occurrence: options are `None`, sequences and maps
    /// empty, and enums take a variant that ends the recursion. Nothing is recorded there.
    cut: usize,
    depth: usize,
    /// Variants chosen to end a recursion, on the current path.
    endings: Vec<(Ident, usize)>,
    /// Set when a trace went too deep: the endings that repeated on its path.
    blame: Vec<(Ident, usize)>,
    /// Containers from which an enum with unexplored variants can be reached.
    needs: HashSet<Ident>,
    /// Whether this pass recorded anything new.
    progress: bool,
}

impl State {
    fn enter(&mut self) -> Result<(), TraceError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let mut seen = HashMap::new();
            for ending in &self.endings {
                *seen.entry(*ending).or_insert(0usize) += 1;
            }
            self.blame = seen
                .into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|(e, _)| e)
                .collect();
            return Err(TraceError(format!(
                "nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Enters a container; returns whether this is a recursive occurrence.
    fn begin(&mut self, ident: Ident) -> Result<bool, TraceError> {
        self.enter()?;
        let recursive = self.stack.contains(&ident);
        self.stack.push(ident);
        if recursive {
            self.cut += 1;
        }
        Ok(recursive)
    }

    fn end(&mut self, recursive: bool) {
        self.stack.pop();
        if recursive {
            self.cut = self.cut.saturating_sub(1);
        }
        self.leave();
    }

    /// Whether the container being traced should be recorded (first normal visit).
    fn records(&self, ident: &Ident) -> bool {
        self.cut == 0 && !self.defs.contains_key(ident)
    }

    fn record(&mut self, ident: Ident, def: Def) {
        self.defs.insert(ident, def);
        self.progress = true;
    }

    fn enum_def(&self, ident: &Ident) -> Option<&EnumDef> {
        match self.defs.get(ident) {
            Some(Def::Enum(e)) => Some(e),
            _ => None,
        }
    }

    /// The variant to trace in a normal visit: an unexplored one, else one leading to an
    /// enum with unexplored variants, else one that ends recursions.
    fn explore(&self, ident: &Ident) -> usize {
        let Some(e) = self.enum_def(ident) else {
            return 0;
        };
        if let Some(i) = e.payloads.iter().position(Option::is_none) {
            return i;
        }
        let leads_on = |p: &Payload| {
            let mut named = Vec::new();
            p.named(&mut named);
            named.iter().any(|n| self.needs.contains(n))
        };
        e.payloads
            .iter()
            .position(|p| p.as_ref().is_some_and(leads_on))
            .unwrap_or_else(|| self.ending(ident))
    }

    /// The variant to trace inside a recursive occurrence: one that ends the recursion.
    /// Known unit variants first, then known payloads without named types, then any not
    /// known to recurse without end.
    fn ending(&self, ident: &Ident) -> usize {
        let Some(e) = self.enum_def(ident) else {
            return 0;
        };
        let usable = |i: &usize| !e.endless.get(*i).copied().unwrap_or(false);
        let flat = |p: &Payload| {
            let mut named = Vec::new();
            p.named(&mut named);
            named.is_empty()
        };
        let n = e.variants.len();
        (0..n)
            .filter(usable)
            .find(|&i| matches!(e.payloads[i], Some(Payload::Unit)))
            .or_else(|| {
                (0..n)
                    .filter(usable)
                    .find(|&i| e.payloads[i].as_ref().is_some_and(flat))
            })
            .or_else(|| (0..n).find(usable))
            .unwrap_or(0)
    }
}

/// Containers from which an enum with unexplored variants can be reached.
fn needs(defs: &HashMap<Ident, Def>) -> HashSet<Ident> {
    let mut needs: HashSet<Ident> = defs
        .iter()
        .filter(|(_, d)| matches!(d, Def::Enum(e) if e.payloads.iter().any(Option::is_none)))
        .map(|(i, _)| *i)
        .collect();
    let edges: Vec<(Ident, Vec<Ident>)> = defs.iter().map(|(i, d)| (*i, d.named())).collect();
    loop {
        let before = needs.len();
        for (ident, named) in &edges {
            if !needs.contains(ident) && named.iter().any(|n| needs.contains(n)) {
                needs.insert(*ident);
            }
        }
        if needs.len() == before {
            return needs;
        }
    }
}

/// Traces `T` and renders its fingerprint, or says why it cannot.
fn trace(pass: Pass) -> Result<String, String> {
    let mut st = State::default();
    for _ in 0..MAX_PASSES {
        st.needs = needs(&st.defs);
        st.stack.clear();
        st.endings.clear();
        st.blame.clear();
        st.cut = 0;
        st.depth = 0;
        st.progress = false;
        let mut root = Node::Unknown;
        match pass(&mut st, &mut root) {
            Ok(()) => {
                let needs = needs(&st.defs);
                let mut named = Vec::new();
                root.named(&mut named);
                if !named.iter().any(|n| needs.contains(n)) {
                    return render(&st.defs, &root);
                }
                if !st.progress {
                    return Err("some enum variants could not be reached".into());
                }
            }
            Err(e) => {
                let blame = std::mem::take(&mut st.blame);
                if blame.is_empty() {
                    return Err(e.0);
                }
                for (ident, i) in blame {
                    if let Some(Def::Enum(en)) = st.defs.get_mut(&ident) {
                        if let Some(flag) = en.endless.get_mut(i) {
                            *flag = true;
                        }
                        if en.endless.iter().all(|b| *b) {
                            return Err(format!(
                                "no variant of enum `{}` ends its recursion",
                                ident.1
                            ));
                        }
                    }
                }
            }
        }
    }
    Err(format!(
        "more enum variants than {MAX_PASSES} traces explore"
    ))
}

/// A canonical description of the traced shape, hashed. Named containers are numbered in
/// the order a depth-first walk first meets them, so the description is independent of
/// hash maps and of Rust paths, and finite for recursive types.
fn render(defs: &HashMap<Ident, Def>, root: &Node) -> Result<String, String> {
    struct Out<'d> {
        defs: &'d HashMap<Ident, Def>,
        ids: HashMap<Ident, u64>,
        bytes: Vec<u8>,
    }
    impl Out<'_> {
        fn count(&mut self, n: usize) {
            self.bytes.extend_from_slice(&(n as u64).to_le_bytes());
        }
        fn name(&mut self, s: &str) {
            self.count(s.len());
            self.bytes.extend_from_slice(s.as_bytes());
        }
        fn nodes(&mut self, nodes: &[Node]) -> Result<(), String> {
            self.count(nodes.len());
            nodes.iter().try_for_each(|n| self.node(n))
        }
        fn fields(&mut self, fields: &[&str], nodes: &[Node]) -> Result<(), String> {
            self.count(fields.len());
            fields.iter().for_each(|f| self.name(f));
            self.nodes(nodes)
        }
        fn node(&mut self, node: &Node) -> Result<(), String> {
            match node {
                Node::Unknown => self.bytes.push(b'?'),
                Node::Prim(p) => {
                    self.bytes.push(b'p');
                    self.name(p);
                }
                Node::Option(n) => {
                    self.bytes.push(b'o');
                    self.node(n)?;
                }
                Node::Seq(n) => {
                    self.bytes.push(b's');
                    self.node(n)?;
                }
                Node::Map(k, v) => {
                    self.bytes.push(b'm');
                    self.node(k)?;
                    self.node(v)?;
                }
                Node::Tuple(ns) => {
                    self.bytes.push(b't');
                    self.nodes(ns)?;
                }
                Node::Named(ident) => {
                    if let Some(id) = self.ids.get(ident) {
                        self.bytes.push(b'r');
                        self.bytes.extend_from_slice(&id.to_le_bytes());
                        return Ok(());
                    }
                    self.ids.insert(*ident, self.ids.len() as u64);
                    self.bytes.push(b'd');
                    self.name(ident.1);
                    let defs = self.defs;
                    match defs.get(ident) {
                        None => return Err(format!("`{}` was never traced", ident.1)),
                        Some(Def::Unit) => self.bytes.push(b'U'),
                        Some(Def::Newtype(n)) => {
                            self.bytes.push(b'N');
                            self.node(n)?;
                        }
                        Some(Def::Tuple(ns)) => {
                            self.bytes.push(b'T');
                            self.nodes(ns)?;
                        }
                        Some(Def::Struct(fields, ns)) => {
                            self.bytes.push(b'S');
                            self.fields(fields, ns)?;
                        }
                        Some(Def::Enum(e)) => {
                            self.bytes.push(b'E');
                            self.count(e.variants.len());
                            for (variant, payload) in e.variants.iter().zip(&e.payloads) {
                                self.name(variant);
                                match payload {
                                    None => {
                                        return Err(format!(
                                            "variant `{variant}` of `{}` was never traced",
                                            ident.1
                                        ))
                                    }
                                    Some(Payload::Unit) => self.bytes.push(b'u'),
                                    Some(Payload::Newtype(n)) => {
                                        self.bytes.push(b'n');
                                        self.node(n)?;
                                    }
                                    Some(Payload::Tuple(ns)) => {
                                        self.bytes.push(b't');
                                        self.nodes(ns)?;
                                    }
                                    Some(Payload::Struct(fields, ns)) => {
                                        self.bytes.push(b's');
                                        self.fields(fields, ns)?;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Out {
        defs,
        ids: HashMap::new(),
        bytes: Vec::new(),
    };
    out.node(root)?;
    Ok(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&out.bytes)))
}

/// Why a trace failed.
#[derive(Debug)]
struct TraceError(String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TraceError(format!(
            "its Deserialize impl refused a traced sample: {msg}"
        ))
    }
}

/// The tracing deserializer: records the shape of one position in `slot`.
struct De<'s> {
    st: &'s mut State,
    slot: &'s mut Node,
}

/// Elements of a sequence, tuple or struct: `remaining` more are offered.
struct Elements<'s> {
    st: &'s mut State,
    nodes: &'s mut Vec<Node>,
    remaining: usize,
}

/// At most one map entry.
struct Entries<'s> {
    st: &'s mut State,
    key: &'s mut Node,
    value: &'s mut Node,
    remaining: usize,
}

/// The chosen variant of an enum.
struct Variant<'s> {
    st: &'s mut State,
    index: usize,
    payload: &'s mut Option<Payload>,
}

/// Traces one nested value into `slot`.
fn nested<'de, S: DeserializeSeed<'de>>(
    st: &mut State,
    slot: &mut Node,
    seed: S,
) -> Result<S::Value, TraceError> {
    st.enter()?;
    let value = seed.deserialize(De { st: &mut *st, slot });
    st.leave();
    value
}

macro_rules! primitive {
    ($($method:ident => $visit:ident($($value:expr)?), $name:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            *self.slot = Node::Prim($name);
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = TraceError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError(
            "it needs `deserialize_any` (a self-describing format), as untagged or internally \
             tagged enums, `flatten` and `serde_json::Value` do"
                .into(),
        ))
    }

    primitive! {
        deserialize_bool => visit_bool(false), "bool";
        deserialize_i8 => visit_i8(1), "i8";
        deserialize_i16 => visit_i16(1), "i16";
        deserialize_i32 => visit_i32(1), "i32";
        deserialize_i64 => visit_i64(1), "i64";
        deserialize_i128 => visit_i128(1), "i128";
        deserialize_u8 => visit_u8(1), "u8";
        deserialize_u16 => visit_u16(1), "u16";
        deserialize_u32 => visit_u32(1), "u32";
        deserialize_u64 => visit_u64(1), "u64";
        deserialize_u128 => visit_u128(1), "u128";
        deserialize_f32 => visit_f32(1.0), "f32";
        deserialize_f64 => visit_f64(1.0), "f64";
        deserialize_char => visit_char('a'), "char";
        deserialize_str => visit_str("a"), "str";
        deserialize_string => visit_string(String::from("a")), "str";
        deserialize_bytes => visit_bytes(&[]), "bytes";
        deserialize_byte_buf => visit_byte_buf(Vec::new()), "bytes";
        deserialize_unit => visit_unit(), "unit";
        deserialize_ignored_any => visit_unit(), "ignored";
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError(
            "it reads an identifier outside an enum (a self-describing format)".into(),
        ))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        if st.cut > 0 {
            *slot = Node::Option(Box::new(Node::Unknown));
            return visitor.visit_none();
        }
        let mut inner = Node::Unknown;
        st.enter()?;
        let value = visitor.visit_some(De {
            st: &mut *st,
            slot: &mut inner,
        });
        st.leave();
        *slot = Node::Option(Box::new(inner));
        value
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let remaining = usize::from(st.cut == 0);
        let mut nodes = Vec::new();
        let value = visitor.visit_seq(Elements {
            st,
            nodes: &mut nodes,
            remaining,
        });
        *slot = Node::Seq(Box::new(nodes.pop().unwrap_or(Node::Unknown)));
        value
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let mut nodes = Vec::new();
        let value = visitor.visit_seq(Elements {
            st,
            nodes: &mut nodes,
            remaining: len,
        });
        *slot = Node::Tuple(nodes);
        value
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let remaining = usize::from(st.cut == 0);
        let (mut key, mut value_node) = (Node::Unknown, Node::Unknown);
        let value = visitor.visit_map(Entries {
            st,
            key: &mut key,
            value: &mut value_node,
            remaining,
        });
        *slot = Node::Map(Box::new(key), Box::new(value_node));
        value
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let ident = (type_name::<V::Value>(), name);
        *self.slot = Node::Named(ident);
        if self.st.records(&ident) {
            self.st.record(ident, Def::Unit);
        }
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let ident = (type_name::<V::Value>(), name);
        *slot = Node::Named(ident);
        let recursive = st.begin(ident)?;
        let records = st.records(&ident);
        let mut inner = Node::Unknown;
        let value = visitor.visit_newtype_struct(De {
            st: &mut *st,
            slot: &mut inner,
        });
        st.end(recursive);
        if records && value.is_ok() {
            st.record(ident, Def::Newtype(inner));
        }
        value
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let ident = (type_name::<V::Value>(), name);
        *slot = Node::Named(ident);
        let recursive = st.begin(ident)?;
        let records = st.records(&ident);
        let mut nodes = Vec::new();
        let value = visitor.visit_seq(Elements {
            st: &mut *st,
            nodes: &mut nodes,
            remaining: len,
        });
        st.end(recursive);
        if records && value.is_ok() {
            st.record(ident, Def::Tuple(nodes));
        }
        value
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let ident = (type_name::<V::Value>(), name);
        *slot = Node::Named(ident);
        let recursive = st.begin(ident)?;
        let records = st.records(&ident);
        let mut nodes = Vec::new();
        // Fields in declaration order, as a binary format reads them.
        let value = visitor.visit_seq(Elements {
            st: &mut *st,
            nodes: &mut nodes,
            remaining: fields.len(),
        });
        st.end(recursive);
        if records && value.is_ok() {
            st.record(ident, Def::Struct(fields, nodes));
        }
        value
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let De { st, slot } = self;
        let ident = (type_name::<V::Value>(), name);
        *slot = Node::Named(ident);
        if variants.is_empty() {
            return Err(TraceError(format!("enum `{name}` has no variants")));
        }
        let recursive = st.begin(ident)?;
        st.defs.entry(ident).or_insert_with(|| {
            Def::Enum(EnumDef {
                variants,
                payloads: variants.iter().map(|_| None).collect(),
                endless: vec![false; variants.len()],
            })
        });
        let cut = st.cut > 0;
        let index = if cut {
            st.ending(&ident)
        } else {
            st.explore(&ident)
        };
        if cut {
            st.endings.push((ident, index));
        }
        let mut payload = None;
        let value = visitor.visit_enum(Variant {
            st: &mut *st,
            index,
            payload: &mut payload,
        });
        if cut {
            st.endings.pop();
        }
        st.end(recursive);
        if !cut && value.is_ok() {
            if let (Some(Def::Enum(e)), Some(p)) = (st.defs.get_mut(&ident), payload) {
                if let Some(slot @ None) = e.payloads.get_mut(index) {
                    *slot = Some(p);
                    st.progress = true;
                }
            }
        }
        value
    }
}

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let mut node = Node::Unknown;
        let value = nested(self.st, &mut node, seed);
        self.nodes.push(node);
        value.map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        nested(self.st, self.key, seed).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        self.remaining = self.remaining.saturating_sub(1);
        nested(self.st, self.value, seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> EnumAccess<'de> for Variant<'_> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), TraceError> {
        let index = u32::try_from(self.index)
            .map_err(|_| TraceError("an enum with more than u32::MAX variants".into()))?;
        // As bincode does: the variant's index, which derived identifiers accept.
        let deserializer: de::value::U32Deserializer<TraceError> = index.into_deserializer();
        let value = seed.deserialize(deserializer)?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        *self.payload = Some(Payload::Unit);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        let mut node = Node::Unknown;
        let value = nested(self.st, &mut node, seed);
        *self.payload = Some(Payload::Newtype(node));
        value
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut nodes = Vec::new();
        let value = visitor.visit_seq(Elements {
            st: &mut *self.st,
            nodes: &mut nodes,
            remaining: len,
        });
        *self.payload = Some(Payload::Tuple(nodes));
        value
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut nodes = Vec::new();
        let value = visitor.visit_seq(Elements {
            st: &mut *self.st,
            nodes: &mut nodes,
            remaining: fields.len(),
        });
        *self.payload = Some(Payload::Struct(fields, nodes));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn fp<T: DeserializeOwned + 'static>() -> String {
        match shape_of::<T>() {
            Shape::Traced(hex) => hex,
            Shape::Untraced { reason } => panic!("`{}` untraced: {reason}", type_name::<T>()),
        }
    }

    fn untraced<T: DeserializeOwned + 'static>() -> String {
        match shape_of::<T>() {
            Shape::Traced(hex) => panic!("`{}` traced as {hex}", type_name::<T>()),
            Shape::Untraced { reason } => reason,
        }
    }

    #[allow(dead_code)]
    mod v1 {
        use serde::Deserialize;
        #[derive(Deserialize)]
        pub struct Split {
            pub train: u64,
            pub test: u64,
        }
        #[derive(Deserialize)]
        pub struct Metrics {
            pub loss: f64,
        }
        #[derive(Deserialize)]
        pub enum Mode {
            Fast,
            Exact { eps: f64 },
        }
        #[derive(Deserialize)]
        pub struct Config {
            pub name: String,
            pub mode: Mode,
        }
        #[derive(Deserialize)]
        pub enum Event {
            Start,
            Stop(Reason),
        }
        #[derive(Deserialize)]
        pub enum Reason {
            Done,
            Failed(String),
        }
    }

    #[allow(dead_code)]
    mod v2 {
        use serde::Deserialize;
        /// Fields swapped.
        #[derive(Deserialize)]
        pub struct Split {
            pub test: u64,
            pub train: u64,
        }
        /// A field added.
        #[derive(Deserialize)]
        pub struct Metrics {
            pub loss: f64,
            pub f1: f64,
        }
        /// A variant added, inside a struct.
        #[derive(Deserialize)]
        pub enum Mode {
            Fast,
            Exact { eps: f64 },
            Sampled(u32),
        }
        #[derive(Deserialize)]
        pub struct Config {
            pub name: String,
            pub mode: Mode,
        }
        /// A variant added to an enum inside the second variant of another enum.
        #[derive(Deserialize)]
        pub enum Event {
            Start,
            Stop(Reason),
        }
        #[derive(Deserialize)]
        pub enum Reason {
            Done,
            Failed(String),
            Cancelled,
        }
    }

    #[allow(dead_code)]
    mod v1_copy {
        use serde::Deserialize;
        /// The same shape as `v1::Split`, elsewhere.
        #[derive(Deserialize)]
        pub struct Split {
            pub train: u64,
            pub test: u64,
        }
    }

    #[test]
    fn edits_to_a_stored_type_change_its_fingerprint() {
        assert_ne!(fp::<v1::Split>(), fp::<v2::Split>(), "field swap");
        assert_ne!(fp::<v1::Metrics>(), fp::<v2::Metrics>(), "field added");
        assert_ne!(
            fp::<v1::Config>(),
            fp::<v2::Config>(),
            "nested variant added"
        );
        assert_ne!(
            fp::<v1::Event>(),
            fp::<v2::Event>(),
            "variant of a nested enum"
        );
        assert_eq!(
            fp::<v1::Split>(),
            fp::<v1_copy::Split>(),
            "module path is not shape"
        );
    }

    #[test]
    fn primitive_kinds_and_containers_are_distinguished() {
        let all = [
            fp::<u32>(),
            fp::<u64>(),
            fp::<i64>(),
            fp::<f64>(),
            fp::<String>(),
            fp::<Option<u32>>(),
            fp::<Vec<u32>>(),
            fp::<HashMap<String, u32>>(),
            fp::<(u32, u32)>(),
            fp::<[u32; 3]>(),
            fp::<()>(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        // Same data model, same shape.
        assert_eq!(fp::<Vec<u32>>(), fp::<HashSet<u32>>());
        assert_eq!(fp::<HashMap<String, u32>>(), fp::<BTreeMap<String, u32>>());
        assert_eq!(fp::<String>(), fp::<std::path::PathBuf>());
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Expr {
        // The first variant recurses: a tracer that always ends recursions with the first
        // variant never terminates here.
        Add(Box<Expr>, Box<Expr>),
        Neg(Box<Expr>),
        Lit(f64),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum ExprMore {
        Add(Box<ExprMore>, Box<ExprMore>),
        Neg(Box<ExprMore>),
        Lit(f64),
        Var(String),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct List {
        value: u8,
        next: Option<Box<List>>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Ping {
        pong: Option<Box<Pong>>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Pong {
        ping: Ping,
        depth: u32,
    }

    #[test]
    fn recursive_types_are_traced() {
        assert_ne!(fp::<Expr>(), fp::<ExprMore>());
        let tree = fp::<Tree>();
        let list = fp::<List>();
        assert_ne!(tree, list);
        assert_ne!(fp::<Ping>(), fp::<Pong>());
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Endless {
        next: Box<Endless>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum NoEnd {
        A(Box<NoEnd>),
        B(Box<NoEnd>, u8),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Int(i64),
        Text(String),
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct WithJson {
        extra: serde_json::Value,
    }

    /// Accepts only even numbers: the tracer's samples are refused.
    #[allow(dead_code)]
    struct Even(u64);

    impl<'de> Deserialize<'de> for Even {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u64::deserialize(d)?;
            if n % 2 == 0 {
                Ok(Even(n))
            } else {
                Err(de::Error::custom("odd"))
            }
        }
    }

    #[test]
    fn untraceable_types_fall_back_without_crashing() {
        assert!(untraced::<Endless>().contains("deep"));
        assert!(untraced::<NoEnd>().contains("NoEnd"));
        assert!(untraced::<Loose>().contains("deserialize_any"));
        assert!(untraced::<WithJson>().contains("deserialize_any"));
        assert!(untraced::<Even>().contains("odd"));
        assert_eq!(shape_of::<Even>().fingerprint(), UNTRACED);
    }

    #[test]
    fn common_library_types_are_traced() {
        fp::<std::time::Duration>();
        fp::<std::num::NonZeroU32>();
        fp::<std::path::PathBuf>();
        fp::<Box<[f32]>>();
        fp::<HashMap<String, Vec<(u8, Option<bool>)>>>();
        fp::<std::net::IpAddr>();
        fp::<std::ops::Range<i32>>();
        fp::<char>();
        fp::<i128>();
    }

    #[allow(dead_code)]
    mod a {
        #[derive(serde::Deserialize)]
        pub struct Part {
            pub x: u8,
        }
    }

    #[allow(dead_code)]
    mod b {
        #[derive(serde::Deserialize)]
        pub struct Part {
            pub y: String,
        }
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct TwoParts {
        first: a::Part,
        second: b::Part,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct TwoPartsSwapped {
        first: b::Part,
        second: a::Part,
    }

    #[test]
    fn containers_sharing_a_name_stay_apart() {
        assert_ne!(fp::<TwoParts>(), fp::<TwoPartsSwapped>());
    }

    #[test]
    fn results_are_cached_and_stable() {
        assert_eq!(shape_of::<v1::Config>(), shape_of::<v1::Config>());
        // Stable across processes and builds: a golden value for a simple struct. If the
        // description format changes on purpose, bump `KEY_FORMAT_VERSION` with it.
        assert_eq!(fp::<v1::Split>(), GOLDEN_SPLIT);
    }

    const GOLDEN_SPLIT: &str = "a6cec7dbda311d0a6eab97c22932fbe3";
}
