//! Parameter values as text for explanations, where JSON cannot show them.
//!
//! A parameter's value is recorded as JSON for people and scripts, and JSON has no NaN or
//! infinity: `serde_json` turns them into `null`, so a reason would read
//! `parameter `eps` changed (null -> 0.1)`. [`non_finite_text`] renders such a value as the
//! same compact JSON text (`serde_json::Value`'s, object keys sorted) except that each
//! non-finite float, wherever it is nested, shows as Rust shows it: `NaN`, `inf`, `-inf`.
//! [`text`] renders any value so, for values `serde_json` refuses (maps with tuple keys).

use std::fmt;

use serde::ser::{self, Serialize};

/// The value as JSON-like text with non-finite floats shown as `NaN`, `inf` or `-inf`, or
/// `None` when the value holds no such float (its JSON shows it exactly) or cannot be
/// serialized.
///
/// ```text
/// 0.5                      -> None
/// f64::NAN                 -> Some("NaN")
/// {"eps": -inf, "k": [1]}  -> Some("{\"eps\":-inf,\"k\":[1]}")
/// ```
pub(crate) fn non_finite_text<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    let mut lossy = false;
    let text = value.serialize(Text { lossy: &mut lossy }).ok()?;
    lossy.then_some(text)
}

/// The value as the same text, always: for a value JSON cannot hold at all (a map whose
/// keys are not strings or numbers, such as tuples), which `serde_json` refuses. `None`
/// only when the value cannot be serialized.
pub(crate) fn text<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Text { lossy: &mut false }).ok()
}

/// A value serializer's error (only a `Serialize` impl's own `custom` error).
#[derive(Debug)]
struct TextError(String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

impl ser::Error for TextError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TextError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, TextError>;

/// Renders one value; sets `lossy` when it meets a non-finite float.
struct Text<'a> {
    lossy: &'a mut bool,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

impl Text<'_> {
    fn float(self, v: f64, finite: impl FnOnce() -> String) -> String {
        if v.is_finite() {
            finite()
        } else {
            *self.lossy = true;
            // Rust's own rendering: `NaN`, `inf`, `-inf`.
            v.to_string()
        }
    }
}

/// An object or array being rendered: `variant` wraps it as `{"Variant": ..}`.
struct Compound<'a> {
    lossy: &'a mut bool,
    variant: Option<&'static str>,
    items: Vec<String>,
    entries: Vec<(String, String)>,
    key: Option<String>,
}

impl<'a> Compound<'a> {
    fn new(lossy: &'a mut bool, variant: Option<&'static str>) -> Self {
        Compound {
            lossy,
            variant,
            items: Vec::new(),
            entries: Vec::new(),
            key: None,
        }
    }

    fn text<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<String> {
        value.serialize(Text {
            lossy: &mut *self.lossy,
        })
    }

    fn wrap(&self, inner: String) -> String {
        match self.variant {
            Some(v) => format!("{{{}:{inner}}}", quoted(v)),
            None => inner,
        }
    }

    fn end_seq(self) -> String {
        let inner = format!("[{}]", self.items.join(","));
        self.wrap(inner)
    }

    /// Keys sorted and deduplicated (the last value wins), as in a `serde_json::Map`.
    fn end_map(mut self) -> String {
        let raw = |k: &str| serde_json::from_str::<String>(k).unwrap_or_else(|_| k.to_string());
        let mut entries = std::mem::take(&mut self.entries);
        entries.reverse();
        entries.sort_by_cached_key(|(k, _)| raw(k));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let inner = format!("{{{}}}", body.join(","));
        self.wrap(inner)
    }
}

impl<'a> ser::Serializer for Text<'a> {
    type Ok = String;
    type Error = TextError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, v: f32) -> Result<String> {
        Ok(self.float(f64::from(v), || serde_json::Value::from(v).to_string()))
    }
    fn serialize_f64(self, v: f64) -> Result<String> {
        Ok(self.float(v, || serde_json::Value::from(v).to_string()))
    }
    fn serialize_char(self, v: char) -> Result<String> {
        Ok(quoted(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> Result<String> {
        Ok(quoted(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<String> {
        let items: Vec<String> = v.iter().map(u8::to_string).collect();
        Ok(format!("[{}]", items.join(",")))
    }
    fn serialize_none(self) -> Result<String> {
        Ok("null".into())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<String> {
        Ok("null".into())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String> {
        Ok("null".into())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String> {
        Ok(quoted(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<String> {
        Ok(format!(
            "{{{}:{}}}",
            quoted(variant),
            value.serialize(self)?
        ))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, None))
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, None))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>> {
        Ok(Compound::new(self.lossy, Some(variant)))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = self.text(value)?;
        self.items.push(text);
        Ok(())
    }
    fn end(self) -> Result<String> {
        Ok(self.end_seq())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<String> {
        Ok(self.end_seq())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<String> {
        Ok(self.end_seq())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<String> {
        Ok(self.end_seq())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        let text = self.text(key)?;
        // JSON object keys are strings: a number, `true` or `NaN` key shows quoted.
        let key = if text.starts_with('"') {
            text
        } else {
            quoted(&text)
        };
        self.key = Some(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = self.text(value)?;
        let key = self.key.take().unwrap_or_else(|| quoted(""));
        self.entries.push((key, text));
        Ok(())
    }
    fn end(self) -> Result<String> {
        Ok(self.end_map())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        let text = self.text(value)?;
        self.entries.push((quoted(name), text));
        Ok(())
    }
    fn end(self) -> Result<String> {
        Ok(self.end_map())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = String;
    type Error = TextError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(self, name, value)
    }
    fn end(self) -> Result<String> {
        Ok(self.end_map())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Serialize;

    use super::non_finite_text;

    #[derive(Serialize)]
    struct Settings {
        name: String,
        eps: f64,
        weights: Vec<f32>,
        mode: Mode,
    }

    #[derive(Serialize)]
    enum Mode {
        Fast,
        Tuned { rate: f64 },
    }

    #[test]
    fn finite_values_need_no_text() {
        assert_eq!(non_finite_text(&0.5), None);
        assert_eq!(non_finite_text(&vec![1.0, 2.5]), None);
        assert_eq!(non_finite_text("NaN"), None, "a string is not a float");
    }

    #[test]
    fn non_finite_floats_show_as_rust_shows_them() {
        assert_eq!(non_finite_text(&f64::NAN).as_deref(), Some("NaN"));
        assert_eq!(non_finite_text(&f64::INFINITY).as_deref(), Some("inf"));
        assert_eq!(non_finite_text(&f32::NEG_INFINITY).as_deref(), Some("-inf"));
        assert_eq!(
            non_finite_text(&Some(vec![1.5, f64::NAN])).as_deref(),
            Some("[1.5,NaN]")
        );
    }

    #[test]
    fn nested_non_finite_floats_show_and_the_rest_matches_json() {
        let value = Settings {
            name: "a \"b\"".into(),
            eps: f64::NEG_INFINITY,
            weights: vec![0.5, 2.0],
            mode: Mode::Tuned { rate: f64::NAN },
        };
        let text = non_finite_text(&value).unwrap();
        assert_eq!(
            text,
            r#"{"eps":-inf,"mode":{"Tuned":{"rate":NaN}},"name":"a \"b\"","weights":[0.5,2.0]}"#
        );
        // Without the non-finite floats, the text is exactly serde_json's.
        let finite = Settings {
            eps: 1.0,
            mode: Mode::Fast,
            ..value
        };
        let mut lossy = false;
        let text = serde::Serialize::serialize(&finite, super::Text { lossy: &mut lossy }).unwrap();
        assert!(!lossy);
        assert_eq!(text, serde_json::to_value(&finite).unwrap().to_string());
    }

    #[test]
    fn values_json_refuses_show_too() {
        let mut map = HashMap::new();
        map.insert((1u8, 2u8), 0.5);
        assert!(serde_json::to_value(&map).is_err());
        assert_eq!(non_finite_text(&map), None);
        assert_eq!(super::text(&map).as_deref(), Some(r#"{"[1,2]":0.5}"#));
    }

    #[test]
    fn map_keys_are_quoted_and_sorted() {
        let mut map = HashMap::new();
        map.insert(2u32, f64::INFINITY);
        map.insert(10u32, 1.0);
        map.insert(1u32, -0.5);
        assert_eq!(
            non_finite_text(&map).as_deref(),
            Some(r#"{"1":-0.5,"10":1.0,"2":inf}"#)
        );
    }
}
