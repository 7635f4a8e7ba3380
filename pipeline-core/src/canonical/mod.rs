//! Canonical binary encoding of [`serde::Serialize`] values.
//!
//! Cache keys are hashes of a step's parameters, so the bytes that get hashed
//! must satisfy two properties:
//!
//! * **Canonical**: equal values produce equal bytes, no matter in which order
//!   a map happened to iterate its entries. A `HashMap` with randomised
//!   hashing, a `BTreeMap` and a `HashMap` filled in another order all encode
//!   identically when they hold the same entries.
//! * **Injective**: different values produce different bytes. Every value is
//!   self-delimiting (tag byte, then fixed-width or length-prefixed content),
//!   so concatenations cannot be confused: `("ab", "c")` and `("a", "bc")`
//!   differ, as do `Some(0u8)` and `0u8`, or `1u32` and `1u64`.
//!
//! # Format
//!
//! Each value starts with one tag byte naming its kind in the serde data
//! model. Integers are little-endian and fixed-width; lengths and counts are
//! `u64` little-endian; a *name* is a length-prefixed UTF-8 string without a
//! tag (the surrounding tag already says a name comes next).
//!
//! | kind               | layout after the tag                                  |
//! |--------------------|-------------------------------------------------------|
//! | `bool`             | one byte, `0` or `1`                                  |
//! | `i8`..`u128`       | fixed-width little-endian                             |
//! | `f32`, `f64`       | IEEE-754 bit pattern, little-endian (see below)       |
//! | `char`             | scalar value as `u32`                                 |
//! | `str`, `bytes`     | `u64` length, then the bytes                          |
//! | `none`, `unit`     | nothing                                               |
//! | `some`             | the inner value                                       |
//! | `unit_struct`      | name                                                  |
//! | `unit_variant`     | enum name, `u32` variant index, variant name          |
//! | `newtype_struct`   | name, inner value                                     |
//! | `newtype_variant`  | enum name, index, variant name, inner value           |
//! | `seq`, `tuple`     | `u64` count, elements in order (sets: sorted, below)  |
//! | `tuple_struct`     | name, count, fields in order                          |
//! | `tuple_variant`    | enum name, index, variant name, count, fields         |
//! | `map`              | count, `key value` pairs sorted by encoded key        |
//! | `struct`           | name, count, `field-name value` pairs as declared     |
//! | `struct_variant`   | enum name, index, variant name, count, field pairs    |
//!
//! A *set* is written like a sequence whose elements are sorted by their own
//! encoded bytes, so its bytes do not depend on iteration order. Serde hands a
//! `HashSet` and a `Vec` alike to `serialize_seq`; what tells them apart is
//! the iterable that the collection's `Serialize` impl passes to
//! [`Serializer::collect_seq`](ser::Serializer::collect_seq), whose
//! [`std::any::type_name`] names the collection. Sorted that way:
//! `std::collections::{HashSet, BTreeSet, BinaryHeap}` (and a `HashMap` or
//! `BTreeMap` serialized as a sequence of pairs), every `hashbrown`
//! collection, and `indexmap::IndexSet`. Not seen, so kept in iteration
//! order: a custom `Serialize` impl that calls `serialize_seq` and writes an
//! unordered collection element by element (or passes some other iterator to
//! `collect_seq`). Give such a parameter a `BTreeSet` or a sorted `Vec`.
//!
//! Counts are always the number of elements actually emitted, never the
//! length hint given to the serializer: a hint may be absent (iterators) or
//! wrong (hand-written impls), and trusting it would break self-delimitation.
//!
//! Type, variant and field names are part of the encoding, so renaming them
//! changes cache keys. That is deliberate: it errs towards recomputing rather
//! than reusing an artifact produced by a different type.

use serde::ser::{self, Serialize};
use std::fmt;

mod order;
pub use order::{CanonicalOrder, CanonicalOrderSerializer};

/// Error while encoding a value canonically (a `Serialize` impl returned an
/// error, or a map key failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError(pub String);

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "canonical encoding failed: {}", self.0)
    }
}

impl std::error::Error for CanonicalError {}

impl ser::Error for CanonicalError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CanonicalError(msg.to_string())
    }
}

/// How a collection that serde hands to `collect_seq` or `collect_map` orders
/// its elements, judged by the [`std::any::type_name`] of the iterable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    /// Order is part of the value (`Vec`, slices, `VecDeque`, an `IndexMap`
    /// written as a sequence of pairs, anything unknown).
    Positional,
    /// Iterates in an order that depends on hash seeds or on how it was
    /// built: `std::collections::{HashMap, HashSet, BinaryHeap}` and every
    /// `hashbrown` collection, with their iterators.
    Hashed,
    /// `indexmap::IndexSet` (and `IndexMap` written as a map): insertion
    /// order, deterministic and observable, but not part of `==`.
    Indexed,
    /// `BTreeSet` / `BTreeMap`: sorted by `Ord`, deterministic.
    OrdSorted,
}

impl Collection {
    /// Classifies the iterable passed to `collect_seq` (`map = false`) or
    /// `collect_map` (`map = true`) by its type name.
    ///
    /// Only known paths count: guessing from words such as "hash" in a
    /// user's own type name could merge two different sequences into one
    /// encoding, which would make a cache return a wrong result.
    pub(crate) fn of(type_name: &str, map: bool) -> Collection {
        let path = type_name.trim_start_matches(['&', ' ']);
        let path = path.strip_prefix("mut ").unwrap_or(path);
        let path = path.trim_start_matches(['&', ' ']);
        let starts = |prefix: &str| path.starts_with(prefix);
        if starts("std::collections::hash::")
            || starts("hashbrown::")
            || starts("alloc::collections::binary_heap::")
        {
            Collection::Hashed
        } else if starts("alloc::collections::btree::") {
            Collection::OrdSorted
        } else if starts("indexmap::set::") || (map && starts("indexmap::map::")) {
            Collection::Indexed
        } else {
            Collection::Positional
        }
    }
}

/// Encodes `value` into canonical bytes: equal values give equal bytes and
/// different values give different bytes, which makes the result suitable as
/// hash input for cache keys.
///
/// Why the encoding is canonical and injective:
///
/// * Every value carries a tag byte for its serde kind and is either
///   fixed-width or length/count-prefixed, so each encoding is
///   self-delimiting and no two differently-shaped values collide.
/// * Maps are order-independent: each entry's key and value are encoded
///   separately, entries are sorted by the key bytes, then written. `HashMap`
///   and `BTreeMap` with the same entries therefore give the same bytes.
///   Entries with identical key bytes (only possible with hand-written
///   `Serialize` impls) keep their emitted order.
/// * Sequences keep their order, because order is part of a sequence's value.
///   Sets are order-independent: the elements of a `HashSet`, `BTreeSet`,
///   `BinaryHeap`, `hashbrown` set or `IndexSet` are encoded separately and
///   written sorted by their bytes, wherever the set is nested. Sets are
///   recognised by the type that their `Serialize` impl hands to
///   `collect_seq` (see the module docs for what stays unseen).
/// * Floats are encoded by their exact bit pattern (`to_bits`), with no
///   normalisation: `0.0` and `-0.0` differ, and NaNs with different payloads
///   differ. Equal bits always give equal bytes, which is what a cache needs;
///   callers wanting `0.0 == -0.0` should normalise before encoding.
/// * Struct fields are written with their names in the order serde emits
///   them (declaration order for derived impls); skipped fields are absent.
///   Enum variants are written with enum name, variant index and variant
///   name.
///
/// The serializer reports `is_human_readable() == false`, so types with
/// dual representations pick their compact form.
///
/// # Errors
///
/// Returns [`CanonicalError`] if a `Serialize` impl fails, or if a map is
/// driven inconsistently (a value without a key, or a key without a value).
/// Never panics.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut encoder = Encoder::default();
    value.serialize(&mut encoder)?;
    Ok(encoder.out)
}

/// Tag bytes. These values are part of the on-disk cache key format: never
/// renumber them, only append.
mod tag {
    pub const BOOL: u8 = 0x01;
    pub const I8: u8 = 0x02;
    pub const I16: u8 = 0x03;
    pub const I32: u8 = 0x04;
    pub const I64: u8 = 0x05;
    pub const I128: u8 = 0x06;
    pub const U8: u8 = 0x07;
    pub const U16: u8 = 0x08;
    pub const U32: u8 = 0x09;
    pub const U64: u8 = 0x0A;
    pub const U128: u8 = 0x0B;
    pub const F32: u8 = 0x0C;
    pub const F64: u8 = 0x0D;
    pub const CHAR: u8 = 0x0E;
    pub const STR: u8 = 0x0F;
    pub const BYTES: u8 = 0x10;
    pub const NONE: u8 = 0x11;
    pub const SOME: u8 = 0x12;
    pub const UNIT: u8 = 0x13;
    pub const UNIT_STRUCT: u8 = 0x14;
    pub const UNIT_VARIANT: u8 = 0x15;
    pub const NEWTYPE_STRUCT: u8 = 0x16;
    pub const NEWTYPE_VARIANT: u8 = 0x17;
    pub const SEQ: u8 = 0x18;
    pub const TUPLE: u8 = 0x19;
    pub const TUPLE_STRUCT: u8 = 0x1A;
    pub const TUPLE_VARIANT: u8 = 0x1B;
    pub const MAP: u8 = 0x1C;
    pub const STRUCT: u8 = 0x1D;
    pub const STRUCT_VARIANT: u8 = 0x1E;
}

/// Width of a length or count prefix.
const COUNT_WIDTH: usize = std::mem::size_of::<u64>();

/// The serializer: appends the encoding of each value to `out`.
#[derive(Default)]
struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    fn tag(&mut self, tag: u8) {
        self.out.push(tag);
    }

    fn count(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u64).to_le_bytes());
    }

    /// Length-prefixed bytes; the prefix is what keeps `"ab","c"` apart
    /// from `"a","bc"`.
    fn bytes(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    fn name(&mut self, name: &str) {
        self.bytes(name.as_bytes());
    }

    fn variant(&mut self, enum_name: &str, index: u32, variant: &str) {
        self.name(enum_name);
        self.out.extend_from_slice(&index.to_le_bytes());
        self.name(variant);
    }

    /// A sequence of encoded elements, written in byte order. Not generic, so the sort is
    /// compiled once, here (BENCHMARKS.md, figure 7).
    fn sorted_seq(&mut self, mut items: Vec<Vec<u8>>) {
        // Equal bytes are equal elements, so an unstable sort is exact.
        items.sort_unstable();
        self.tag(tag::SEQ);
        self.count(items.len());
        for item in &items {
            self.out.extend_from_slice(item);
        }
    }

    /// Starts a compound value whose element count is only known once all
    /// elements have been written: reserve the count slot now (the count
    /// must precede the elements) and fill it in [`Compound::finish`].
    fn compound(&mut self) -> Compound<'_> {
        let count_at = self.out.len();
        self.out.extend_from_slice(&[0; COUNT_WIDTH]);
        Compound {
            enc: self,
            count_at,
            count: 0,
        }
    }
}

/// Sequences, tuples and structs: a reserved count slot followed by the
/// elements, written straight into the parent buffer.
struct Compound<'a> {
    enc: &'a mut Encoder,
    count_at: usize,
    count: u64,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(&mut *self.enc)?;
        self.count += 1;
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.enc.name(key);
        self.element(value)
    }

    fn finish(self) -> Result<(), CanonicalError> {
        let end = self.count_at.saturating_add(COUNT_WIDTH);
        let slot = self
            .enc
            .out
            .get_mut(self.count_at..end)
            .ok_or_else(|| CanonicalError("internal: count slot out of range".to_owned()))?;
        for (dst, src) in slot.iter_mut().zip(self.count.to_le_bytes()) {
            *dst = src;
        }
        Ok(())
    }
}

/// Maps: entries are encoded into their own buffers and only written, sorted
/// by key bytes, in [`ser::SerializeMap::end`], so iteration order is erased.
struct MapEncoder<'a> {
    enc: &'a mut Encoder,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Key passed to `serialize_key` and awaiting its `serialize_value`.
    pending_key: Option<Vec<u8>>,
}

fn encode_key<T: Serialize + ?Sized>(key: &T) -> Result<Vec<u8>, CanonicalError> {
    to_canonical_bytes(key).map_err(|e| CanonicalError(format!("map key: {}", e.0)))
}

impl MapEncoder<'_> {
    fn no_pending_key(&self) -> Result<(), CanonicalError> {
        match self.pending_key {
            Some(_) => Err(CanonicalError(
                "map key: key serialized without a value".to_owned(),
            )),
            None => Ok(()),
        }
    }
}

impl ser::SerializeMap for MapEncoder<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.no_pending_key()?;
        self.pending_key = Some(encode_key(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| CanonicalError("map key: value serialized without a key".to_owned()))?;
        self.entries.push((key, to_canonical_bytes(value)?));
        Ok(())
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), CanonicalError> {
        self.no_pending_key()?;
        let key = encode_key(key)?;
        self.entries.push((key, to_canonical_bytes(value)?));
        Ok(())
    }

    fn end(mut self) -> Result<(), CanonicalError> {
        self.no_pending_key()?;
        // Stable sort: entries with equal key bytes keep their emitted order.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.enc.count(self.entries.len());
        for (key, value) in &self.entries {
            self.enc.out.extend_from_slice(key);
            self.enc.out.extend_from_slice(value);
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = CanonicalError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Self::Error> {
        self.finish()
    }
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = MapEncoder<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    /// Sets are written sorted by element bytes (see the module docs); other
    /// iterables as plain sequences.
    fn collect_seq<I>(self, iter: I) -> Result<(), CanonicalError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        match Collection::of(std::any::type_name::<I>(), false) {
            Collection::Positional => {
                let mut seq = ser::Serializer::serialize_seq(self, None)?;
                for item in iter {
                    ser::SerializeSeq::serialize_element(&mut seq, &item)?;
                }
                ser::SerializeSeq::end(seq)
            }
            Collection::Hashed | Collection::Indexed | Collection::OrdSorted => {
                let mut items = Vec::new();
                for item in iter {
                    items.push(to_canonical_bytes(&item)?);
                }
                self.sorted_seq(items);
                Ok(())
            }
        }
    }

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.tag(tag::BOOL);
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.tag(tag::I8);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.tag(tag::I16);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.tag(tag::I32);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.tag(tag::I64);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        self.tag(tag::I128);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.tag(tag::U8);
        self.out.push(v);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.tag(tag::U16);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.tag(tag::U32);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.tag(tag::U64);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        self.tag(tag::U128);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    // Floats: exact bit patterns, so -0.0 != 0.0 and NaN payloads survive.
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        self.tag(tag::F32);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        self.tag(tag::F64);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        self.tag(tag::CHAR);
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        self.tag(tag::STR);
        self.bytes(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        self.tag(tag::BYTES);
        self.bytes(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.tag(tag::NONE);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        self.tag(tag::SOME);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.tag(tag::UNIT);
        Ok(())
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), CanonicalError> {
        self.tag(tag::UNIT_STRUCT);
        self.name(name);
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.tag(tag::UNIT_VARIANT);
        self.variant(name, variant_index, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.tag(tag::NEWTYPE_STRUCT);
        self.name(name);
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.tag(tag::NEWTYPE_VARIANT);
        self.variant(name, variant_index, variant);
        value.serialize(self)
    }

    // The length hint is ignored: the count written is the number of
    // elements actually emitted, so `Some(n)` and `None` encode identically.
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::SEQ);
        Ok(self.compound())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::TUPLE);
        Ok(self.compound())
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::TUPLE_STRUCT);
        self.name(name);
        Ok(self.compound())
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::TUPLE_VARIANT);
        self.variant(name, variant_index, variant);
        Ok(self.compound())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapEncoder<'a>, CanonicalError> {
        self.tag(tag::MAP);
        Ok(MapEncoder {
            enc: self,
            entries: Vec::new(),
            pending_key: None,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::STRUCT);
        self.name(name);
        Ok(self.compound())
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonicalError> {
        self.tag(tag::STRUCT_VARIANT);
        self.variant(name, variant_index, variant);
        Ok(self.compound())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};
    use serde::Serialize;
    use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

    fn enc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        match to_canonical_bytes(value) {
            Ok(bytes) => bytes,
            Err(e) => panic!("encoding failed: {e}"),
        }
    }

    /// Minimal xorshift64 so the property tests need no extra crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                let j = self.below(i + 1);
                items.swap(i, j);
            }
        }
    }

    /// Expected-bytes helpers for the golden test.
    fn le_count(n: u64) -> Vec<u8> {
        n.to_le_bytes().to_vec()
    }

    fn name(s: &str) -> Vec<u8> {
        let mut v = le_count(s.len() as u64);
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn hash_map_is_insertion_order_independent_and_matches_btree_map() {
        let pairs: Vec<(String, u32)> = (0..200).map(|i| (format!("key-{i}"), i * 7)).collect();

        let forward: HashMap<String, u32> = pairs.iter().cloned().collect();
        let backward: HashMap<String, u32> = pairs.iter().rev().cloned().collect();
        let btree: BTreeMap<String, u32> = pairs.iter().cloned().collect();

        // Sanity check that the test exercises different iteration orders
        // (each HashMap has its own random hash seed).
        let order_a: Vec<&String> = forward.keys().collect();
        let order_b: Vec<&String> = backward.keys().collect();
        assert_ne!(order_a, order_b);

        assert_eq!(enc(&forward), enc(&backward));
        assert_eq!(enc(&forward), enc(&btree));
    }

    #[test]
    fn nested_maps_in_structs_and_vecs_are_canonical() {
        #[derive(Serialize)]
        struct Params {
            name: String,
            groups: HashMap<String, HashMap<u32, Vec<HashMap<String, i64>>>>,
            layers: Vec<HashMap<u8, String>>,
        }

        fn build(reverse: bool) -> Params {
            let mut idx: Vec<u32> = (0..30).collect();
            if reverse {
                idx.reverse();
            }
            let mut groups = HashMap::new();
            for &g in &idx {
                let mut inner = HashMap::new();
                for &k in &idx {
                    let leaves = (0..3)
                        .map(|n| {
                            idx.iter()
                                .map(|&l| (format!("leaf{l}"), i64::from(l * n + k)))
                                .collect::<HashMap<_, _>>()
                        })
                        .collect::<Vec<_>>();
                    inner.insert(k, leaves);
                }
                groups.insert(format!("group{g}"), inner);
            }
            let layers = (0..4u8)
                .map(|n| {
                    idx.iter()
                        .map(|&i| (i as u8, format!("layer{n}-{i}")))
                        .collect::<HashMap<_, _>>()
                })
                .collect();
            Params {
                name: "nested".to_owned(),
                groups,
                layers,
            }
        }

        let a = build(false);
        let b = build(true);
        assert_eq!(enc(&a), enc(&b));

        let mut c = build(false);
        if let Some(layer) = c.layers.get_mut(2) {
            layer.insert(5, "changed".to_owned());
        }
        assert_ne!(enc(&a), enc(&c));
    }

    #[test]
    fn string_boundaries_are_unambiguous() {
        assert_ne!(enc(&("ab", "c")), enc(&("a", "bc")));
        assert_ne!(enc(&vec!["ab", "c"]), enc(&vec!["a", "bc"]));
        assert_ne!(enc(&vec![vec![1u8], vec![]]), enc(&vec![vec![], vec![1u8]]));
    }

    #[test]
    fn option_and_unit_are_distinguished() {
        assert_ne!(enc(&Some(0u8)), enc(&0u8));
        assert_ne!(enc(&None::<u8>), enc(&()));
        assert_ne!(enc(&Some(())), enc(&()));
        assert_ne!(enc(&Some(None::<u8>)), enc(&None::<Option<u8>>));
    }

    #[test]
    fn integer_widths_and_signs_are_distinguished() {
        assert_ne!(enc(&1u32), enc(&1u64));
        assert_ne!(enc(&1u8), enc(&1i8));
        assert_ne!(enc(&1i128), enc(&1u128));
        assert_eq!(enc(&0x0102_0304u32), vec![tag::U32, 4, 3, 2, 1]);
    }

    #[test]
    fn str_bytes_and_char_are_distinguished() {
        struct Raw(&'static [u8]);
        impl Serialize for Raw {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        assert_ne!(enc("a"), enc(&Raw(b"a")));
        assert_ne!(enc("a"), enc(&'a'));
    }

    #[test]
    fn signed_zeros_differ() {
        assert_ne!(enc(&0.0f64), enc(&-0.0f64));
        assert_ne!(enc(&0.0f32), enc(&-0.0f32));
        assert_ne!(enc(&1.0f32), enc(&1.0f64));
    }

    #[test]
    fn nan_bit_patterns_are_preserved() {
        let nan_a = f64::from_bits(0x7ff8_0000_0000_0001);
        let nan_b = f64::from_bits(0x7ff8_0000_0000_0002);
        assert!(nan_a.is_nan() && nan_b.is_nan());
        assert_ne!(enc(&nan_a), enc(&nan_b));

        let mut expected = vec![tag::F64];
        expected.extend_from_slice(&0x7ff8_0000_0000_0001u64.to_le_bytes());
        assert_eq!(enc(&nan_a), expected);

        // The same NaN encodes the same way, unlike `==` on floats.
        assert_eq!(enc(&nan_a), enc(&f64::from_bits(nan_a.to_bits())));

        let nan32_a = f32::from_bits(0x7fc0_0001);
        let nan32_b = f32::from_bits(0x7fc0_0002);
        assert_ne!(enc(&nan32_a), enc(&nan32_b));
    }

    #[test]
    fn enum_variants_are_distinguished() {
        #[derive(Serialize)]
        enum Mode {
            Off,
            Other,
            Level(u8),
            Pair(u8, u8),
            Named { level: u8 },
        }

        let all = [
            enc(&Mode::Off),
            enc(&Mode::Other),
            enc(&Mode::Level(0)),
            enc(&Mode::Pair(0, 0)),
            enc(&Mode::Named { level: 0 }),
            enc(&()),
            enc(&0u8),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        assert_ne!(enc(&Mode::Level(1)), enc(&Mode::Level(2)));
    }

    #[test]
    fn type_names_are_part_of_the_encoding() {
        #[derive(Serialize)]
        struct Alpha;
        #[derive(Serialize)]
        struct Beta;
        #[derive(Serialize)]
        struct Wrap(u8);
        assert_ne!(enc(&Alpha), enc(&Beta));
        assert_ne!(enc(&Alpha), enc(&()));
        assert_ne!(enc(&Wrap(3)), enc(&3u8));
    }

    #[test]
    fn failing_serialize_returns_error() {
        struct Failing;
        impl Serialize for Failing {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("boom"))
            }
        }

        assert_eq!(
            to_canonical_bytes(&Failing),
            Err(CanonicalError("boom".to_owned()))
        );
        assert!(to_canonical_bytes(&vec![Some(Failing)]).is_err());

        // Failure inside a map value and inside a map key.
        let mut values = BTreeMap::new();
        values.insert(1u8, Failing);
        assert!(to_canonical_bytes(&values).is_err());

        struct FailingKey;
        impl Serialize for FailingKey {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(&Failing, &1u8)?;
                map.end()
            }
        }
        match to_canonical_bytes(&FailingKey) {
            Err(e) => assert_eq!(e.0, "map key: boom"),
            Ok(bytes) => panic!("expected an error, got {bytes:?}"),
        }
    }

    #[test]
    fn inconsistent_map_calls_return_errors() {
        struct ValueWithoutKey;
        impl Serialize for ValueWithoutKey {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_value(&1u8)?;
                map.end()
            }
        }
        struct KeyWithoutValue;
        impl Serialize for KeyWithoutValue {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_key(&1u8)?;
                map.end()
            }
        }
        struct TwoKeys;
        impl Serialize for TwoKeys {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_key(&1u8)?;
                map.serialize_key(&2u8)?;
                map.serialize_value(&3u8)?;
                map.end()
            }
        }
        assert!(to_canonical_bytes(&ValueWithoutKey).is_err());
        assert!(to_canonical_bytes(&KeyWithoutValue).is_err());
        assert!(to_canonical_bytes(&TwoKeys).is_err());
    }

    #[test]
    fn split_key_value_calls_match_entry_calls() {
        struct Split;
        impl Serialize for Split {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                for (k, v) in [("b", 2u8), ("a", 1u8)] {
                    map.serialize_key(k)?;
                    map.serialize_value(&v)?;
                }
                map.end()
            }
        }
        let btree: BTreeMap<&str, u8> = [("a", 1), ("b", 2)].into_iter().collect();
        assert_eq!(enc(&Split), enc(&btree));
    }

    #[test]
    fn duplicate_keys_keep_emitted_order() {
        struct Entries(Vec<(u8, &'static str)>);
        impl Serialize for Entries {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in &self.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
        let a = Entries(vec![(1, "x"), (0, "y"), (1, "z")]);
        let sorted = Entries(vec![(0, "y"), (1, "x"), (1, "z")]);
        let swapped = Entries(vec![(1, "z"), (0, "y"), (1, "x")]);
        assert_eq!(enc(&a), enc(&sorted));
        assert_ne!(enc(&a), enc(&swapped));
    }

    #[test]
    fn struct_layout_is_declaration_order() {
        #[derive(Serialize)]
        struct Point {
            zeta: u8,
            alpha: bool,
        }

        let mut expected = vec![tag::STRUCT];
        expected.extend(name("Point"));
        expected.extend(le_count(2));
        expected.extend(name("zeta"));
        expected.extend([tag::U8, 7]);
        expected.extend(name("alpha"));
        expected.extend([tag::BOOL, 1]);

        assert_eq!(
            enc(&Point {
                zeta: 7,
                alpha: true
            }),
            expected
        );
    }

    #[test]
    fn skipped_fields_are_absent() {
        #[derive(Serialize)]
        struct WithSkip {
            kept: u8,
            #[serde(skip_serializing_if = "Option::is_none")]
            maybe: Option<u8>,
        }
        #[derive(Serialize)]
        #[serde(rename = "WithSkip")]
        struct Without {
            kept: u8,
        }
        assert_eq!(
            enc(&WithSkip {
                kept: 1,
                maybe: None
            }),
            enc(&Without { kept: 1 })
        );
        assert_ne!(
            enc(&WithSkip {
                kept: 1,
                maybe: Some(1)
            }),
            enc(&Without { kept: 1 })
        );
    }

    /// Serializes as a sequence with a chosen (possibly absent or wrong)
    /// length hint.
    struct HintedSeq {
        items: Vec<u32>,
        hint: Option<usize>,
    }

    impl Serialize for HintedSeq {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(self.hint)?;
            for item in &self.items {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
    }

    #[test]
    fn unknown_length_sequence_equals_known_length() {
        let items = vec![3u32, 1, 4, 1, 5, 9, 2, 6];
        let unknown = HintedSeq {
            items: items.clone(),
            hint: None,
        };
        assert_eq!(enc(&unknown), enc(&items));

        let empty = HintedSeq {
            items: Vec::new(),
            hint: None,
        };
        assert_eq!(enc(&empty), enc(&Vec::<u32>::new()));

        // Nested inside another unknown-length context.
        let nested = vec![Some(unknown)];
        assert_eq!(enc(&nested), enc(&vec![Some(items)]));
    }

    #[test]
    fn wrong_length_hint_does_not_corrupt_the_count() {
        let items = vec![10u32, 20];
        let lying = HintedSeq {
            items: items.clone(),
            hint: Some(99),
        };
        assert_eq!(enc(&lying), enc(&items));
    }

    #[test]
    fn is_not_human_readable() {
        struct Probe;
        impl Serialize for Probe {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let readable = s.is_human_readable();
                s.serialize_bool(readable)
            }
        }
        assert_eq!(enc(&Probe), enc(&false));
    }

    #[test]
    fn error_display_mentions_cause() {
        let e = CanonicalError("boom".to_owned());
        assert!(e.to_string().contains("boom"));
    }

    #[test]
    fn shuffled_random_hash_maps_encode_equally() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for trial in 0..500 {
            // One large map, then many small ones (including empty maps).
            let len = if trial == 0 { 500 } else { rng.below(40) };
            let mut pairs: Vec<(String, u64)> = (0..len)
                .map(|_| (format!("k{:x}", rng.next() % 1000), rng.next()))
                .collect();
            // Keys are drawn from a small range so duplicates occur; the
            // BTreeMap resolves them and is the order-free reference.
            let reference: BTreeMap<String, u64> = pairs.iter().cloned().collect();
            let expected = enc(&reference);

            // Insertion orders must not matter once duplicate keys are
            // resolved, so shuffle the deduplicated entries.
            pairs = reference.iter().map(|(k, v)| (k.clone(), *v)).collect();
            for _ in 0..2 {
                rng.shuffle(&mut pairs);
                let map: HashMap<String, u64> = pairs.iter().cloned().collect();
                assert_eq!(enc(&map), expected);
            }

            // Injectivity spot check: changing one value changes the bytes.
            if let Some((key, value)) = pairs.first().cloned() {
                let mut changed: HashMap<String, u64> = pairs.iter().cloned().collect();
                changed.insert(key, value.wrapping_add(1));
                assert_ne!(enc(&changed), expected);
            }
        }
    }

    /// Two `HashSet`s with the same elements whose iteration orders differ (each set has
    /// its own random hash seed, and they are filled in opposite orders).
    fn two_orders<T: std::hash::Hash + Eq + Clone>(items: &[T]) -> (HashSet<T>, HashSet<T>) {
        for _ in 0..20 {
            let a: HashSet<T> = items.iter().cloned().collect();
            let b: HashSet<T> = items.iter().rev().cloned().collect();
            if a.iter().zip(&b).any(|(x, y)| x != y) {
                return (a, b);
            }
        }
        panic!("could not build two sets with different iteration orders");
    }

    #[test]
    fn hash_set_is_iteration_order_independent() {
        let tags: Vec<String> = (0..16).map(|i| format!("tag{i}")).collect();
        let (a, b) = two_orders(&tags);
        assert_eq!(enc(&a), enc(&b));
        // The same elements in a `BTreeSet` encode the same way: both are sets.
        let sorted: BTreeSet<String> = tags.iter().cloned().collect();
        assert_eq!(enc(&a), enc(&sorted));
        // A different element is a different value.
        let mut c = a.clone();
        c.remove("tag3");
        c.insert("tag99".to_owned());
        assert_ne!(enc(&a), enc(&c));
        // Order still matters for a `Vec`.
        assert_ne!(enc(&vec![1u32, 2]), enc(&vec![2u32, 1]));
    }

    #[test]
    fn sets_nested_in_maps_and_structs_are_canonical() {
        #[derive(Serialize)]
        struct Params {
            groups: HashMap<String, HashSet<u32>>,
            lists: Vec<HashSet<i64>>,
        }
        fn build(reverse: bool) -> Params {
            let mut keys: Vec<u32> = (0..40).collect();
            if reverse {
                keys.reverse();
            }
            let groups = keys
                .iter()
                .map(|&g| (format!("g{g}"), keys.iter().map(|&k| k * g).collect()))
                .collect();
            let lists = (0..3)
                .map(|n| keys.iter().map(|&k| i64::from(k) - n).collect())
                .collect();
            Params { groups, lists }
        }
        let (a, b) = (build(false), build(true));
        let orders_differ = a
            .groups
            .get("g7")
            .zip(b.groups.get("g7"))
            .is_some_and(|(x, y)| x.iter().zip(y).any(|(p, q)| p != q));
        assert!(orders_differ, "the test needs two iteration orders");
        assert_eq!(enc(&a), enc(&b));
    }

    #[test]
    fn binary_heaps_with_equal_elements_encode_equally() {
        let a: BinaryHeap<u32> = [5, 1, 9, 3, 3, 7].into_iter().collect();
        let b: BinaryHeap<u32> = [3, 7, 3, 1, 5, 9].into_iter().collect();
        assert_eq!(enc(&a), enc(&b));
        let c: BinaryHeap<u32> = [5, 1, 9, 3, 7].into_iter().collect();
        assert_ne!(enc(&a), enc(&c), "a heap is a multiset: duplicates count");
    }

    #[test]
    fn collect_seq_type_names_identify_unordered_collections() {
        fn of<I>(_: &I) -> Collection {
            Collection::of(std::any::type_name::<I>(), false)
        }
        let set: HashSet<u32> = HashSet::new();
        let map: HashMap<String, u32> = HashMap::new();
        let heap: BinaryHeap<u32> = BinaryHeap::new();
        let tree: BTreeSet<u32> = BTreeSet::new();
        // What serde's impls pass to `collect_seq`: the collection by reference.
        assert_eq!(of(&&set), Collection::Hashed);
        assert_eq!(of(&set.iter()), Collection::Hashed);
        assert_eq!(of(&map.keys()), Collection::Hashed);
        assert_eq!(of(&&heap), Collection::Hashed);
        assert_eq!(of(&&tree), Collection::OrdSorted);
        assert_eq!(of(&&vec![1u8]), Collection::Positional);
        assert_eq!(of(&[1u8].iter()), Collection::Positional);
        for name in [
            "&hashbrown::set::HashSet<u32, foldhash::fast::RandomState>",
            "&hashbrown::map::HashMap<u8, u8>",
        ] {
            assert_eq!(Collection::of(name, false), Collection::Hashed, "{name}");
        }
        assert_eq!(
            Collection::of("&indexmap::set::IndexSet<u8>", false),
            Collection::Indexed
        );
        // `indexmap::map::serde_seq` writes a map as an ordered sequence on purpose.
        assert_eq!(
            Collection::of("&indexmap::map::IndexMap<u8, u8>", false),
            Collection::Positional
        );
        assert_eq!(
            Collection::of("&indexmap::map::IndexMap<u8, u8>", true),
            Collection::Indexed
        );
        // A user's type is never guessed from its name.
        assert_eq!(
            Collection::of("&my_crate::hash_chain::HashChain", false),
            Collection::Positional
        );
    }

    #[test]
    fn a_set_written_element_by_element_stays_unseen() {
        // The documented limit: a custom impl that drives `serialize_seq` itself gives
        // no type to look at, so its elements keep their iteration order.
        struct ByHand(Vec<u32>);
        impl Serialize for ByHand {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for x in &self.0 {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
        }
        assert_ne!(enc(&ByHand(vec![1, 2])), enc(&ByHand(vec![2, 1])));
    }
}
