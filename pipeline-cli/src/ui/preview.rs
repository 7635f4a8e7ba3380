//! What an artifact holds, decoded for its page without the Rust type that wrote it.
//!
//! The bytes are read through the store (so their content hash is verified, on any
//! artifact backend) and decoded by the cacher that wrote them:
//!
//! * `json`: any document. An array of numbers is a numeric vector, an array of objects a
//!   table, anything else pretty-printed JSON.
//! * `raw`: its header names the element type; always a numeric vector.
//! * `bincode` (the default cacher) is not self-describing, so only the standard types the
//!   recorded type name spells can be read: numbers, `bool`, `char`, `String`, and `Vec`s
//!   and `Option`s of them. Other types (structs) are shown as their first bytes, with a
//!   hint to store them with `Json` to see them here.
//! * `files`: a one-file archive is its file.
//!
//! Whatever the cacher, bytes that are a PNG, JPEG, GIF or SVG image (by their first
//! bytes, or by a cacher id or output name saying `png`/`svg`) are shown as the image.

use std::io::Read;

use pipeline::{ArtifactRecord, BoxError, Cacher, Store};
use serde_json::Value;

/// Artifacts larger than this are not read for a preview.
pub const MAX_BYTES: u64 = 32 << 20;
/// Rows of a table shown.
pub const TABLE_ROWS: usize = 20;
/// Characters of JSON or text shown.
const MAX_TEXT: usize = 100_000;
/// Bytes shown when nothing else can be.
const HEAD_BYTES: usize = 256;

/// What the artifact page shows of an artifact's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Preview {
    /// One value, as text (`0.9523`, `true`, `"label"`).
    Value(String),
    /// A JSON document, pretty-printed; `cut` when longer than shown.
    Json {
        /// The document.
        text: String,
        /// Whether it was cut.
        cut: bool,
    },
    /// Text; `cut` when longer than shown.
    Text {
        /// The text.
        text: String,
        /// Whether it was cut.
        cut: bool,
    },
    /// Numbers in order, and their element type (`f64`, `number`).
    Numbers {
        /// The values, as `f64`.
        values: Vec<f64>,
        /// What they were stored as.
        element: String,
    },
    /// Rows of a table: the first [`TABLE_ROWS`] rows of `total`.
    Table {
        /// Column names.
        columns: Vec<String>,
        /// The rows shown, one cell per column.
        rows: Vec<Vec<String>>,
        /// Rows in all.
        total: usize,
    },
    /// An image and its media type.
    Image {
        /// `image/png`, `image/svg+xml`, ...
        mime: &'static str,
        /// The image file.
        bytes: Vec<u8>,
    },
    /// Nothing can be decoded: why, and the first bytes when they were read.
    Opaque {
        /// Why.
        why: String,
        /// The first bytes, when read.
        head: Vec<u8>,
    },
}

/// The preview of `record`, read from `store`.
pub fn preview(store: &Store, record: &ArtifactRecord) -> Preview {
    if record.size > MAX_BYTES {
        return Preview::Opaque {
            why: format!(
                "{} is larger than the {} MiB a preview reads",
                pipeline::report::text::size(record.size),
                MAX_BYTES >> 20
            ),
            head: Vec::new(),
        };
    }
    let reader = AllBytes {
        id: record.cacher.clone(),
    };
    match store.load_blob(record.content_hash, &reader) {
        Ok(bytes) => decode(record, bytes),
        Err(e) => Preview::Opaque {
            why: format!("the bytes cannot be read: {e}"),
            head: Vec::new(),
        },
    }
}

/// Decodes `bytes`, stored for `record`.
pub fn decode(record: &ArtifactRecord, bytes: Vec<u8>) -> Preview {
    let hint = image_hint(record);
    for candidate in payloads(record, &bytes) {
        if let Some(mime) = sniff(candidate, hint) {
            return Preview::Image {
                mime,
                bytes: candidate.to_vec(),
            };
        }
    }
    match record.cacher.as_str() {
        "json" => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => from_json(v),
            Err(e) => opaque(format!("the bytes are not JSON: {e}"), &bytes),
        },
        "raw" => match raw_numbers(&bytes) {
            Some((element, values)) => Preview::Numbers {
                values,
                element: element.into(),
            },
            None => opaque(
                "the bytes are not in the raw cacher's layout".into(),
                &bytes,
            ),
        },
        "bincode" => from_bincode(&record.type_name, &bytes),
        other => opaque(
            format!("stored by the cacher `{other}`, which this page cannot decode"),
            &bytes,
        ),
    }
}

/// Reads a blob's bytes as they are: a cacher that decodes nothing, so the store still
/// verifies the content hash.
struct AllBytes {
    id: String,
}

impl Cacher<Vec<u8>> for AllBytes {
    fn id(&self) -> &str {
        &self.id
    }

    fn save(&self, _: &Vec<u8>, _: &mut dyn std::io::Write) -> Result<(), BoxError> {
        Err("the UI only reads".into())
    }

    fn load(&self, input: &mut dyn Read) -> Result<Vec<u8>, BoxError> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

fn opaque(why: String, bytes: &[u8]) -> Preview {
    Preview::Opaque {
        why,
        head: bytes[..bytes.len().min(HEAD_BYTES)].to_vec(),
    }
}

/// A JSON document: numbers, a table of objects or of rows, or pretty-printed.
fn from_json(v: Value) -> Preview {
    if let Value::Array(items) = &v {
        if !items.is_empty() && items.iter().all(Value::is_number) {
            return Preview::Numbers {
                values: items.iter().filter_map(Value::as_f64).collect(),
                element: "number".into(),
            };
        }
        if !items.is_empty() && items.iter().all(Value::is_object) {
            let mut columns: Vec<String> = Vec::new();
            for item in items.iter().take(TABLE_ROWS) {
                if let Value::Object(map) = item {
                    for key in map.keys() {
                        if !columns.contains(key) {
                            columns.push(key.clone());
                        }
                    }
                }
            }
            let rows = items
                .iter()
                .take(TABLE_ROWS)
                .map(|item| {
                    columns
                        .iter()
                        .map(|c| item.get(c).map(cell).unwrap_or_default())
                        .collect()
                })
                .collect();
            return Preview::Table {
                columns,
                rows,
                total: items.len(),
            };
        }
        if !items.is_empty() && items.iter().all(Value::is_array) {
            let width = items.iter().filter_map(Value::as_array).map(Vec::len).max();
            let columns = (0..width.unwrap_or(0)).map(|i| i.to_string()).collect();
            let rows = items
                .iter()
                .take(TABLE_ROWS)
                .map(|row| {
                    row.as_array()
                        .map(|r| r.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect();
            return Preview::Table {
                columns,
                rows,
                total: items.len(),
            };
        }
    }
    match &v {
        Value::Number(_) | Value::Bool(_) | Value::Null => Preview::Value(v.to_string()),
        Value::String(s) => text(s),
        _ => {
            let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
            let (text, cut) = cut(pretty);
            Preview::Json { text, cut }
        }
    }
}

/// A table cell: strings without their quotes, anything else as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text(s: &str) -> Preview {
    let (text, cut) = cut(s.to_string());
    Preview::Text { text, cut }
}

fn cut(mut s: String) -> (String, bool) {
    if s.len() <= MAX_TEXT {
        return (s, false);
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

/// The standard types a bincode blob can be read as, by the recorded type name.
fn from_bincode(type_name: &str, bytes: &[u8]) -> Preview {
    let ty = plain_type(type_name);
    macro_rules! numbers {
        ($($t:ty),*) => {$(
            if ty == concat!("Vec<", stringify!($t), ">") {
                return match bincode_value::<Vec<$t>>(bytes) {
                    Ok(v) => Preview::Numbers {
                        values: v.into_iter().map(|x| x as f64).collect(),
                        element: stringify!($t).into(),
                    },
                    Err(e) => opaque(e, bytes),
                };
            }
            if ty == stringify!($t) || ty == concat!("Option<", stringify!($t), ">") {
                // The recorded type name says whether the bytes hold an `Option`.
                let value = if ty.starts_with("Option<") {
                    bincode_value::<Option<$t>>(bytes)
                } else {
                    bincode_value::<$t>(bytes).map(Some)
                };
                return match value {
                    Ok(Some(v)) => Preview::Value(v.to_string()),
                    Ok(None) => Preview::Value("None".into()),
                    Err(e) => opaque(e, bytes),
                };
            }
        )*};
    }
    numbers!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);
    let read = |r: Result<Preview, String>| r.unwrap_or_else(|e| opaque(e, bytes));
    match ty.as_str() {
        "bool" => read(bincode_value::<bool>(bytes).map(|v| Preview::Value(v.to_string()))),
        "char" => read(bincode_value::<char>(bytes).map(|v| Preview::Value(format!("{v:?}")))),
        "String" | "&str" => read(bincode_value::<String>(bytes).map(|s| text(&s))),
        "Vec<String>" => read(bincode_value::<Vec<String>>(bytes).map(|v| Preview::Table {
            columns: vec!["value".into()],
            total: v.len(),
            rows: v.into_iter().take(TABLE_ROWS).map(|s| vec![s]).collect(),
        })),
        "Vec<bool>" => read(bincode_value::<Vec<bool>>(bytes).map(|v| Preview::Numbers {
            values: v.into_iter().map(|b| f64::from(u8::from(b))).collect(),
            element: "bool".into(),
        })),
        "Vec<Vec<f64>>" => read(bincode_value::<Vec<Vec<f64>>>(bytes).map(|v| {
            let width = v.iter().map(Vec::len).max().unwrap_or(0);
            Preview::Table {
                columns: (0..width).map(|i| i.to_string()).collect(),
                total: v.len(),
                rows: v
                    .iter()
                    .take(TABLE_ROWS)
                    .map(|r| r.iter().map(|x| super::chart::num(*x)).collect())
                    .collect(),
            }
        })),
        _ => opaque(
            format!(
                "bincode bytes are not self-describing, and `{type_name}` is not a standard type this page can read without its definition; store it with the `Json` cacher (`#[step(cacher = Json)]`) to see it here"
            ),
            bytes,
        ),
    }
}

/// Decodes a whole bincode blob (standard configuration, as the `Bincode` cacher writes).
fn bincode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (v, used) = bincode::serde::decode_from_slice::<T, _>(bytes, bincode::config::standard())
        .map_err(|e| format!("the bytes do not decode as its recorded type: {e}"))?;
    if used != bytes.len() {
        return Err(format!(
            "the bytes do not decode as its recorded type: {} bytes left over",
            bytes.len() - used
        ));
    }
    Ok(v)
}

/// A type name without module paths: `alloc::vec::Vec<alloc::string::String>` is
/// `Vec<String>`.
pub fn plain_type(type_name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in type_name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(""));
            word.clear();
            if c != ' ' {
                out.push(c);
            }
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(""));
    out
}

/// The raw cacher's layout: `PLRAW`, format, element code, element size, count, elements.
fn raw_numbers(bytes: &[u8]) -> Option<(&'static str, Vec<f64>)> {
    if bytes.len() < 16 || &bytes[..5] != b"PLRAW" || bytes[5] != 1 {
        return None;
    }
    let size = usize::from(bytes[7]);
    let count = usize::try_from(u64::from_le_bytes(bytes[8..16].try_into().ok()?)).ok()?;
    let body = &bytes[16..];
    if size == 0 || body.len() != count.checked_mul(size)? {
        return None;
    }
    macro_rules! read {
        ($t:ty) => {
            body.chunks_exact(size)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
                .collect()
        };
    }
    let (name, values): (&str, Vec<f64>) = match (bytes[6], size) {
        (1, 1) => ("u8", read!(u8)),
        (2, 1) => ("i8", read!(i8)),
        (3, 2) => ("u16", read!(u16)),
        (4, 2) => ("i16", read!(i16)),
        (5, 4) => ("u32", read!(u32)),
        (6, 4) => ("i32", read!(i32)),
        (7, 8) => ("u64", read!(u64)),
        (8, 8) => ("i64", read!(i64)),
        (9, 4) => ("f32", read!(f32)),
        (10, 8) => ("f64", read!(f64)),
        _ => return None,
    };
    Some((name, values))
}

/// Which image the cacher id or the output name announces, if any.
fn image_hint(record: &ArtifactRecord) -> Option<&'static str> {
    let says = |what: &str| {
        record.cacher.to_ascii_lowercase().contains(what)
            || record.name.to_ascii_lowercase().ends_with(what)
    };
    if says("svg") {
        Some("image/svg+xml")
    } else if says("png") {
        Some("image/png")
    } else {
        None
    }
}

/// The byte strings an image may be in: the blob itself, the bytes of a bincode
/// `Vec<u8>`/`String`, and the file of a one-file `files` archive.
fn payloads<'b>(record: &ArtifactRecord, bytes: &'b [u8]) -> Vec<&'b [u8]> {
    let mut out = vec![bytes];
    if record.cacher == "bincode" {
        if let Some(inner) = bincode_bytes(bytes) {
            out.push(inner);
        }
    }
    if record.cacher == "files" {
        if let Some(file) = single_file(bytes) {
            out.push(file);
        }
    }
    out
}

/// The payload of a bincode `Vec<u8>` or `String`: a varint length, then the bytes.
fn bincode_bytes(bytes: &[u8]) -> Option<&[u8]> {
    // bincode 2's standard varint: < 251 is the value itself; 251, 252, 253 announce a
    // u16, u32, u64 in little-endian.
    let (len, header) = match *bytes.first()? {
        n @ 0..=250 => (u64::from(n), 1),
        251 => (
            u64::from(u16::from_le_bytes(bytes.get(1..3)?.try_into().ok()?)),
            3,
        ),
        252 => (
            u64::from(u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?)),
            5,
        ),
        253 => (u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?), 9),
        _ => return None,
    };
    let rest = &bytes[header..];
    (rest.len() as u64 == len).then_some(rest)
}

/// The file of a `files` archive holding exactly one file.
fn single_file(bytes: &[u8]) -> Option<&[u8]> {
    let u64_at = |at: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)).ok()
    };
    if bytes.get(..8)? != b"PLFILES1" || u64_at(8)? != 1 {
        return None;
    }
    let name_len = u64_at(16)?;
    let size_at = 24usize.checked_add(name_len)?;
    let size = u64_at(size_at)?;
    let start = size_at + 8;
    let file = bytes.get(start..start.checked_add(size)?)?;
    (start + size == bytes.len()).then_some(file)
}

/// The media type of image bytes, by their first bytes (an SVG announced by `hint` may
/// start with comments or a doctype).
fn sniff(bytes: &[u8], hint: Option<&'static str>) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Some("image/jpeg");
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    let head = &bytes[..bytes.len().min(4096)];
    let text = std::str::from_utf8(head).ok()?;
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let svg = t.starts_with("<svg")
        || (t.starts_with("<?xml") && t.contains("<svg"))
        || (hint == Some("image/svg+xml") && t.starts_with('<') && t.contains("<svg"));
    svg.then_some("image/svg+xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cacher: &str, type_name: &str) -> ArtifactRecord {
        ArtifactRecord {
            name: "output".into(),
            content_hash: pipeline::Hash128(1),
            size: 0,
            type_name: type_name.into(),
            cacher: cacher.into(),
            cacher_version: 1,
            metadata: None,
        }
    }

    fn bincode<T: serde::Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            plain_type("alloc::vec::Vec<alloc::string::String>"),
            "Vec<String>"
        );
        assert_eq!(plain_type("core::option::Option<f64>"), "Option<f64>");
        assert_eq!(plain_type("my::Matrix"), "Matrix");
    }

    #[test]
    fn bincode_standard_types() {
        let v = vec![1.5f64, 2.5, -3.0];
        assert_eq!(
            decode(&record("bincode", "alloc::vec::Vec<f64>"), bincode(&v)),
            Preview::Numbers {
                values: v,
                element: "f64".into()
            }
        );
        assert_eq!(
            decode(&record("bincode", "u32"), bincode(&7u32)),
            Preview::Value("7".into())
        );
        assert_eq!(
            decode(
                &record("bincode", "core::option::Option<f64>"),
                bincode(&None::<f64>)
            ),
            Preview::Value("None".into())
        );
        assert!(matches!(
            decode(&record("bincode", "my::Matrix"), bincode(&(2u64, 3u64))),
            Preview::Opaque { why, head } if why.contains("Json") && !head.is_empty()
        ));
        // Bytes of another type are reported, not misread.
        assert!(matches!(
            decode(&record("bincode", "alloc::vec::Vec<f64>"), bincode(&"text")),
            Preview::Opaque { .. }
        ));
    }

    #[test]
    fn json_documents() {
        let rows =
            serde_json::json!([{"id": 1, "label": "a"}, {"id": 2, "label": "b", "extra": true}]);
        match decode(&record("json", "Vec<Row>"), rows.to_string().into_bytes()) {
            Preview::Table {
                columns,
                rows,
                total,
            } => {
                assert_eq!(columns, ["id", "label", "extra"]);
                assert_eq!(rows[1], ["2", "b", "true"]);
                assert_eq!(rows[0][2], "");
                assert_eq!(total, 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&record("json", "f64"), b"0.95".to_vec()),
            Preview::Value("0.95".into())
        );
        assert!(matches!(
            decode(&record("json", "Config"), br#"{"a":{"b":[1,"x"]}}"#.to_vec()),
            Preview::Json { text, .. } if text.contains("\n")
        ));
    }

    #[test]
    fn images_by_their_bytes() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        assert!(matches!(
            decode(&record("bincode", "alloc::vec::Vec<u8>"), bincode(&png)),
            Preview::Image { mime: "image/png", bytes } if bytes == png
        ));
        let svg = "<svg xmlns='x'><rect/></svg>";
        assert!(matches!(
            decode(&record("bincode", "alloc::string::String"), bincode(&svg)),
            Preview::Image {
                mime: "image/svg+xml",
                ..
            }
        ));
        let mut archive = b"PLFILES1".to_vec();
        archive.extend(1u64.to_le_bytes());
        archive.extend(0u64.to_le_bytes());
        archive.extend((png.len() as u64).to_le_bytes());
        archive.extend(&png);
        assert!(matches!(
            decode(&record("files", "FileRef"), archive),
            Preview::Image {
                mime: "image/png",
                ..
            }
        ));
    }

    #[test]
    fn raw_vectors() {
        let mut bytes = b"PLRAW\x01\x09\x04".to_vec();
        bytes.extend(2u64.to_le_bytes());
        bytes.extend(1.5f32.to_le_bytes());
        bytes.extend(2.0f32.to_le_bytes());
        assert_eq!(
            decode(&record("raw", "alloc::vec::Vec<f32>"), bytes),
            Preview::Numbers {
                values: vec![1.5, 2.0],
                element: "f32".into()
            }
        );
    }
}
