//! A fast path for the most common request: one floating-point input sent as a plain nested
//! list of numbers (`{"inputs": [[0.1, 0.2, ...], ...]}`). An image of 150,000 numbers costs
//! serde's per-element visitor calls about as much as the model; this scanner reads the
//! numbers straight into the element vector in one pass.
//!
//! It reads in two steps: the list text is cut into tokens (`[`, `]`, `,`, and a run of
//! numbers that fills one innermost list, pushed straight into the element vector), then the
//! few tokens are checked for a regular nesting, which gives the shape. The first step needs
//! no context, so a large body is cut at `[`s into parts that are read on several threads
//! at once, when the caller has cores to spare.
//!
//! It accepts only what it can decode exactly as the general decoder (`json.rs`) would, and
//! gives up (`None`) on anything else — another key, a string, `null`, a ragged or empty
//! list, a number out of range — so that the general decoder runs from the start and gives
//! its usual answer or error. Giving up costs the part scanned so far.

use super::TensorSpec;
use super::{DataType, Tensor, TensorData};
use std::thread;

/// A part read on a thread of its own is at least this long: below it, starting the thread
/// (tens of microseconds) costs more than reading half the part saves.
const MIN_PART_BYTES: usize = 256 * 1024;

/// Decodes a `/predict` body of exactly `{"inputs": <nested list of numbers>}` for a model
/// with one FP32 or FP64 input; `None` for any other body. A body of a few hundred KiB or
/// more is read on up to `threads` threads.
pub fn decode_predict_body(spec: &TensorSpec, body: &[u8], threads: usize) -> Option<Tensor> {
    decode_in_parts(spec, body, threads, MIN_PART_BYTES)
}

/// `decode_predict_body` with parts as short as `min_part_bytes`: the tests and the fuzzer
/// cut small bodies, to check that the parts join up exactly.
#[doc(hidden)]
pub fn decode_in_parts(
    spec: &TensorSpec,
    body: &[u8],
    threads: usize,
    min_part_bytes: usize,
) -> Option<Tensor> {
    let mut scanner = Scanner { bytes: body, at: 0 };
    scanner.expect(b'{')?;
    scanner.expect_key(b"inputs")?;
    let max_rank = spec.shape.len() + 1;
    let (tensor, end) = match spec.datatype {
        DataType::Fp32 => {
            let (shape, values, end) =
                nested::<f32>(body, scanner.at, max_rank, threads, min_part_bytes)?;
            (Tensor::new(shape, TensorData::Fp32(values)).ok()?, end)
        }
        DataType::Fp64 => {
            let (shape, values, end) =
                nested::<f64>(body, scanner.at, max_rank, threads, min_part_bytes)?;
            (Tensor::new(shape, TensorData::Fp64(values)).ok()?, end)
        }
        _ => return None,
    };
    scanner.at = end;
    scanner.expect(b'}')?;
    scanner.skip_whitespace();
    (scanner.at == body.len()).then_some(tensor)
}

/// A nested list of numbers starting at `start`, read in parts as `part_bounds` cuts it
/// (one thread each), at most `max_rank` deep, every list at a depth of the same length: its
/// shape, its elements in row-major order, and where it ends.
fn nested<E: FastFloat>(
    body: &[u8],
    start: usize,
    max_rank: usize,
    threads: usize,
    min_part_bytes: usize,
) -> Option<(Vec<usize>, Vec<E>, usize)> {
    let bounds = part_bounds(body, start, threads, min_part_bytes);
    let last = bounds.len() - 2;
    let read = |part: usize| {
        let (from, to) = (bounds[part], bounds[part + 1]);
        // The first part makes room for every element, so that the others append to it.
        let reserve_to = if part == 0 { body.len() } else { to };
        Scanner {
            bytes: body,
            at: from,
        }
        .tokens::<E>(to, part == last, reserve_to)
    };
    let parts: Vec<Option<Part<E>>> = if last == 0 {
        vec![read(0)]
    } else {
        thread::scope(|scope| {
            let others: Vec<_> = (1..=last)
                .map(|part| thread::Builder::new().spawn_scoped(scope, move || read(part)))
                .collect();
            let mut parts = vec![read(0)];
            for (part, spawned) in (1..=last).zip(others) {
                // A thread that could not be started leaves its part to this one.
                parts.push(match spawned {
                    Ok(handle) => handle.join().ok().flatten(),
                    Err(_) => read(part),
                });
            }
            parts
        })
    };
    let parts = parts.into_iter().collect::<Option<Vec<Part<E>>>>()?;
    let shape = shape_of(parts.iter().flat_map(|part| &part.tokens), max_rank)?;
    let mut parts = parts.into_iter();
    let Part {
        mut values,
        mut end,
        ..
    } = parts.next()?;
    for part in parts {
        values.extend_from_slice(&part.values);
        end = part.end;
    }
    Some((shape, values, end))
}

/// Where the list text from `start` is cut into parts: `[start, cut, ..., body.len()]`, each
/// cut at a `[` (no number or row of numbers spans one), as many parts as `threads` allows
/// and the body is long enough for.
fn part_bounds(body: &[u8], start: usize, threads: usize, min_part_bytes: usize) -> Vec<usize> {
    let len = body.len().saturating_sub(start);
    let parts = threads.min(len / min_part_bytes.max(1)).max(1);
    let mut bounds = vec![start];
    for part in 1..parts {
        let aim = start + part * len / parts;
        let after = *bounds.last().unwrap_or(&start) + 1;
        let from = aim.max(after);
        if let Some(open) = body
            .get(from..)
            .and_then(|t| t.iter().position(|&b| b == b'['))
        {
            bounds.push(from + open);
        }
    }
    bounds.push(body.len());
    bounds
}

/// One part of the list text, read: its tokens and its numbers.
struct Part<E> {
    tokens: Vec<Token>,
    values: Vec<E>,
    /// Where reading stopped: the end of the part, or for the last part the first byte that
    /// is not list text.
    end: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    /// The numbers of one innermost list: how many.
    Numbers(usize),
}

/// The shape of a regular nesting of lists, with numbers only in the innermost lists and at
/// most `max_rank` deep; `None` for anything else (an empty, ragged or unclosed list,
/// anything after the outermost list closes).
fn shape_of<'t>(tokens: impl Iterator<Item = &'t Token>, max_rank: usize) -> Option<Vec<usize>> {
    let mut tokens = tokens.peekable();
    // The rank is the depth of the first number; lengths are checked as lists close.
    let mut rank = 0;
    while tokens.next_if_eq(&&Token::Open).is_some() {
        rank += 1;
    }
    if rank == 0 || rank > max_rank {
        return None;
    }
    let mut dims: Vec<Option<usize>> = vec![None; rank];
    let mut lengths = vec![0usize; rank];
    let mut depth = rank;
    // Just after a `[` or a `,`: an element must come next.
    let mut want_element = true;
    for token in tokens {
        if depth == 0 {
            return None;
        }
        match *token {
            Token::Open if want_element && depth < rank => depth += 1,
            Token::Numbers(count) if want_element && depth == rank => {
                lengths[rank - 1] = count;
                want_element = false;
            }
            Token::Comma if !want_element => want_element = true,
            Token::Close if !want_element => {
                // Close the list at `depth - 1`.
                let d = depth - 1;
                match dims[d] {
                    None => dims[d] = Some(lengths[d]),
                    Some(n) if n != lengths[d] => return None,
                    Some(_) => {}
                }
                lengths[d] = 0;
                depth -= 1;
                if depth > 0 {
                    lengths[depth - 1] += 1;
                }
            }
            _ => return None,
        }
    }
    (depth == 0).then(|| dims.iter().map(|d| d.unwrap_or(0)).collect())
}

/// An element the scanner can produce from a finite f64, as `json.rs` does.
trait FastFloat: Copy + Send {
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

    /// Reads list text up to `to`, which is a `[` or the end of the body; the last part
    /// stops at the first byte that is not list text. `reserve_to` bounds the text whose
    /// numbers its vector makes room for once the first row shows how long a number is.
    fn tokens<E: FastFloat>(mut self, to: usize, last: bool, reserve_to: usize) -> Option<Part<E>> {
        let from = self.at;
        let mut tokens = Vec::new();
        let mut values: Vec<E> = Vec::new();
        loop {
            self.skip_whitespace();
            if self.at >= to {
                break;
            }
            let token = match self.bytes[self.at] {
                b'[' => Token::Open,
                b']' => Token::Close,
                b',' => Token::Comma,
                b'-' | b'0'..=b'9' => {
                    let count = self.row(&mut values)?;
                    if values.len() == count {
                        // One allocation instead of a doubling series.
                        let per_value = (self.at - from) / count;
                        values.reserve(reserve_to.saturating_sub(self.at) / per_value.max(1));
                    }
                    tokens.push(Token::Numbers(count));
                    continue;
                }
                _ if last => break,
                _ => return None,
            };
            tokens.push(token);
            self.at += 1;
        }
        Some(Part {
            tokens,
            values,
            end: self.at,
        })
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
    use crate::tensor::Dim;

    fn spec(datatype: DataType, rank: usize) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: (0..rank).map(|_| Dim::Symbolic("n".into())).collect(),
            map_keys: None,
        }
    }

    /// The fast path's answer, the same whether it reads the body in one part or cut into
    /// parts as small as a byte, on up to four threads.
    fn fast(datatype: DataType, rank: usize, body: &str) -> Option<Tensor> {
        let spec = spec(datatype, rank);
        let whole = decode_predict_body(&spec, body.as_bytes(), 1);
        for threads in 2..=4 {
            let parts = decode_in_parts(&spec, body.as_bytes(), threads, 1);
            assert_eq!(parts, whole, "{body} in up to {threads} parts");
        }
        whole
    }

    /// What the general decoder (`json::TensorSeed`, as `/predict` uses it) makes of the
    /// text of the same body's `inputs`.
    fn general(datatype: DataType, rank: usize, body: &str) -> Tensor {
        use serde::de::DeserializeSeed;
        #[derive(serde::Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            inputs: &'a serde_json::value::RawValue,
        }
        let spec = spec(datatype, rank);
        let body: Body = serde_json::from_str(body).unwrap();
        let mut de = serde_json::Deserializer::from_str(body.inputs.get());
        crate::tensor::json::TensorSeed { spec: &spec }
            .deserialize(&mut de)
            .unwrap()
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

    #[test]
    fn a_large_body_is_cut_at_brackets_and_read_in_parts_as_one() {
        // 3 x 50 x 40 numbers in every form the number reader knows.
        let mut rows = Vec::new();
        let mut n: u64 = 12345;
        for _ in 0..150 {
            let row: Vec<String> = (0..40)
                .map(|_| {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let mantissa = (n >> 40) as i64 - (1 << 23);
                    match n % 4 {
                        0 => format!("{mantissa}"),
                        1 => format!("{}", mantissa as f64 / 1e6),
                        2 => format!("{mantissa}e-12"),
                        _ => format!(" {}E3 ", mantissa as f32 / 7.0),
                    }
                })
                .collect();
            rows.push(format!("[{}]", row.join(",")));
        }
        let planes: Vec<String> = rows
            .chunks(50)
            .map(|p| format!("[{}]", p.join(",\n")))
            .collect();
        let body = format!("{{\"inputs\": [{}]}}", planes.join(", "));
        let spec = spec(DataType::Fp32, 2);
        let cuts = part_bounds(body.as_bytes(), 10, 4, 1);
        assert_eq!(cuts.len(), 5, "four parts");
        assert!(cuts[1..4].iter().all(|&at| body.as_bytes()[at] == b'['));
        let expected = general(DataType::Fp32, 2, &body);
        assert_eq!(expected.shape, vec![3, 50, 40]);
        for (threads, min_part_bytes) in [(1, 1), (2, 1), (4, 1), (7, 1000)] {
            let parts = decode_in_parts(&spec, body.as_bytes(), threads, min_part_bytes);
            assert_eq!(parts.as_ref(), Some(&expected), "{threads} threads");
        }
    }
}
