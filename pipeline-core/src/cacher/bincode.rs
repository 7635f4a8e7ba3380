//! The default cacher: compact binary via bincode 2 and serde.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{read_all, Cacher};
use crate::canonical::CanonicalOrder;
use crate::error::BoxError;

/// Stores any `Serialize + DeserializeOwned` value with bincode (standard configuration).
///
/// Compact and fast; not human-readable. Maps and sets whose iteration order depends on
/// hash seeds (`HashMap`, `HashSet`, ...) are written in a canonical order wherever they are
/// nested (see [`CanonicalOrder`]), so equal values give equal bytes and equal content
/// hashes. Types that need `deserialize_any` (untagged
/// enums, `serde_json::Value`) cannot be read back by bincode: use [`Json`](super::Json).
#[derive(Debug, Default, Clone, Copy)]
pub struct Bincode;

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Cacher<T> for Bincode {
    fn id(&self) -> &str {
        "bincode"
    }

    fn save(&self, value: &T, out: &mut dyn Write) -> Result<(), BoxError> {
        // bincode writes each primitive separately (a `Vec<f32>` 4 bytes at a time): a
        // buffer here turns those into inlined copies instead of one dynamic call each.
        let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
        // Hash-ordered maps and sets are written sorted, so equal values give equal bytes.
        ::bincode::serde::encode_into_std_write(
            CanonicalOrder(value),
            &mut out,
            ::bincode::config::standard(),
        )?;
        out.flush()?;
        Ok(())
    }

    fn load(&self, input: &mut dyn Read) -> Result<T, BoxError> {
        // Decoding from one slice is much faster than from a reader with small reads.
        let bytes = read_all(input)?;
        let (value, used) =
            ::bincode::serde::decode_from_slice(&bytes, ::bincode::config::standard())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - used).into());
        }
        Ok(value)
    }
}
