//! The model's signature: the names, datatypes and shapes of its inputs and outputs, and the
//! check that a request's tensors fit it.

use super::{DataType, Tensor, format_shape};
use serde::Serialize;
use std::collections::HashMap;

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A dimension the model leaves open, named by the model (`batch`, `seq`) or an
    /// expression of such names. Bound per request from the tensors sent.
    Symbolic(String),
}

impl Dim {
    /// The protocol convention: a fixed size, or -1 for a variable one.
    pub fn as_i64(&self) -> i64 {
        match self {
            Dim::Fixed(n) => *n as i64,
            Dim::Symbolic(_) => -1,
        }
    }
}

/// Name, datatype and shape of one input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<Dim>,
    /// For an output made by a ZipMap node: the class labels, in column order. The engine
    /// answers ZipMap's probabilities as an FP32 tensor [N, classes]; onnxruntime's Python
    /// API answers one map per row, label to probability.
    pub map_keys: Option<ClassLabels>,
}

/// Class labels, as ONNX-ML classifiers and ZipMap carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ClassLabels {
    Int64(Vec<i64>),
    Strings(Vec<String>),
}

impl ClassLabels {
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int64(labels) => labels.len(),
            ClassLabels::Strings(labels) => labels.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TensorSpec {
    /// The shape with -1 for variable dimensions: `[-1, 64]`.
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(Dim::as_i64).collect()
    }

    /// `[batch, 64]`: the shape as people read it, symbols by name.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Symbolic(s) => s.clone(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }

    /// True when the first dimension is variable: requests may stack several rows.
    pub fn has_batch_dim(&self) -> bool {
        matches!(self.shape.first(), Some(Dim::Symbolic(_)))
    }

    /// The JSON description used by `GET /`, `inspect` and the protocols' metadata.
    pub fn describe(&self) -> TensorDescription<'_> {
        TensorDescription {
            name: &self.name,
            datatype: self.datatype.name(),
            shape: self.shape_i64(),
            dims: self.shape_text(),
            class_labels: self.map_keys.as_ref(),
        }
    }
}

#[derive(Serialize)]
pub struct TensorDescription<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    /// The shape with symbolic dimensions by name, for people: `[batch, 64]`.
    pub dims: String,
    /// For a ZipMap output, its columns' class labels: `/predict` and v1 answer one object
    /// per row, label to probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_labels: Option<&'a ClassLabels>,
}

/// The inputs and outputs of a model, in the model's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|s| s.name == name)
    }

    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|s| s.name == name)
    }

    /// The batch dimension, in Triton's sense: every input and output starts with the same
    /// variable dimension, which is returned. `None` when they do not.
    pub fn batch_dim(&self) -> Option<&str> {
        let mut specs = self.inputs.iter().chain(&self.outputs);
        let Some(Dim::Symbolic(first)) = specs.next()?.shape.first() else {
            return None;
        };
        specs
            .all(|s| matches!(s.shape.first(), Some(Dim::Symbolic(d)) if d == first))
            .then_some(first.as_str())
    }

    /// `a, b`: the input names, for messages.
    pub fn input_names(&self) -> String {
        names(&self.inputs)
    }

    pub fn output_names(&self) -> String {
        names(&self.outputs)
    }

    /// Checks tensors given in the model's input order against the signature: datatype,
    /// rank, fixed dimensions, and that each symbolic dimension has one size across all
    /// inputs. The messages name the input, what the model expects and what was sent.
    pub fn check_inputs(&self, tensors: &[Tensor]) -> Result<(), String> {
        let mut bound: HashMap<&str, (usize, &str)> = HashMap::new();
        for (spec, tensor) in self.inputs.iter().zip(tensors) {
            check_tensor(spec, tensor)?;
            for (dim, &size) in spec.shape.iter().zip(&tensor.shape) {
                let Dim::Symbolic(symbol) = dim else { continue };
                match bound.get(symbol.as_str()) {
                    Some(&(first, first_input)) if first != size => {
                        return Err(format!(
                            "input '{}' has {symbol} = {size} but input '{first_input}' has \
                             {symbol} = {first}: dimension '{symbol}' must be the same for all inputs",
                            spec.name
                        ));
                    }
                    Some(_) => {}
                    None => {
                        bound.insert(symbol, (size, &spec.name));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `x FP32 [batch, 64], y INT64 [batch]`: names, datatypes and shapes, for messages and logs.
pub fn describe_all(specs: &[TensorSpec]) -> String {
    let parts: Vec<String> = specs
        .iter()
        .map(|s| format!("{} {} {}", s.name, s.datatype, s.shape_text()))
        .collect();
    parts.join(", ")
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

/// Checks one tensor against its spec.
pub fn check_tensor(spec: &TensorSpec, tensor: &Tensor) -> Result<(), String> {
    let name = &spec.name;
    if tensor.datatype() != spec.datatype {
        return Err(format!(
            "input '{name}' expects datatype {}, got {}",
            spec.datatype,
            tensor.datatype()
        ));
    }
    let expected = spec.shape_text();
    let got = format_shape(&tensor.shape);
    if tensor.shape.len() != spec.shape.len() {
        let mut message = format!(
            "input '{name}' expects {}-dimensional shape {expected}, got {}-dimensional shape {got}",
            spec.shape.len(),
            tensor.shape.len()
        );
        if tensor.shape.len() + 1 == spec.shape.len() && spec.has_batch_dim() {
            message.push_str(
                ": the first dimension is the batch; to send one item, wrap it in one more \
                 list, e.g. [[...]] instead of [...]",
            );
        }
        return Err(message);
    }
    for (axis, (dim, &size)) in spec.shape.iter().zip(&tensor.shape).enumerate() {
        match dim {
            Dim::Fixed(n) if *n != size => {
                return Err(format!(
                    "input '{name}' expects shape {expected}, got {got}: dimension {axis} must be {n}"
                ));
            }
            Dim::Symbolic(symbol) if size == 0 => {
                return Err(format!(
                    "input '{name}' has shape {got}: dimension {axis} ({symbol}) must not be 0"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tensor::TensorData;

    /// An FP32 spec, for tests.
    pub(crate) fn spec(name: &str, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape,
            map_keys: None,
        }
    }

    fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape, TensorData::Fp32(vec![0.0; n])).unwrap()
    }

    #[test]
    fn a_missing_batch_dimension_gets_a_hint() {
        let s = spec("input", vec![Dim::Symbolic("batch".into()), Dim::Fixed(64)]);
        let err = check_tensor(&s, &zeros(vec![64])).unwrap_err();
        assert!(err.contains("input 'input'"), "{err}");
        assert!(err.contains("[batch, 64]") && err.contains("[64]"), "{err}");
        assert!(err.contains("wrap it in one more list"), "{err}");
    }

    #[test]
    fn a_wrong_fixed_dimension_names_the_axis() {
        let s = spec("input", vec![Dim::Symbolic("batch".into()), Dim::Fixed(64)]);
        let err = check_tensor(&s, &zeros(vec![2, 63])).unwrap_err();
        assert_eq!(
            err,
            "input 'input' expects shape [batch, 64], got [2, 63]: dimension 1 must be 64"
        );
    }

    #[test]
    fn symbols_must_agree_across_inputs() {
        let batch = || Dim::Symbolic("batch".into());
        let sig = Signature {
            inputs: vec![
                spec("a", vec![batch(), Dim::Fixed(3)]),
                spec("b", vec![batch(), Dim::Fixed(3)]),
            ],
            outputs: vec![],
        };
        assert!(
            sig.check_inputs(&[zeros(vec![2, 3]), zeros(vec![2, 3])])
                .is_ok()
        );
        let err = sig
            .check_inputs(&[zeros(vec![2, 3]), zeros(vec![3, 3])])
            .unwrap_err();
        assert!(
            err.contains("input 'b' has batch = 3 but input 'a' has batch = 2"),
            "{err}"
        );
    }
}
