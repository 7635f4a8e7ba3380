//! A serializer adapter that writes hash-ordered maps and sets in a canonical order, so
//! that stored bytes (and so content hashes and early cutoff) depend only on the value.
//!
//! [`CanonicalOrder`] wraps a value; serializing it drives any serde format (bincode, JSON,
//! ...) exactly as the value itself would, call for call, except that a collection whose
//! iteration order comes from hash seeds or build history reaches the format with its
//! elements sorted by their [canonical bytes](crate::canonical::to_canonical_bytes). The
//! adapter wraps every nested value the same way, so such collections are sorted wherever
//! they are nested.
//!
//! Sorted: `std::collections::{HashMap, HashSet, BinaryHeap}` and every `hashbrown`
//! collection (seen by the type that their `Serialize` impls pass to `collect_seq` /
//! `collect_map`; see [`crate::canonical`] for what stays unseen). Passed through untouched:
//! everything else, including `BTreeMap`/`BTreeSet` (already in a deterministic order) and
//! `indexmap` collections, whose insertion order is deterministic and part of what a step
//! that iterates them observes, so it is kept.
//!
//! Ordered data costs nothing extra: only the collections above are buffered and sorted.

use serde::ser::{self, Serialize, Serializer};

use super::{to_canonical_bytes, Collection};

/// Serializes the wrapped value with hash-ordered maps and sets in canonical order.
///
/// ```
/// use std::collections::HashMap;
/// use pipeline_core::canonical::CanonicalOrder;
///
/// let a: HashMap<String, u64> = (0..50).map(|i| (format!("k{i}"), i)).collect();
/// let b: HashMap<String, u64> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
/// let json = |m: &HashMap<String, u64>| serde_json::to_string(&CanonicalOrder(m)).unwrap();
/// assert_eq!(json(&a), json(&b));
/// ```
///
/// A custom [`Cacher`](crate::Cacher) gets the same guarantee as the built-in ones by
/// serializing `CanonicalOrder(value)` instead of `value`.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalOrder<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for CanonicalOrder<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(CanonicalOrderSerializer(serializer))
    }
}

/// An owned element, wrapped like [`CanonicalOrder`].
struct Owned<T>(T);

impl<T: Serialize> Serialize for Owned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(CanonicalOrderSerializer(serializer))
    }
}

/// The serializer behind [`CanonicalOrder`]: forwards every call to the wrapped
/// serializer, wrapping nested values, and sorts hash-ordered collections.
#[derive(Debug)]
pub struct CanonicalOrderSerializer<S>(pub S);

/// Compound states of the wrapped serializer, wrapping each element.
pub struct Compound<C>(C);

/// An element moved out of a buffered collection for its sorted position, wrapped like
/// [`Owned`]. `None` (an element taken twice) cannot happen: `sorted_order` is a
/// permutation.
struct Taken<T>(Option<T>);

impl<T: Serialize> Serialize for Taken<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(value) => value.serialize(CanonicalOrderSerializer(serializer)),
            None => Err(ser::Error::custom(
                "internal error: an element was ordered twice",
            )),
        }
    }
}

/// The positions of `keys` in ascending byte order. Not generic, so the sort is compiled
/// once, here, rather than once per element type in every crate that stores one
/// (BENCHMARKS.md, figure 7).
fn sorted_order(keys: &[Vec<u8>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]));
    order
}

fn sort_key<T: Serialize + ?Sized, E: ser::Error>(value: &T) -> Result<Vec<u8>, E> {
    to_canonical_bytes(value).map_err(|e| E::custom(format!("cannot order an element: {e}")))
}

impl<S: Serializer> Serializer for CanonicalOrderSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.0.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.0.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.0.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.0.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.0.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.0.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.0.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.0.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.0.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.0.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.0.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.0.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.0.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.0.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.0.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&CanonicalOrder(value))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_struct(name, &CanonicalOrder(value))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &CanonicalOrder(value))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compound)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }

    fn collect_seq<I>(self, iter: I) -> Result<S::Ok, S::Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if Collection::of(std::any::type_name::<I>(), false) != Collection::Hashed {
            return self.0.collect_seq(iter.into_iter().map(Owned));
        }
        let (mut keys, mut items) = (Vec::new(), Vec::new());
        for item in iter {
            keys.push(sort_key(&item)?);
            items.push(Some(item));
        }
        // Equal bytes are equal elements (the encoding is injective): unstable is exact.
        let order = sorted_order(&keys);
        self.0
            .collect_seq(order.into_iter().map(move |i| Taken(items[i].take())))
    }

    fn collect_map<K, V, I>(self, iter: I) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        if Collection::of(std::any::type_name::<I>(), true) != Collection::Hashed {
            return self
                .0
                .collect_map(iter.into_iter().map(|(k, v)| (Owned(k), Owned(v))));
        }
        let (mut keys, mut entries) = (Vec::new(), Vec::new());
        for (k, v) in iter {
            keys.push(sort_key(&k)?);
            entries.push(Some((k, v)));
        }
        // Keys of one map are distinct, so are their bytes.
        let order = sorted_order(&keys);
        self.0.collect_map(order.into_iter().map(move |i| {
            let (k, v) = match entries[i].take() {
                Some((k, v)) => (Some(k), Some(v)),
                None => (None, None),
            };
            (Taken(k), Taken(v))
        }))
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }
}

impl<C: ser::SerializeSeq> ser::SerializeSeq for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&CanonicalOrder(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTuple> ser::SerializeTuple for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&CanonicalOrder(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&CanonicalOrder(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&CanonicalOrder(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&CanonicalOrder(key))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&CanonicalOrder(value))
    }
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), C::Error> {
        self.0
            .serialize_entry(&CanonicalOrder(key), &CanonicalOrder(value))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeStruct> ser::SerializeStruct for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &CanonicalOrder(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeStructVariant> ser::SerializeStructVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &CanonicalOrder(value))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn bincode_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(CanonicalOrder(value), bincode::config::standard())
            .unwrap_or_else(|e| panic!("bincode: {e}"))
    }

    /// Maps filled in opposite orders until their iteration orders differ.
    fn two_maps(n: u64) -> (HashMap<String, u64>, HashMap<String, u64>) {
        for _ in 0..20 {
            let a: HashMap<String, u64> = (0..n).map(|i| (format!("k{i}"), i)).collect();
            let b: HashMap<String, u64> = (0..n).rev().map(|i| (format!("k{i}"), i)).collect();
            if a.keys().zip(b.keys()).any(|(x, y)| x != y) {
                return (a, b);
            }
        }
        panic!("could not build two maps with different iteration orders");
    }

    #[test]
    fn hash_maps_give_equal_bincode_and_json_bytes() {
        let (a, b) = two_maps(64);
        // Without the adapter the bytes follow iteration order and differ.
        let plain = |m: &HashMap<String, u64>| {
            bincode::serde::encode_to_vec(m, bincode::config::standard()).unwrap_or_default()
        };
        assert_ne!(plain(&a), plain(&b), "the test needs two iteration orders");
        assert_eq!(bincode_bytes(&a), bincode_bytes(&b));
        let json = |m: &HashMap<String, u64>| serde_json::to_string_pretty(&CanonicalOrder(m));
        assert_eq!(json(&a).ok(), json(&b).ok());
    }

    #[test]
    fn nested_sets_and_maps_are_sorted_and_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Index {
            name: String,
            groups: HashMap<String, HashSet<u32>>,
            per_run: Vec<Option<HashMap<u8, Vec<HashSet<String>>>>>,
        }
        fn build(reverse: bool) -> Index {
            let mut ids: Vec<u32> = (0..30).collect();
            if reverse {
                ids.reverse();
            }
            Index {
                name: "index".into(),
                groups: ids
                    .iter()
                    .map(|&g| (format!("g{g}"), ids.iter().map(|&i| i * g).collect()))
                    .collect(),
                per_run: vec![
                    None,
                    Some(
                        ids.iter()
                            .map(|&i| (i as u8, vec![ids.iter().map(|j| format!("{j}")).collect()]))
                            .collect(),
                    ),
                ],
            }
        }
        let (a, b) = (build(false), build(true));
        assert_eq!(bincode_bytes(&a), bincode_bytes(&b));
        let (back, _): (Index, usize) =
            bincode::serde::decode_from_slice(&bincode_bytes(&a), bincode::config::standard())
                .unwrap_or_else(|e| panic!("decode: {e}"));
        assert_eq!(back, a);
    }

    #[test]
    fn ordered_data_is_written_exactly_as_without_the_adapter() {
        let tree: BTreeMap<i32, Vec<f32>> = [(-1, vec![1.5, -0.0]), (7, vec![])].into();
        let plain = bincode::serde::encode_to_vec(&tree, bincode::config::standard());
        assert_eq!(plain.ok(), Some(bincode_bytes(&tree)));
        let v: Vec<(u8, String)> = vec![(2, "b".into()), (1, "a".into())];
        assert_eq!(
            serde_json::to_string(&v).ok(),
            serde_json::to_string(&CanonicalOrder(&v)).ok()
        );
    }

    #[test]
    fn human_readable_flag_is_forwarded() {
        let addr: std::net::IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            serde_json::to_string(&CanonicalOrder(&addr)).ok(),
            Some("\"127.0.0.1\"".to_owned())
        );
        assert_eq!(bincode_bytes(&addr), {
            bincode::serde::encode_to_vec(addr, bincode::config::standard()).unwrap_or_default()
        });
    }
}
