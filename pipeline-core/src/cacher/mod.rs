//! Cachers turn one output value into stored bytes and back.
//!
//! A step output picks its cacher in the attribute (`#[step(cacher(metrics = Json))]`);
//! the default is [`Bincode`]. A cacher's [`id`](Cacher::id) and
//! [`version`](Cacher::version) enter the cache key, so changing how an output is stored
//! re-executes the step instead of reading bytes in the old format.

mod bincode;
mod files;
mod json;
mod raw;

pub use self::bincode::Bincode;
pub use self::files::{file_bytes_hashed, FileRef, Files};
pub use self::json::Json;
pub use self::raw::{Raw, RawElement};

use std::io::{Read, Write};

use crate::error::BoxError;

/// Saves values of type `T` as bytes and loads them back.
///
/// Implement it for your own formats; the store hashes the bytes while they are written,
/// writes them to a temporary file and renames it into place, and verifies the hash when the
/// bytes are read back, so a cacher only encodes and decodes.
///
/// The built-in cachers write equal values as equal bytes: hash-ordered maps and sets are
/// sorted wherever they are nested, so content hashes, and with them early cutoff, depend
/// only on the value. A custom cacher is free to opt out (its bytes are stored as it writes
/// them); to get the same guarantee with any serde format, serialize
/// [`CanonicalOrder(value)`](crate::canonical::CanonicalOrder) instead of `value`.
///
/// ```
/// use std::io::{Read, Write};
/// use pipeline_core::{BoxError, Cacher};
///
/// /// Stores a `String` as plain UTF-8 text.
/// #[derive(Default)]
/// struct Text;
///
/// impl Cacher<String> for Text {
///     fn id(&self) -> &str { "text" }
///     fn save(&self, value: &String, out: &mut dyn Write) -> Result<(), BoxError> {
///         out.write_all(value.as_bytes())?;
///         Ok(())
///     }
///     fn load(&self, input: &mut dyn Read) -> Result<String, BoxError> {
///         let mut s = String::new();
///         input.read_to_string(&mut s)?;
///         Ok(s)
///     }
/// }
/// ```
pub trait Cacher<T>: Send + Sync + 'static {
    /// Stable identifier recorded with each artifact and part of the cache key.
    fn id(&self) -> &str;

    /// Format version; bump it when the byte layout changes so old blobs are not misread.
    fn version(&self) -> u32 {
        1
    }

    /// Writes `value` to `out`.
    ///
    /// # Errors
    ///
    /// Whatever stops the value from being written: an I/O error of `out` (e.g. a full
    /// disk) or an encoder's error. The step then fails with [`Error::Cacher`](crate::Error::Cacher)
    /// as the source of [`Error::StepFailed`](crate::Error::StepFailed), and the partial
    /// bytes are discarded.
    fn save(&self, value: &T, out: &mut dyn Write) -> Result<(), BoxError>;

    /// Reads a value back from the bytes `save` wrote.
    ///
    /// # Errors
    ///
    /// Bytes that do not decode (written by another version or type) or an I/O error of
    /// `input`; loads report it as [`Error::Cacher`](crate::Error::Cacher) or
    /// [`Error::Undecodable`](crate::Error::Undecodable), keeping it as the source.
    fn load(&self, input: &mut dyn Read) -> Result<T, BoxError>;

    /// Extra metadata about `value` recorded beside the artifact (as JSON), e.g. a shape.
    fn metadata(&self, _value: &T) -> Option<serde_json::Value> {
        None
    }
}

/// Reads everything from `input`; cachers that decode from a slice use it.
pub(crate) fn read_all(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    Ok(bytes)
}
