//! JSON <-> tensors.
//!
//! Decoding goes from the request bytes straight into the typed element vector: a serde
//! `DeserializeSeed` walks the nested arrays, records the length seen at each depth (so
//! ragged arrays are refused) and converts each number to the input's datatype, refusing
//! values that do not fit it. No `serde_json::Value` tree is built for tensor data.
//!
//! Encoding writes nested arrays directly into a byte buffer. Floats that are not finite
//! travel as the strings `"NaN"`, `"Infinity"` and `"-Infinity"` both ways, so the output is
//! always valid JSON. A BYTES element may also be sent as TF-Serving's `{"b64": "..."}`.

use super::{ClassLabels, DataType, Dim, Tensor, TensorData, TensorSpec};
use half::f16;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Runs `$body` with `$E` bound to the Rust element type of a datatype.
macro_rules! with_element_type {
    ($dt:expr, $E:ident => $body:expr) => {
        match $dt {
            DataType::Bool => {
                type $E = bool;
                $body
            }
            DataType::Uint8 => {
                type $E = u8;
                $body
            }
            DataType::Uint16 => {
                type $E = u16;
                $body
            }
            DataType::Uint32 => {
                type $E = u32;
                $body
            }
            DataType::Uint64 => {
                type $E = u64;
                $body
            }
            DataType::Int8 => {
                type $E = i8;
                $body
            }
            DataType::Int16 => {
                type $E = i16;
                $body
            }
            DataType::Int32 => {
                type $E = i32;
                $body
            }
            DataType::Int64 => {
                type $E = i64;
                $body
            }
            DataType::Fp16 => {
                type $E = f16;
                $body
            }
            DataType::Fp32 => {
                type $E = f32;
                $body
            }
            DataType::Fp64 => {
                type $E = f64;
                $body
            }
            DataType::Bytes => {
                type $E = String;
                $body
            }
        }
    };
}

/// One JSON scalar, as the parser hands it over.
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'a> {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    Null,
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Unsigned(v) => write!(f, "{v}"),
            Scalar::Signed(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Str(s) if s.len() > 40 => write!(f, "a string of {} bytes", s.len()),
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Null => f.write_str("null"),
        }
    }
}

/// A Rust element type that a JSON scalar converts to, exactly or not at all.
pub trait Element: Sized {
    const DATATYPE: DataType;
    fn from_scalar(value: Scalar<'_>) -> Result<Self, String>;
    fn into_data(values: Vec<Self>) -> TensorData;
}

fn not_a(expected: &str, datatype: DataType, value: Scalar<'_>) -> String {
    format!("expected {expected} for {datatype}, got {value}")
}

macro_rules! integer_element {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn from_scalar(value: Scalar<'_>) -> Result<Self, String> {
                let out_of_range = || {
                    format!(
                        "{value} is out of range for {} ({} to {})",
                        DataType::$dt,
                        <$t>::MIN,
                        <$t>::MAX
                    )
                };
                match value {
                    Scalar::Unsigned(v) => <$t>::try_from(v).map_err(|_| out_of_range()),
                    Scalar::Signed(v) => <$t>::try_from(v).map_err(|_| out_of_range()),
                    // 3.0 is accepted as 3; 1.5 is not silently truncated. Above 2^53 a
                    // float no longer holds every integer, so it cannot be taken as exact.
                    Scalar::Float(v) if v.fract() != 0.0 || !v.is_finite() => Err(format!(
                        "{value} is not an integer, and the input is {}",
                        DataType::$dt
                    )),
                    Scalar::Float(v) if v.abs() <= 9_007_199_254_740_992.0 => {
                        <$t>::try_from(v as i64).map_err(|_| out_of_range())
                    }
                    Scalar::Float(_) => Err(format!(
                        "{value} is too large to be an exact integer; write it without a \
                         fraction or exponent"
                    )),
                    other => Err(not_a("a number", DataType::$dt, other)),
                }
            }
            fn into_data(values: Vec<Self>) -> TensorData {
                TensorData::$dt(values)
            }
        }
    };
}

integer_element!(u8, Uint8);
integer_element!(u16, Uint16);
integer_element!(u32, Uint32);
integer_element!(u64, Uint64);
integer_element!(i8, Int8);
integer_element!(i16, Int16);
integer_element!(i32, Int32);
integer_element!(i64, Int64);

/// "NaN", "Infinity", "-Infinity" (and the usual spellings of them), case-insensitive.
fn non_finite(s: &str) -> Option<f64> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let value = if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// The value as a float, before narrowing to the element type.
fn float_value(value: Scalar<'_>, datatype: DataType) -> Result<f64, String> {
    match value {
        Scalar::Unsigned(v) => Ok(v as f64),
        Scalar::Signed(v) => Ok(v as f64),
        Scalar::Float(v) => Ok(v),
        Scalar::Str(s) => non_finite(s).ok_or_else(|| {
            format!(
                "expected a number for {datatype}, got {value} (the only strings accepted \
                 are \"NaN\", \"Infinity\" and \"-Infinity\")"
            )
        }),
        other => Err(not_a("a number", datatype, other)),
    }
}

macro_rules! float_element {
    ($t:ty, $dt:ident, $from_f64:expr) => {
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn from_scalar(value: Scalar<'_>) -> Result<Self, String> {
                let v = float_value(value, DataType::$dt)?;
                let narrowed: $t = $from_f64(v);
                // A finite number that becomes infinite does not fit; precision loss is
                // the nature of floats and is accepted.
                if v.is_finite() && !narrowed.is_finite() {
                    return Err(format!("{value} is out of range for {}", DataType::$dt));
                }
                Ok(narrowed)
            }
            fn into_data(values: Vec<Self>) -> TensorData {
                TensorData::$dt(values)
            }
        }
    };
}

float_element!(f16, Fp16, f16::from_f64);
float_element!(f32, Fp32, |v: f64| v as f32);
float_element!(f64, Fp64, |v: f64| v);

impl Element for bool {
    const DATATYPE: DataType = DataType::Bool;
    fn from_scalar(value: Scalar<'_>) -> Result<Self, String> {
        match value {
            Scalar::Bool(b) => Ok(b),
            other => Err(not_a("true or false", DataType::Bool, other)),
        }
    }
    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Bool(values)
    }
}

impl Element for String {
    const DATATYPE: DataType = DataType::Bytes;
    fn from_scalar(value: Scalar<'_>) -> Result<Self, String> {
        match value {
            Scalar::Str(s) => Ok(s.to_owned()),
            other => Err(not_a("a string", DataType::Bytes, other)),
        }
    }
    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Bytes(values)
    }
}

/// What has been learnt while walking one nested array.
struct Nested<'s, E> {
    input: &'s str,
    values: Vec<E>,
    /// `dims[d]`: the length of the arrays at depth `d`, once one of them has closed.
    dims: Vec<Option<usize>>,
    /// The depth at which scalars sit; the rank of the tensor.
    leaf_depth: Option<usize>,
    max_rank: usize,
    /// The input's declared shape, for the sizes inside empty lists.
    declared: &'s [Dim],
}

impl<'s, E: Element> Nested<'s, E> {
    fn new(spec: &'s TensorSpec) -> Self {
        Nested {
            input: &spec.name,
            values: Vec::new(),
            dims: Vec::new(),
            leaf_depth: None,
            // Lists may nest one level deeper than the input's rank, so that a request with
            // an extra dimension gets the clear shape message rather than a parse error.
            max_rank: spec.shape.len() + 1,
            declared: &spec.shape,
        }
    }

    fn error<Err: de::Error>(&self, message: impl fmt::Display) -> Err {
        Err::custom(format_args!("input '{}': {message}", self.input))
    }

    fn push_scalar<Err: de::Error>(&mut self, depth: usize, value: Scalar<'_>) -> Result<(), Err> {
        match self.leaf_depth {
            Some(d) if d != depth => return Err(self.ragged()),
            Some(_) => {}
            // An array already closed at this depth or deeper: numbers and arrays are mixed.
            None if self.dims.len() > depth => return Err(self.ragged()),
            None => self.leaf_depth = Some(depth),
        }
        let element = E::from_scalar(value).map_err(|m| self.error(m))?;
        self.values.push(element);
        Ok(())
    }

    fn close_array<Err: de::Error>(&mut self, depth: usize, len: usize) -> Result<(), Err> {
        if self.leaf_depth.is_some_and(|d| depth >= d) {
            return Err(self.ragged());
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(first) if first != len => {
                return Err(self.error(format_args!(
                    "ragged array: the lists at depth {} have different lengths ({first} and {len}); \
                     every list at the same depth must have the same length",
                    depth + 1
                )));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn ragged<Err: de::Error>(&self) -> Err {
        self.error("ragged array: numbers and lists are mixed at the same depth")
    }

    fn into_tensor<Err: de::Error>(self) -> Result<Tensor, Err> {
        let rank = self.leaf_depth.unwrap_or(self.dims.len());
        let mut shape: Vec<usize> = self.dims[..rank].iter().map(|d| d.unwrap_or(0)).collect();
        if self.leaf_depth.is_none() {
            shape = self.inside_empty_lists(shape);
        }
        Tensor::new(shape, E::into_data(self.values)).map_err(|m| Err::custom(m))
    }

    /// An empty list says nothing of the sizes inside it (`[[], [], []]` for a `[3, 0, 5]`
    /// input): they come from the input's fixed sizes, when the sizes seen agree with the
    /// declared ones and every size missing is fixed. Otherwise the shape stays as seen,
    /// for the signature check to refuse with its usual message.
    fn inside_empty_lists(&self, seen: Vec<usize>) -> Vec<usize> {
        let Some(missing) = self.declared.get(seen.len()..) else {
            return seen;
        };
        let agrees = |(&size, dim): (&usize, &Dim)| match dim {
            Dim::Fixed(n) => *n == size,
            Dim::Symbolic(_) => true,
        };
        let fixed: Option<Vec<usize>> = (missing.iter())
            .map(|dim| match dim {
                Dim::Fixed(n) => Some(*n),
                Dim::Symbolic(_) => None,
            })
            .collect();
        match fixed {
            Some(fixed) if seen.iter().zip(self.declared).all(agrees) => {
                seen.into_iter().chain(fixed).collect()
            }
            _ => seen,
        }
    }
}

/// Visits one value at one depth of the nesting.
struct NestedSeed<'a, 's, E> {
    acc: &'a mut Nested<'s, E>,
    depth: usize,
}

impl<'de, E: Element> DeserializeSeed<'de> for NestedSeed<'_, '_, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, E: Element> Visitor<'de> for NestedSeed<'_, '_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} or a nested list of them", E::DATATYPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= self.acc.max_rank {
            return Err(self.acc.error(format_args!(
                "lists nested deeper than the input's {} dimensions",
                // One extra level is let through for the clearer shape message.
                self.acc.max_rank - 1
            )));
        }
        let mut len = 0;
        while seq
            .next_element_seed(NestedSeed {
                acc: &mut *self.acc,
                depth: self.depth + 1,
            })?
            .is_some()
        {
            len += 1;
        }
        self.acc.close_array(self.depth, len)
    }

    fn visit_u64<Err: de::Error>(self, v: u64) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Unsigned(v))
    }
    fn visit_i64<Err: de::Error>(self, v: i64) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Signed(v))
    }
    fn visit_f64<Err: de::Error>(self, v: f64) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Float(v))
    }
    fn visit_str<Err: de::Error>(self, v: &str) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Str(v))
    }
    fn visit_bool<Err: de::Error>(self, v: bool) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Bool(v))
    }
    fn visit_unit<Err: de::Error>(self) -> Result<(), Err> {
        self.acc.push_scalar(self.depth, Scalar::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if E::DATATYPE == DataType::Bytes
            && map.next_key::<std::borrow::Cow<'_, str>>()?.as_deref() == Some("b64")
        {
            let text = b64_value(&mut map).map_err(|m| self.acc.error(m))?;
            return self.acc.push_scalar(self.depth, Scalar::Str(&text));
        }
        let hint = if E::DATATYPE == DataType::Bytes {
            " other than {\"b64\": \"...\"}"
        } else {
            ""
        };
        Err(self.acc.error(format_args!(
            "expected a {} or a list, got an object{hint}",
            E::DATATYPE
        )))
    }
}

/// The text of `{"b64": "..."}`, once its key has been read: the value must be the only
/// entry, standard base64, of UTF-8 text (the model's strings are text).
pub fn b64_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<String, String> {
    use base64::Engine;
    let encoded: std::borrow::Cow<'_, str> = map.next_value().map_err(|e| e.to_string())?;
    if map
        .next_key::<de::IgnoredAny>()
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("an object with \"b64\" must have no other keys".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|e| format!("\"b64\" is not valid base64: {e}"))?;
    String::from_utf8(bytes)
        .map_err(|_| "\"b64\" holds bytes that are not UTF-8 text, which the model takes".into())
}

/// Decodes one JSON value (a nested list, or a scalar for a 0-dimensional input) into a
/// tensor of the spec's datatype. The shape is the one found in the JSON; checking it
/// against the spec is the caller's job (`Signature::check_inputs`).
pub struct TensorSeed<'s> {
    pub spec: &'s TensorSpec,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_> {
    type Value = Tensor;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tensor, D::Error> {
        let spec = self.spec;
        with_element_type!(spec.datatype, E => {
            let mut acc = Nested::<E>::new(spec);
            NestedSeed { acc: &mut acc, depth: 0 }.deserialize(deserializer)?;
            acc.into_tensor()
        })
    }
}

/// Like `TensorSeed`, for a caller that has already entered the outermost list.
pub fn tensor_from_seq<'de, A: SeqAccess<'de>>(
    spec: &TensorSpec,
    seq: A,
) -> Result<Tensor, A::Error> {
    with_element_type!(spec.datatype, E => {
        let mut acc = Nested::<E>::new(spec);
        NestedSeed { acc: &mut acc, depth: 0 }.visit_seq(seq)?;
        acc.into_tensor()
    })
}

/// Like `TensorSeed`, for a caller that has already read a lone scalar.
pub fn tensor_from_scalar<Err: de::Error>(
    spec: &TensorSpec,
    value: Scalar<'_>,
) -> Result<Tensor, Err> {
    with_element_type!(spec.datatype, E => {
        let mut acc = Nested::<E>::new(spec);
        acc.push_scalar(0, value)?;
        acc.into_tensor()
    })
}

/// Writes the tensor as nested lists following its shape (a bare scalar for rank 0).
pub fn write_tensor(out: &mut Vec<u8>, tensor: &Tensor) {
    crate::with_tensor_data!(&tensor.data, values => write_nested(out, values, &tensor.shape))
}

fn write_nested<E: WriteJson>(out: &mut Vec<u8>, values: &[E], shape: &[usize]) {
    let Some((&len, inner)) = shape.split_first() else {
        if let Some(v) = values.first() {
            v.write_json(out);
        }
        return;
    };
    out.push(b'[');
    if inner.is_empty() {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
    } else {
        let stride = inner.iter().product::<usize>();
        for i in 0..len {
            if i > 0 {
                out.push(b',');
            }
            let start = (i * stride).min(values.len());
            let end = (start + stride).min(values.len());
            write_nested(out, &values[start..end], inner);
        }
    }
    out.push(b']');
}

/// Writes the `row`-th slice along the first dimension as nested lists (TF-Serving's row
/// format); a row past the end is written empty.
pub fn write_row(out: &mut Vec<u8>, tensor: &Tensor, row: usize) {
    let Some((_, inner)) = tensor.shape.split_first() else {
        return;
    };
    let stride = inner.iter().product::<usize>();
    crate::with_tensor_data!(&tensor.data, values => {
        let start = row.saturating_mul(stride).min(values.len());
        let end = start.saturating_add(stride).min(values.len());
        write_nested(out, &values[start..end], inner)
    })
}

/// Writes a ZipMap output as onnxruntime's Python API gives it: one object per row, class
/// label to probability (an int64 label as its decimal text), or one object for a tensor
/// of rank 1.
pub fn write_class_maps(out: &mut Vec<u8>, tensor: &Tensor, labels: &ClassLabels) {
    match tensor.shape.len() {
        1 => write_class_map(out, tensor, labels, 0),
        _ => {
            let rows = tensor.shape.first().copied().unwrap_or(0);
            out.push(b'[');
            for row in 0..rows {
                if row > 0 {
                    out.push(b',');
                }
                write_class_map(out, tensor, labels, row);
            }
            out.push(b']');
        }
    }
}

/// The `row`-th row of a ZipMap output as one object, label to probability.
pub fn write_class_map(out: &mut Vec<u8>, tensor: &Tensor, labels: &ClassLabels, row: usize) {
    let width = tensor.shape.last().copied().unwrap_or(0);
    let start = row.saturating_mul(width);
    out.push(b'{');
    crate::with_tensor_data!(&tensor.data, values => {
        let row = values.get(start..start + width).unwrap_or_default();
        for (column, value) in row.iter().enumerate() {
            if column > 0 {
                out.push(b',');
            }
            match labels {
                ClassLabels::Int64(labels) => {
                    let label = labels.get(column).copied().unwrap_or(column as i64);
                    out.push(b'"');
                    out.extend_from_slice(itoa::Buffer::new().format(label).as_bytes());
                    out.push(b'"');
                }
                ClassLabels::Strings(labels) => {
                    let label = labels.get(column).map_or("", String::as_str);
                    write_json_string(out, label);
                }
            }
            out.push(b':');
            value.write_json(out);
        }
    });
    out.push(b'}');
}

/// Writes the elements flat, as one list: the V2 protocol's `data` layout.
pub fn write_flat(out: &mut Vec<u8>, tensor: &Tensor) {
    crate::with_tensor_data!(&tensor.data, values => write_nested(out, values, &[values.len()]))
}

/// An element that knows how to write itself as JSON.
pub trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

macro_rules! write_integer {
    ($($t:ty),*) => {$(
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
write_integer!(u8, u16, u32, u64, i8, i16, i32, i64);

fn write_float<F: zmij::Float + Copy>(
    out: &mut Vec<u8>,
    v: F,
    is_nan: bool,
    is_finite: bool,
    positive: bool,
) {
    if is_finite {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else if is_nan {
        out.extend_from_slice(b"\"NaN\"");
    } else if positive {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

impl WriteJson for f32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_float(
            out,
            *self,
            self.is_nan(),
            self.is_finite(),
            self.is_sign_positive(),
        );
    }
}

impl WriteJson for f64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_float(
            out,
            *self,
            self.is_nan(),
            self.is_finite(),
            self.is_sign_positive(),
        );
    }
}

impl WriteJson for f16 {
    fn write_json(&self, out: &mut Vec<u8>) {
        // The shortest float32 text of a float16 value reads back to the same float16.
        self.to_f32().write_json(out);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

/// Writes a JSON string literal with the escapes JSON requires.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct for every input; writing to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec never fails");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Dim;

    fn spec(datatype: DataType, rank: usize) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: (0..rank).map(|i| Dim::Symbolic(format!("d{i}"))).collect(),
            map_keys: None,
        }
    }

    fn decode(datatype: DataType, rank: usize, json: &str) -> Result<Tensor, String> {
        let spec = spec(datatype, rank);
        let mut de = serde_json::Deserializer::from_str(json);
        let tensor = TensorSeed { spec: &spec }
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(tensor)
    }

    fn encode(tensor: &Tensor) -> String {
        let mut out = Vec::new();
        write_tensor(&mut out, tensor);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nested_lists_give_shape_and_row_major_values() {
        let t = decode(DataType::Fp32, 2, "[[1, 2.5, -3], [4e0, 5, 6]]").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(
            t.data,
            TensorData::Fp32(vec![1.0, 2.5, -3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(encode(&t), "[[1.0,2.5,-3.0],[4.0,5.0,6.0]]");
    }

    #[test]
    fn ragged_lists_are_refused() {
        for json in ["[[1, 2], [3]]", "[[1], 2]", "[1, [2]]", "[[], [1]]"] {
            let err = decode(DataType::Fp32, 2, json).unwrap_err();
            assert!(err.contains("ragged"), "{json}: {err}");
        }
    }

    #[test]
    fn integers_are_exact_and_range_checked() {
        let t = decode(
            DataType::Int64,
            1,
            "[9223372036854775807, -9223372036854775808, 3.0]",
        )
        .unwrap();
        assert_eq!(t.data, TensorData::Int64(vec![i64::MAX, i64::MIN, 3]));
        assert_eq!(encode(&t), "[9223372036854775807,-9223372036854775808,3]");
        let t = decode(DataType::Uint64, 1, "[18446744073709551615]").unwrap();
        assert_eq!(encode(&t), "[18446744073709551615]");

        let err = decode(DataType::Uint8, 1, "[1, 300]").unwrap_err();
        assert!(
            err.contains("300 is out of range for UINT8 (0 to 255)"),
            "{err}"
        );
        let err = decode(DataType::Int64, 1, "[1.5]").unwrap_err();
        assert!(err.contains("1.5 is not an integer"), "{err}");
        let err = decode(DataType::Uint32, 1, "[-1]").unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        let err = decode(DataType::Int64, 1, "[1e300]").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn non_finite_floats_travel_as_strings() {
        let t = decode(DataType::Fp64, 1, r#"["NaN", "Infinity", "-Infinity", 1]"#).unwrap();
        assert_eq!(encode(&t), r#"["NaN","Infinity","-Infinity",1.0]"#);
        let err = decode(DataType::Fp32, 1, r#"["hello"]"#).unwrap_err();
        assert!(err.contains("\"NaN\""), "{err}");
        let err = decode(DataType::Fp32, 1, "[1e39]").unwrap_err();
        assert!(err.contains("out of range for FP32"), "{err}");
        let err = decode(DataType::Fp16, 1, "[70000]").unwrap_err();
        assert!(err.contains("out of range for FP16"), "{err}");
    }

    #[test]
    fn floats_round_trip_exactly() {
        let values = [0.1f32, 1.0 / 3.0, f32::MIN_POSITIVE, f32::MAX, -2.5e-38];
        let t = Tensor::new(vec![values.len()], TensorData::Fp32(values.to_vec())).unwrap();
        let back = decode(DataType::Fp32, 1, &encode(&t)).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn bools_and_strings() {
        let t = decode(DataType::Bool, 1, "[true, false]").unwrap();
        assert_eq!(encode(&t), "[true,false]");
        assert!(
            decode(DataType::Bool, 1, "[1]")
                .unwrap_err()
                .contains("true or false")
        );
        let t = decode(DataType::Bytes, 1, r#"["a\"b", "é\n"]"#).unwrap();
        assert_eq!(t.data, TensorData::Bytes(vec!["a\"b".into(), "é\n".into()]));
        assert_eq!(encode(&t), r#"["a\"b","é\n"]"#);
    }

    #[test]
    fn scalars_and_empty_lists() {
        let t = decode(DataType::Fp32, 0, "2.5").unwrap();
        assert_eq!((t.shape.clone(), encode(&t)), (vec![], "2.5".to_string()));
        let t = decode(DataType::Fp32, 2, "[[], []]").unwrap();
        assert_eq!(
            (t.shape.clone(), encode(&t)),
            (vec![2, 0], "[[],[]]".to_string())
        );
    }

    #[test]
    fn empty_lists_take_the_sizes_inside_them_from_the_declared_shape() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Fixed(3), Dim::Fixed(0), Dim::Fixed(5)],
            map_keys: None,
        };
        let decode_for = |spec: &TensorSpec, json: &str| {
            let mut de = serde_json::Deserializer::from_str(json);
            TensorSeed { spec }.deserialize(&mut de).map(|t| t.shape)
        };
        assert_eq!(decode_for(&spec, "[[], [], []]").unwrap(), [3, 0, 5]);
        // Sizes seen that disagree with the declared ones are left for the signature check.
        assert_eq!(decode_for(&spec, "[[], []]").unwrap(), [2, 0]);
        // A missing size the model leaves open cannot be told.
        let open = TensorSpec {
            shape: vec![
                Dim::Symbolic("batch".into()),
                Dim::Fixed(0),
                Dim::Symbolic("n".into()),
            ],
            ..spec.clone()
        };
        assert_eq!(decode_for(&open, "[[], []]").unwrap(), [2, 0]);
        let batch = TensorSpec {
            shape: vec![Dim::Symbolic("batch".into()), Dim::Fixed(0), Dim::Fixed(5)],
            ..spec
        };
        assert_eq!(decode_for(&batch, "[[], []]").unwrap(), [2, 0, 5]);
        assert_eq!(decode_for(&batch, "[]").unwrap(), [0, 0, 5]);
    }

    #[test]
    fn nesting_deeper_than_the_rank_allows_is_refused_without_recursing() {
        let deep = "[".repeat(100_000);
        let err = decode(DataType::Fp32, 2, &deep).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn bytes_may_come_as_b64_objects() {
        let t = decode(DataType::Bytes, 1, r#"[{"b64": "aMOpbGxv"}, "plain"]"#).unwrap();
        assert_eq!(
            t.data,
            TensorData::Bytes(vec!["héllo".into(), "plain".into()])
        );
        let t = decode(DataType::Bytes, 0, r#"{"b64": ""}"#).unwrap();
        assert_eq!(t.data, TensorData::Bytes(vec!["".into()]));
        for (json, expected) in [
            (r#"[{"b64": "!!"}]"#, "not valid base64"),
            (r#"[{"b64": "/w=="}]"#, "not UTF-8"),
            (r#"[{"b64": "YQ==", "x": 1}]"#, "no other keys"),
            (r#"[{"text": "a"}]"#, "other than {\"b64\""),
            (r#"[{"b64": 5}]"#, "invalid type"),
        ] {
            let err = decode(DataType::Bytes, 1, json).unwrap_err();
            assert!(
                err.contains("input 'x'") && err.contains(expected),
                "{json}: {err}"
            );
        }
        let err = decode(DataType::Fp32, 1, r#"[{"b64": "YQ=="}]"#).unwrap_err();
        assert!(err.contains("got an object"), "{err}");
    }

    #[test]
    fn rows_are_slices_along_the_first_dimension() {
        let t = Tensor::new(vec![3, 2], TensorData::Int32(vec![1, 2, 3, 4, 5, 6])).unwrap();
        let row = |i| {
            let mut out = Vec::new();
            write_row(&mut out, &t, i);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            (row(0), row(2), row(3)),
            ("[1,2]".into(), "[5,6]".into(), "[]".into())
        );
    }

    #[test]
    fn null_and_objects_are_refused() {
        assert!(
            decode(DataType::Fp32, 1, "[null]")
                .unwrap_err()
                .contains("got null")
        );
        assert!(
            decode(DataType::Fp32, 1, "[{}]")
                .unwrap_err()
                .contains("object")
        );
    }
}
