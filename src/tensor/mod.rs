//! Datatypes, the host-side tensor that travels between the wire formats and the model, the
//! model's signature, and the wire formats themselves: JSON (`json`, with a fast path for
//! plain nested lists of floats, `fast_json`), raw little-endian bytes (`binary`), and PNG
//! or JPEG images for an image model's input (`image`); class labels and the top classes of
//! an output (`labels`).
//!
//! Nothing here knows tract or HTTP: `engine` converts these tensors to and from tract's
//! own, and `api` decides which tensors a request's body holds.

pub mod binary;
pub mod fast_json;
pub mod image;
pub mod json;
pub mod labels;
mod signature;

#[cfg(test)]
pub(crate) use signature::tests::spec as test_spec;
pub use signature::{
    ClassLabels, Dim, Signature, TensorDescription, TensorSpec, check_tensor, describe_all,
};

use half::f16;
use std::fmt;

/// The datatypes a model input or output can have, named as the Open Inference Protocol
/// (KServe V2 / Triton) names them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    /// Variable-length strings (tract's `String`; ONNX `STRING`).
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol name: `"FP32"`, `"INT64"`, `"BYTES"`...
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn from_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|dt| dt.name() == name)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::Fp16 | DataType::Fp32 | DataType::Fp64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor, one vector per datatype, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<String>),
}

/// Runs `$body` with `$v` bound to the vector inside any `TensorData`, whatever its type.
#[macro_export]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::Uint8($v) => $body,
            $crate::tensor::TensorData::Uint16($v) => $body,
            $crate::tensor::TensorData::Uint32($v) => $body,
            $crate::tensor::TensorData::Uint64($v) => $body,
            $crate::tensor::TensorData::Int8($v) => $body,
            $crate::tensor::TensorData::Int16($v) => $body,
            $crate::tensor::TensorData::Int32($v) => $body,
            $crate::tensor::TensorData::Int64($v) => $body,
            $crate::tensor::TensorData::Fp16($v) => $body,
            $crate::tensor::TensorData::Fp32($v) => $body,
            $crate::tensor::TensorData::Fp64($v) => $body,
            $crate::tensor::TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s elements, or gives back `other` when its datatype differs.
    pub fn append(&mut self, other: TensorData) -> Result<(), TensorData> {
        macro_rules! same_type {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => a.extend(b),)*
                    (_, other) => return Err(other),
                }
            };
        }
        same_type!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes
        );
        Ok(())
    }
}

/// A tensor on the host: a shape and its elements in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, String> {
        let expected = element_count(&shape)
            .ok_or_else(|| format!("shape {} has too many elements", format_shape(&shape)))?;
        if expected != data.len() {
            return Err(format!(
                "shape {} needs {expected} elements, got {}",
                format_shape(&shape),
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Stacks `other` under this tensor along the first dimension. The caller has checked
    /// that both have the same datatype and the same shape past the first dimension.
    pub fn append_rows(&mut self, other: Tensor) {
        debug_assert_eq!(self.shape.get(1..), other.shape.get(1..));
        let rows = other.shape.first().copied().unwrap_or(1);
        if self.data.append(other.data).is_ok()
            && let Some(first) = self.shape.first_mut()
        {
            *first += rows;
        }
    }

    /// Splits along the first dimension into parts of `counts` rows each (the counts add up
    /// to the first dimension).
    pub fn split_rows(self, counts: &[usize]) -> Vec<Tensor> {
        let inner = self.shape.get(1..).unwrap_or_default().to_vec();
        let row_len: usize = inner.iter().product();
        let shape_of = |rows: usize| {
            let mut shape = Vec::with_capacity(inner.len() + 1);
            shape.push(rows);
            shape.extend_from_slice(&inner);
            shape
        };
        macro_rules! split_each {
            ($($variant:ident),*) => {
                match self.data {
                    $(TensorData::$variant(mut values) => {
                        // Split from the end, so each part is moved out once.
                        let mut parts: Vec<Tensor> = counts
                            .iter()
                            .rev()
                            .map(|&rows| {
                                let start = values.len().saturating_sub(rows * row_len);
                                let part = values.split_off(start);
                                Tensor { shape: shape_of(rows), data: TensorData::$variant(part) }
                            })
                            .collect();
                        parts.reverse();
                        parts
                    })*
                }
            };
        }
        split_each!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes
        )
    }
}

/// The number of elements of a shape, or `None` when it overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// `[2, 64]`: how shapes are written in messages.
pub fn format_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}
