//! Raw tensor bytes <-> tensors: the Open Inference Protocol's binary tensor data extension.
//!
//! Elements are little-endian, row-major, with no padding; BOOL is one byte (0 or 1) and
//! BYTES is each element's length as a 4-byte little-endian unsigned integer followed by
//! its bytes. Sizes come from the client, so every length is checked against the bytes
//! actually there before anything is sliced or allocated.

use super::{DataType, TensorData};
use half::f16;

/// A fixed-size element and its little-endian bytes.
trait LittleEndian: Sized {
    const SIZE: usize;
    /// `bytes` is exactly `SIZE` long (`chunks_exact`).
    fn from_le(bytes: &[u8]) -> Self;
    fn write_le(&self, out: &mut Vec<u8>);
}

macro_rules! little_endian {
    ($($t:ty),*) => {$(
        impl LittleEndian for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                let mut array = [0u8; std::mem::size_of::<$t>()];
                array.copy_from_slice(bytes);
                <$t>::from_le_bytes(array)
            }
            fn write_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
little_endian!(u8, u16, u32, u64, i8, i16, i32, i64, f16, f32, f64);

fn decode_fixed<E: LittleEndian>(bytes: &[u8], datatype: DataType) -> Result<Vec<E>, String> {
    if !bytes.len().is_multiple_of(E::SIZE) {
        return Err(format!(
            "{} bytes of binary data is not a whole number of {datatype} elements ({} bytes each)",
            bytes.len(),
            E::SIZE
        ));
    }
    Ok(bytes.chunks_exact(E::SIZE).map(E::from_le).collect())
}

fn decode_bools(bytes: &[u8]) -> Result<Vec<bool>, String> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!(
                "BOOL element {i} is the byte {other}; binary BOOL elements are 0 or 1"
            )),
        })
        .collect()
}

fn decode_strings(mut bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut strings = Vec::new();
    while !bytes.is_empty() {
        let i = strings.len();
        let Some((prefix, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!(
                "BYTES element {i} is cut off: its 4-byte length has only {} bytes",
                bytes.len()
            ));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > rest.len() {
            return Err(format!(
                "BYTES element {i} declares {len} bytes but only {} are left",
                rest.len()
            ));
        }
        let (text, rest) = rest.split_at(len);
        let text = std::str::from_utf8(text).map_err(|e| {
            format!("BYTES element {i} is not valid UTF-8 ({e}); the model takes text")
        })?;
        strings.push(text.to_owned());
        bytes = rest;
    }
    Ok(strings)
}

/// Decodes the binary data of one tensor of `datatype`. The element count is whatever the
/// bytes hold; checking it against the shape is the caller's job.
pub fn decode(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(decode_bools(bytes)?),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Uint16 => TensorData::Uint16(decode_fixed(bytes, datatype)?),
        DataType::Uint32 => TensorData::Uint32(decode_fixed(bytes, datatype)?),
        DataType::Uint64 => TensorData::Uint64(decode_fixed(bytes, datatype)?),
        DataType::Int8 => TensorData::Int8(decode_fixed(bytes, datatype)?),
        DataType::Int16 => TensorData::Int16(decode_fixed(bytes, datatype)?),
        DataType::Int32 => TensorData::Int32(decode_fixed(bytes, datatype)?),
        DataType::Int64 => TensorData::Int64(decode_fixed(bytes, datatype)?),
        DataType::Fp16 => TensorData::Fp16(decode_fixed(bytes, datatype)?),
        DataType::Fp32 => TensorData::Fp32(decode_fixed(bytes, datatype)?),
        DataType::Fp64 => TensorData::Fp64(decode_fixed(bytes, datatype)?),
        DataType::Bytes => TensorData::Bytes(decode_strings(bytes)?),
    })
}

/// The number of bytes `encode` writes for `data`.
pub fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|s| 4 + s.len()).sum(),
        // Every other element's binary form is its size in memory (a bool is one byte).
        fixed => crate::with_tensor_data!(fixed, v => std::mem::size_of_val(v.as_slice())),
    }
}

/// Appends the binary form of `data` to `out`.
pub fn encode(out: &mut Vec<u8>, data: &TensorData) {
    out.reserve(encoded_len(data));
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Uint16(v) => write_all(out, v),
        TensorData::Uint32(v) => write_all(out, v),
        TensorData::Uint64(v) => write_all(out, v),
        TensorData::Int8(v) => write_all(out, v),
        TensorData::Int16(v) => write_all(out, v),
        TensorData::Int32(v) => write_all(out, v),
        TensorData::Int64(v) => write_all(out, v),
        TensorData::Fp16(v) => write_all(out, v),
        TensorData::Fp32(v) => write_all(out, v),
        TensorData::Fp64(v) => write_all(out, v),
        TensorData::Bytes(v) => {
            for s in v {
                // Our strings come from tract or from requests under --max-body, far below 4 GiB.
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

fn write_all<E: LittleEndian>(out: &mut Vec<u8>, values: &[E]) {
    for v in values {
        v.write_le(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: TensorData) {
        let mut bytes = Vec::new();
        encode(&mut bytes, &data);
        assert_eq!(bytes.len(), encoded_len(&data));
        assert_eq!(decode(data.datatype(), &bytes).unwrap(), data);
    }

    #[test]
    fn every_datatype_round_trips() {
        round_trip(TensorData::Bool(vec![true, false, true]));
        round_trip(TensorData::Uint8(vec![0, 255]));
        round_trip(TensorData::Uint16(vec![0, u16::MAX]));
        round_trip(TensorData::Uint32(vec![0, u32::MAX]));
        round_trip(TensorData::Uint64(vec![0, u64::MAX]));
        round_trip(TensorData::Int8(vec![i8::MIN, i8::MAX]));
        round_trip(TensorData::Int16(vec![i16::MIN, i16::MAX]));
        round_trip(TensorData::Int32(vec![i32::MIN, i32::MAX]));
        round_trip(TensorData::Int64(vec![i64::MIN, i64::MAX]));
        round_trip(TensorData::Fp16(vec![f16::from_f32(0.5), f16::MAX]));
        round_trip(TensorData::Fp32(vec![0.1, f32::MIN_POSITIVE, -0.0]));
        round_trip(TensorData::Fp64(vec![1e-300, f64::MAX]));
        round_trip(TensorData::Bytes(vec!["".into(), "é\0x".into()]));
    }

    #[test]
    fn the_layout_is_little_endian_with_length_prefixed_strings() {
        let mut bytes = Vec::new();
        encode(&mut bytes, &TensorData::Fp32(vec![1.0]));
        assert_eq!(bytes, [0, 0, 0x80, 0x3f]);
        bytes.clear();
        encode(&mut bytes, &TensorData::Bytes(vec!["ab".into()]));
        assert_eq!(bytes, [2, 0, 0, 0, b'a', b'b']);
        bytes.clear();
        encode(&mut bytes, &TensorData::Bool(vec![true, false]));
        assert_eq!(bytes, [1, 0]);
    }

    #[test]
    fn lying_or_broken_bytes_are_errors_not_panics() {
        let err = decode(DataType::Fp32, &[0; 7]).unwrap_err();
        assert!(
            err.contains("7 bytes") && err.contains("FP32 elements (4 bytes each)"),
            "{err}"
        );
        let err = decode(DataType::Bool, &[0, 1, 2]).unwrap_err();
        assert!(err.contains("element 2 is the byte 2"), "{err}");
        // A length of 4 GiB with three bytes behind it: refused before any allocation.
        let err = decode(DataType::Bytes, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap_err();
        assert!(
            err.contains("declares 4294967295 bytes but only 3"),
            "{err}"
        );
        let err = decode(DataType::Bytes, &[1, 0, 0, 0, b'a', 9]).unwrap_err();
        assert!(err.contains("element 1 is cut off"), "{err}");
        let err = decode(DataType::Bytes, &[1, 0, 0, 0, 0xff]).unwrap_err();
        assert!(err.contains("not valid UTF-8"), "{err}");
        assert_eq!(
            decode(DataType::Int64, &[]).unwrap(),
            TensorData::Int64(vec![])
        );
    }
}
