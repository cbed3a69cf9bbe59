//! A fast path for the most common request: one floating-point input sent as a plain nested
//! list of numbers (`{"inputs": [[0.1, 0.2, ...], ...]}`). An image of 150,000 numbers costs
//! serde's per-element visitor calls about as much as the model; this scanner reads the
//! numbers straight into the element vector in one pass.
//!
//! It accepts only what it can decode exactly as the general decoder (`json.rs`) would, and
//! gives up (`None`) on anything else — another key, a string, `null`, a ragged or empty
//! list, a number out of range — so that the general decoder runs from the start and gives
//! its usual answer or error. Giving up costs the part scanned so far.

use super::{DataType, Tensor, TensorData};
use crate::signature::TensorSpec;

/// Decodes a `/predict` body of exactly `{"inputs": <nested list of numbers>}` for a model
/// with one FP32 or FP64 input; `None` for any other body.
pub fn decode_predict_body(spec: &TensorSpec, body: &[u8]) -> Option<Tensor> {
    let mut scanner = Scanner { bytes: body, at: 0 };
    scanner.expect(b'{')?;
    scanner.expect_key(b"inputs")?;
    let tensor = match spec.datatype {
        DataType::Fp32 => {
            let (shape, values) = scanner.nested::<f32>(spec.shape.len() + 1)?;
            Tensor::new(shape, TensorData::Fp32(values)).ok()?
        }
        DataType::Fp64 => {
            let (shape, values) = scanner.nested::<f64>(spec.shape.len() + 1)?;
            Tensor::new(shape, TensorData::Fp64(values)).ok()?
        }
        _ => return None,
    };
    scanner.expect(b'}')?;
    scanner.skip_whitespace();
    (scanner.at == body.len()).then_some(tensor)
}

/// An element the scanner can produce from a finite f64, as `json.rs` does.
trait FastFloat: Copy {
    fn from_f64(v: f64) -> Option<Self>;
}

impl FastFloat for f32 {
    fn from_f64(v: f64) -> Option<f32> {
        let narrowed = v as f32;
        narrowed.is_finite().then_some(narrowed)
    }
}

impl FastFloat for f64 {
    fn from_f64(v: f64) -> Option<f64> {
        v.is_finite().then_some(v)
    }
}

struct Scanner<'b> {
    bytes: &'b [u8],
    at: usize,
}

/// Powers of ten that an f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Scanner<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `"key" :`, written plainly (no escapes).
    fn expect_key(&mut self, key: &[u8]) -> Option<()> {
        self.expect(b'"')?;
        let end = self.at + key.len();
        (self.bytes.get(self.at..end)? == key && self.bytes.get(end) == Some(&b'"'))
            .then_some(())?;
        self.at = end + 1;
        self.expect(b':')
    }

    /// A nested list of numbers, at most `max_rank` deep, every list at a depth of the same
    /// length: its shape and its elements in row-major order.
    fn nested<E: FastFloat>(&mut self, max_rank: usize) -> Option<(Vec<usize>, Vec<E>)> {
        // The rank is the depth of the first number; lengths are checked as lists close.
        let mut depth = 0;
        while self.peek()? == b'[' {
            depth += 1;
            self.at += 1;
            if depth > max_rank {
                return None;
            }
        }
        let rank = depth;
        if rank == 0 {
            return None;
        }
        let mut dims: Vec<Option<usize>> = vec![None; rank];
        let mut lengths = vec![0usize; rank];
        let mut values: Vec<E> = Vec::new();
        let mut reserved = false;
        // We are just inside `rank` open lists, at the first element of the innermost one.
        let mut depth = rank;
        loop {
            lengths[rank - 1] = self.row(&mut values)?;
            // Then the close of one or more lists.
            loop {
                // Close the list at `depth - 1`.
                self.at += 1;
                let d = depth - 1;
                match dims[d] {
                    None => dims[d] = Some(lengths[d]),
                    Some(n) if n != lengths[d] => return None,
                    Some(_) => {}
                }
                lengths[d] = 0;
                depth -= 1;
                if depth == 0 {
                    let shape: Vec<usize> = dims.iter().map(|d| d.unwrap_or(0)).collect();
                    return Some((shape, values));
                }
                lengths[depth - 1] += 1;
                if !reserved && depth == rank - 1 {
                    // The first row is done: make room for the rest at once.
                    if let Some(rows) = self.estimate_rows(dims[rank - 1]?) {
                        values.reserve(rows);
                    }
                    reserved = true;
                }
                match self.peek()? {
                    b']' => continue,
                    b',' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            // Open lists down to the innermost again.
            while depth < rank {
                self.expect(b'[')?;
                depth += 1;
            }
        }
    }

    /// The numbers of one innermost list, up to its closing `]` (left unread): how many.
    fn row<E: FastFloat>(&mut self, values: &mut Vec<E>) -> Option<usize> {
        let start = values.len();
        loop {
            values.push(E::from_f64(self.number()?)?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => return Some(values.len() - start),
                _ => return None,
            }
        }
    }

    /// A guess of the elements still to come, from the bytes left and the length of the
    /// first row, for one allocation instead of a doubling series.
    fn estimate_rows(&self, row_len: usize) -> Option<usize> {
        let per_row_bytes = self.at.max(1) / row_len.max(1);
        Some((self.bytes.len() - self.at) / per_row_bytes.max(1))
    }

    /// One JSON number as an f64, the value serde_json gives it: with at most 19 digits, a
    /// mantissa under 2^53 and a small exponent (the common case) both compute it with one
    /// exact multiplication or division; otherwise serde_json itself reads the text.
    // Inlined into the row loop: as a call per number it cost a fifth more.
    #[inline(always)]
    fn number(&mut self) -> Option<f64> {
        self.skip_whitespace();
        let start = self.at;
        let bytes = self.bytes;
        let mut at = start;
        let negative = bytes.get(at) == Some(&b'-');
        at += usize::from(negative);
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        let int_start = at;
        while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add((b - b'0') as u64);
            digits += 1;
            at += 1;
        }
        let int_digits = at - int_start;
        // JSON forbids an empty integer part and leading zeros.
        if int_digits == 0 || (int_digits > 1 && bytes[int_start] == b'0') {
            return None;
        }
        let mut exponent: i64 = 0;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            let frac_start = at;
            while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add((b - b'0') as u64);
                digits += 1;
                at += 1;
            }
            if at == frac_start {
                return None;
            }
            exponent -= (at - frac_start) as i64;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            let exp_negative = match bytes.get(at) {
                Some(b'-') => {
                    at += 1;
                    true
                }
                Some(b'+') => {
                    at += 1;
                    false
                }
                _ => false,
            };
            let exp_start = at;
            let mut e: i64 = 0;
            while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
                e = (e * 10 + (b - b'0') as i64).min(1 << 20);
                at += 1;
            }
            if at == exp_start {
                return None;
            }
            exponent += if exp_negative { -e } else { e };
        }
        self.at = at;
        if digits > 19 || mantissa >= (1 << 53) || exponent.abs() > 22 {
            return parse_exactly(&bytes[start..at]);
        }
        // The mantissa and the power of ten are exact: one rounding, the right one.
        let m = mantissa as f64;
        let value = if exponent < 0 {
            m / POW10[(-exponent) as usize]
        } else {
            m * POW10[exponent as usize]
        };
        // The sign is set without a branch: in data it is as unpredictable as a coin, and a
        // mispredicted branch per number cost a quarter of the decode time.
        Some(f64::from_bits(value.to_bits() | u64::from(negative) << 63))
    }
}

/// A number the quick computation cannot round exactly, read by serde_json itself.
#[cold]
#[inline(never)]
fn parse_exactly(text: &[u8]) -> Option<f64> {
    serde_json::from_slice::<f64>(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Dim;

    fn spec(datatype: DataType, rank: usize) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: (0..rank).map(|_| Dim::Symbolic("n".into())).collect(),
        }
    }

    fn fast(datatype: DataType, rank: usize, body: &str) -> Option<Tensor> {
        decode_predict_body(&spec(datatype, rank), body.as_bytes())
    }

    /// What the general decoder makes of the same body.
    fn general(datatype: DataType, rank: usize, body: &str) -> Tensor {
        let signature = crate::signature::Signature {
            inputs: vec![spec(datatype, rank)],
            outputs: vec![],
        };
        crate::api::simple::decode_request_general(&signature, body.as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn plain_nested_lists_decode_exactly_as_the_general_decoder_does() {
        for (rank, body) in [
            (2, r#"{"inputs": [[0.1, 0.2, 0.3], [-1.5, 2, 3e2]]}"#),
            (
                2,
                "{\n \"inputs\" :\t[ [ 0.0625 ,1E-3 ] , [ -0, 12345678901234567890 ] ] \n}\n",
            ),
            (
                1,
                r#"{"inputs":[1e-7,3.4028234e38,4.9e-324,0.30000000000000004,-1e-50]}"#,
            ),
            (3, r#"{"inputs":[[[1],[2]],[[3],[4]]]}"#),
            (
                2,
                r#"{"inputs":[[123456789.123456789, -9007199254740993, 1.00000017881393432617187499]]}"#,
            ),
        ] {
            for datatype in [DataType::Fp32, DataType::Fp64] {
                let fast = fast(datatype, rank, body).unwrap_or_else(|| panic!("{body}"));
                assert_eq!(fast, general(datatype, rank, body), "{body} as {datatype}");
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_decoder() {
        for body in [
            r#"{"inputs": [[0.1, "NaN"]]}"#,
            r#"{"inputs": [[0.1, 0.2], [0.3]]}"#,
            r#"{"inputs": [[0.1], 0.2]}"#,
            r#"{"inputs": []}"#,
            r#"{"inputs": [[]]}"#,
            r#"{"inputs": [[1e39]]}"#,
            r#"{"inputs": [[1e400]]}"#,
            r#"{"inputs": [[01]]}"#,
            r#"{"inputs": [[1.]]}"#,
            r#"{"inputs": [[.5]]}"#,
            r#"{"inputs": [[1e]]}"#,
            r#"{"inputs": [[null]]}"#,
            r#"{"inputs": [[1, 2]], "id": "x"}"#,
            r#"{"id": "x", "inputs": [[1, 2]]}"#,
            r#"{"inp\u0075ts": [[1, 2]]}"#,
            r#"{"inputs": [[[[1, 2]]]]}"#,
            r#"{"inputs": [[1, 2]]"#,
            r#"{"inputs": [[1, 2]]} x"#,
            r#"{"inputs": [[1, 2]}"#,
            r#"{"inputs": [[1 2]]}"#,
        ] {
            assert_eq!(fast(DataType::Fp32, 2, body), None, "{body}");
        }
        assert_eq!(fast(DataType::Int64, 1, r#"{"inputs": [1]}"#), None);
        assert_eq!(fast(DataType::Fp64, 1, r#"{"inputs": [1.8e308]}"#), None);
        let big = fast(DataType::Fp64, 1, r#"{"inputs": [1.7976931348623157e308]}"#);
        assert_eq!(big.unwrap().data, TensorData::Fp64(vec![f64::MAX]));
    }
}
