//! Human-browsable JSON, for metrics and small records.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Cacher;
use crate::canonical::CanonicalOrder;
use crate::error::BoxError;

/// Stores a value as pretty-printed JSON, readable without this library.
///
/// Maps and sets whose iteration order depends on hash seeds are written in a canonical
/// order wherever they are nested (see [`CanonicalOrder`]); a `BTreeMap` or an `IndexMap`
/// keeps its own order. Finite floats round-trip exactly. JSON has no NaN or infinity: serde_json writes them as
/// `null`, which then fails to load as a float; use [`Bincode`](super::Bincode) for such values.
#[derive(Debug, Default, Clone, Copy)]
pub struct Json;

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Cacher<T> for Json {
    fn id(&self) -> &str {
        "json"
    }

    fn save(&self, value: &T, out: &mut dyn Write) -> Result<(), BoxError> {
        // Hash-ordered maps and sets are written sorted, so equal values give equal bytes.
        serde_json::to_writer_pretty(&mut *out, &CanonicalOrder(value))?;
        out.write_all(b"\n")?;
        Ok(())
    }

    fn load(&self, input: &mut dyn Read) -> Result<T, BoxError> {
        let bytes = super::read_all(input)?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}
