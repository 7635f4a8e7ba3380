//! Plain numeric vectors stored as their bytes, so loading costs about one file read.
//!
//! Layout: a 16-byte header (`PLRAW`, format version, element code, element size, element
//! count as u64 little-endian) followed by the elements in little-endian order.

use std::io::{Read, Write};

use super::Cacher;
use crate::error::BoxError;

const MAGIC: &[u8; 5] = b"PLRAW";
const FORMAT: u8 = 1;

/// Stores `Vec<T>` of a primitive number type as raw little-endian bytes.
///
/// Bit-exact (NaN payloads and `-0.0` survive) and about as fast as reading the file.
/// Loading checks the header: a blob of `f32` elements is refused when `f64` is asked for.
///
/// ```
/// use pipeline::prelude::*;
/// use pipeline::cacher::Raw;
///
/// #[step(cacher = Raw)]
/// fn embeddings(n: usize) -> Vec<f32> {
///     vec![0.5; n]
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Raw;

/// Element types the [`Raw`] cacher supports.
pub trait RawElement: bytemuck::Pod + Send + Sync + 'static {
    /// Code stored in the header.
    const CODE: u8;
    /// Name used in error messages.
    const NAME: &'static str;
    /// Converts between native and little-endian order (identity on little-endian targets).
    fn swap_le(self) -> Self;
}

macro_rules! raw_element {
    ($($t:ty => $code:expr),* $(,)?) => {$(
        impl RawElement for $t {
            const CODE: u8 = $code;
            const NAME: &'static str = stringify!($t);
            fn swap_le(self) -> Self {
                <$t>::from_le_bytes(self.to_ne_bytes())
            }
        }
    )*};
}

raw_element! {
    u8 => 1, i8 => 2, u16 => 3, i16 => 4, u32 => 5, i32 => 6, u64 => 7, i64 => 8,
    f32 => 9, f64 => 10,
}

fn name_of(code: u8) -> &'static str {
    match code {
        1 => "u8",
        2 => "i8",
        3 => "u16",
        4 => "i16",
        5 => "u32",
        6 => "i32",
        7 => "u64",
        8 => "i64",
        9 => "f32",
        10 => "f64",
        _ => "an unknown element type",
    }
}

/// Writes `values` in the raw layout (header, then little-endian elements).
fn save_slice<T: RawElement>(value: &[T], out: &mut dyn Write) -> Result<(), BoxError> {
    let mut header = [0u8; 16];
    header[..5].copy_from_slice(MAGIC);
    header[5] = FORMAT;
    header[6] = T::CODE;
    header[7] = std::mem::size_of::<T>() as u8;
    header[8..].copy_from_slice(&(value.len() as u64).to_le_bytes());
    out.write_all(&header)?;
    if cfg!(target_endian = "little") {
        out.write_all(bytemuck::cast_slice(value))?;
    } else {
        for chunk in value.chunks(8192) {
            let le: Vec<T> = chunk.iter().map(|x| x.swap_le()).collect();
            out.write_all(bytemuck::cast_slice(&le))?;
        }
    }
    Ok(())
}

impl<T: RawElement> Cacher<Vec<T>> for Raw {
    fn id(&self) -> &str {
        "raw"
    }

    fn save(&self, value: &Vec<T>, out: &mut dyn Write) -> Result<(), BoxError> {
        save_slice(value, out)
    }

    fn load(&self, input: &mut dyn Read) -> Result<Vec<T>, BoxError> {
        let mut header = [0u8; 16];
        input
            .read_exact(&mut header)
            .map_err(|_| "blob is too short for a raw header")?;
        if &header[..5] != MAGIC {
            return Err("blob was not written by the raw cacher (bad magic)".into());
        }
        if header[5] != FORMAT {
            return Err(format!(
                "raw format version {} is not supported (this build reads version {FORMAT})",
                header[5]
            )
            .into());
        }
        if header[6] != T::CODE || usize::from(header[7]) != std::mem::size_of::<T>() {
            return Err(format!(
                "blob holds `{}` elements, but `Vec<{}>` was requested",
                name_of(header[6]),
                T::NAME
            )
            .into());
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&header[8..]);
        let count = usize::try_from(u64::from_le_bytes(count))
            .map_err(|_| "element count does not fit in memory")?;
        // Zeroed by the allocator (fresh pages from the OS for large vectors), not by a
        // separate pass over the memory before the read fills it.
        let mut values: Vec<T> = bytemuck::allocation::try_zeroed_vec(count)
            .map_err(|_| format!("cannot allocate {count} elements"))?;
        // Read straight into the vector's memory: no intermediate buffer.
        input
            .read_exact(bytemuck::cast_slice_mut(&mut values))
            .map_err(|_| "blob is shorter than its header says")?;
        if cfg!(target_endian = "big") {
            values.iter_mut().for_each(|x| *x = x.swap_le());
        }
        let mut probe = [0u8; 1];
        if input.read(&mut probe)? != 0 {
            return Err("blob is longer than its header says".into());
        }
        Ok(values)
    }

    fn metadata(&self, value: &Vec<T>) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "element": T::NAME, "len": value.len() }))
    }
}

/// `ndarray` arrays of any dimension: a shape block (`PLNDA`, format version, number of
/// axes, each axis length) in front of the same layout as `Vec<T>`, in standard (row-major)
/// order whatever the array's memory layout.
#[cfg(feature = "ndarray")]
mod nd {
    use std::io::{Read, Write};

    use ndarray::{Array, Dimension, IxDyn};

    use super::{save_slice, Cacher, Raw, RawElement};
    use crate::error::BoxError;

    const SHAPE_MAGIC: &[u8; 5] = b"PLNDA";

    impl<T: RawElement, D: Dimension + Send + Sync + 'static> Cacher<Array<T, D>> for Raw {
        fn id(&self) -> &str {
            "raw-ndarray"
        }

        fn save(&self, value: &Array<T, D>, out: &mut dyn Write) -> Result<(), BoxError> {
            let mut head = [0u8; 16];
            head[..5].copy_from_slice(SHAPE_MAGIC);
            head[5] = 1;
            head[8..].copy_from_slice(&(value.ndim() as u64).to_le_bytes());
            out.write_all(&head)?;
            for &len in value.shape() {
                out.write_all(&(len as u64).to_le_bytes())?;
            }
            let standard = value.as_standard_layout();
            let slice = standard
                .as_slice()
                .ok_or("array is not contiguous in standard layout")?;
            save_slice(slice, out)
        }

        fn load(&self, input: &mut dyn Read) -> Result<Array<T, D>, BoxError> {
            let mut head = [0u8; 16];
            input
                .read_exact(&mut head)
                .map_err(|_| "blob is too short for an array header")?;
            if &head[..5] != SHAPE_MAGIC || head[5] != 1 {
                return Err("blob was not written by the raw cacher for arrays".into());
            }
            let mut word = [0u8; 8];
            word.copy_from_slice(&head[8..]);
            let ndim = u64::from_le_bytes(word);
            if let Some(expected) = D::NDIM {
                if ndim != expected as u64 {
                    return Err(format!(
                        "blob holds an array with {ndim} axes, but {expected} were requested"
                    )
                    .into());
                }
            }
            if ndim > 64 {
                return Err(format!("array header claims {ndim} axes").into());
            }
            let mut shape = Vec::with_capacity(ndim as usize);
            for _ in 0..ndim {
                input
                    .read_exact(&mut word)
                    .map_err(|_| "blob is too short for its shape")?;
                shape.push(
                    usize::try_from(u64::from_le_bytes(word))
                        .map_err(|_| "axis length does not fit in memory")?,
                );
            }
            let values: Vec<T> = Cacher::<Vec<T>>::load(self, input)?;
            let array = Array::from_shape_vec(IxDyn(&shape), values)
                .map_err(|e| format!("shape {shape:?} does not match the data: {e}"))?;
            Ok(array.into_dimensionality::<D>()?)
        }

        fn metadata(&self, value: &Array<T, D>) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "element": T::NAME, "shape": value.shape() }))
        }
    }

    #[cfg(test)]
    mod tests {
        use ndarray::{arr2, Array1, Array2, Array3, ArrayD, IxDyn};

        use super::*;

        fn round_trip<A>(a: &A) -> Result<A, BoxError>
        where
            Raw: Cacher<A>,
        {
            let mut bytes = Vec::new();
            Raw.save(a, &mut bytes)?;
            Raw.load(&mut bytes.as_slice())
        }

        #[test]
        fn arrays_round_trip_with_their_shape() {
            let a = arr2(&[[1.0f64, -0.0], [f64::from_bits(0x7ff8_0000_0000_0001), 4.0]]);
            let back = round_trip(&a).unwrap();
            assert_eq!(back.shape(), [2, 2]);
            let bits = |x: &Array2<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&a));
            // A transposed (column-major) view is stored in standard order.
            let t = a.t().to_owned();
            assert_eq!(bits(&round_trip(&t).unwrap()), bits(&t));
            let cube =
                Array3::<u16>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as u16);
            assert_eq!(round_trip(&cube).unwrap(), cube);
            let dynamic = ArrayD::<i32>::zeros(IxDyn(&[3, 0, 2]));
            assert_eq!(round_trip(&dynamic).unwrap(), dynamic);
        }

        #[test]
        fn wrong_dimension_or_element_type_is_refused() {
            let a = Array2::<f32>::zeros((2, 3));
            let mut bytes = Vec::new();
            Raw.save(&a, &mut bytes).unwrap();
            let err = Cacher::<Array1<f32>>::load(&Raw, &mut bytes.as_slice()).unwrap_err();
            assert!(err.to_string().contains("2 axes, but 1"), "{err}");
            let err = Cacher::<Array2<f64>>::load(&Raw, &mut bytes.as_slice()).unwrap_err();
            assert!(err.to_string().contains("`f32` elements"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: RawElement + PartialEq + std::fmt::Debug>(v: Vec<T>) -> Vec<T> {
        let mut bytes = Vec::new();
        Raw.save(&v, &mut bytes).unwrap();
        assert_eq!(bytes.len(), 16 + v.len() * std::mem::size_of::<T>());
        Cacher::<Vec<T>>::load(&Raw, &mut bytes.as_slice()).unwrap()
    }

    #[test]
    fn round_trips_bit_exactly() {
        let weird = vec![
            f64::from_bits(0x7ff8_0000_dead_beef),
            -0.0,
            f64::INFINITY,
            f64::MIN_POSITIVE / 2.0,
            1.5,
        ];
        let back = round_trip(weird.clone());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&weird));
        let f32s = vec![f32::from_bits(0x7fc0_1234), -0.0f32];
        let back = round_trip(f32s.clone());
        assert_eq!(back[0].to_bits(), f32s[0].to_bits());
        assert_eq!(back[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(round_trip(vec![1u32, u32::MAX]), vec![1, u32::MAX]);
        assert_eq!(round_trip(Vec::<i64>::new()), Vec::<i64>::new());
    }

    #[test]
    fn rejects_another_element_type() {
        let mut bytes = Vec::new();
        Raw.save(&vec![1.0f32, 2.0], &mut bytes).unwrap();
        let err = Cacher::<Vec<f64>>::load(&Raw, &mut bytes.as_slice()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "blob holds `f32` elements, but `Vec<f64>` was requested"
        );
        let err = Cacher::<Vec<u32>>::load(&Raw, &mut &b"not a raw blob!!"[..]).unwrap_err();
        assert!(err.to_string().contains("bad magic"));
        let err = Cacher::<Vec<u32>>::load(&Raw, &mut &bytes[..20]).unwrap_err();
        assert!(err.to_string().contains("blob holds `f32`"));
    }

    #[test]
    fn rejects_truncated_and_padded_blobs() {
        let mut bytes = Vec::new();
        Raw.save(&vec![1u16, 2, 3], &mut bytes).unwrap();
        let err = Cacher::<Vec<u16>>::load(&Raw, &mut &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("shorter"));
        bytes.push(0);
        let err = Cacher::<Vec<u16>>::load(&Raw, &mut bytes.as_slice()).unwrap_err();
        assert!(err.to_string().contains("longer"));
    }
}
