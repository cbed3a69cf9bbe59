//! What our ONNX-ML operators share: reading attributes and inputs the way onnxruntime's ML
//! kernels read them, building output tensors, and tract's inference rules derived from each
//! operator's typed output facts.

use crate::tensor::ClassLabels;
use std::borrow::Cow;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray;
use tract_onnx::tract_hir::internal::*;

/// Implements tract's `Op`, `EvalOp` and `InferenceRulesOp` for one of our operators, from its
/// `TypedOp::output_facts` and an inherent `fn evaluate(&self, TVec<TValue>)`. `inputs` is the
/// number of inputs, or `None` for a variadic operator.
macro_rules! ml_operator {
    ($op:ty, $name:literal, inputs: $inputs:expr, outputs: $outputs:expr) => {
        impl Op for $op {
            fn name(&self) -> StaticName {
                $name.into()
            }

            op_as_typed_op!();
        }

        impl EvalOp for $op {
            op_out_of_plan!();

            fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                self.evaluate(inputs)
            }
        }

        impl InferenceRulesOp for $op {
            fn rules<'r, 'p: 'r, 's: 'r>(
                &'s self,
                s: &mut Solver<'r>,
                inputs: &'p [TensorProxy],
                outputs: &'p [TensorProxy],
            ) -> InferenceResult {
                let arity: Option<usize> = $inputs;
                match arity {
                    Some(n) => check_input_arity(inputs, n)?,
                    None if inputs.is_empty() => bail!("{} needs at least one input", $name),
                    None => {}
                }
                check_output_arity(outputs, $outputs)?;
                $crate::engine::onnx_ml::support::rules_from_output_facts(self, s, inputs, outputs)
            }

            fn nboutputs(&self) -> TractResult<usize> {
                Ok($outputs)
            }

            as_op!();
            to_typed!();
        }
    };
}

pub(crate) use ml_operator;

/// Inference rules that wait until every input's type and shape is known, then ask the op's
/// typed `output_facts`: one place states each operator's output types and shapes.
pub fn rules_from_output_facts<'r, 'p: 'r, 's: 'r, O: TypedOp>(
    op: &'s O,
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    s.given_all(inputs.iter().map(|i| &i.datum_type), move |s, types| {
        s.given_all(inputs.iter().map(|i| &i.shape), move |s, shapes| {
            let facts: TVec<TypedFact> = types
                .iter()
                .zip(shapes)
                .map(|(dt, shape)| dt.fact(shape))
                .collect();
            let facts: TVec<&TypedFact> = facts.iter().collect();
            for (proxy, fact) in outputs.iter().zip(op.output_facts(&facts)?) {
                s.equals(&proxy.datum_type, fact.datum_type)?;
                s.equals(&proxy.shape, fact.shape.to_tvec())?;
            }
            Ok(())
        })
    })
}

/// The version of the `ai.onnx.ml` operator set the model imports (1 when it does not say).
pub fn ml_opset(ctx: &ParsingContext) -> i64 {
    ctx.model
        .opset_import
        .iter()
        .find(|import| import.domain == "ai.onnx.ml")
        .map_or(1, |import| import.version)
}

pub fn floats_attr(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    Ok(node.get_attr_opt_vec(name)?.unwrap_or_default())
}

pub fn ints_attr(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec(name)?.unwrap_or_default())
}

pub fn strings_attr(node: &NodeProto, name: &str) -> TractResult<Vec<String>> {
    Ok(node.get_attr_opt_vec(name)?.unwrap_or_default())
}

/// A classifier's labels: `classlabels_strings` when it has any, else `classlabels_ints`
/// (`ints_name`; ZipMap calls it `classlabels_int64s`), as onnxruntime picks them.
pub fn class_labels(node: &NodeProto, ints_name: &str) -> TractResult<ClassLabels> {
    let strings = strings_attr(node, "classlabels_strings")?;
    Ok(if strings.is_empty() {
        ClassLabels::Int64(ints_attr(node, ints_name)?)
    } else {
        ClassLabels::Strings(strings)
    })
}

/// The datum type of a tensor of labels.
pub fn labels_datum_type(labels: &ClassLabels) -> DatumType {
    match labels {
        ClassLabels::Int64(_) => i64::datum_type(),
        ClassLabels::Strings(_) => String::datum_type(),
    }
}

/// The elements of a tensor, in row-major order.
pub fn slice<T: Datum>(tensor: &Tensor) -> TractResult<&[T]> {
    tensor.try_as_plain_ram()?.as_slice::<T>()
}

/// True for the numeric types onnxruntime's ML kernels take and convert to float.
pub fn is_numeric(dt: DatumType) -> bool {
    matches!(
        dt,
        DatumType::F32 | DatumType::F64 | DatumType::I32 | DatumType::I64 | DatumType::TDim
    )
}

/// True for int64 tensors, which tract sometimes types as TDim (its symbolic integers).
pub fn is_int64(dt: DatumType) -> bool {
    matches!(dt, DatumType::I64 | DatumType::TDim)
}

/// A numeric tensor's elements as f32, converted as C++'s `static_cast<float>` does (to the
/// nearest float), as onnxruntime's ML kernels do with their input.
pub fn floats<'t>(tensor: &'t Tensor, op: &str) -> TractResult<Cow<'t, [f32]>> {
    Ok(match tensor.datum_type() {
        DatumType::F32 => Cow::Borrowed(slice::<f32>(tensor)?),
        DatumType::F64 => slice::<f64>(tensor)?.iter().map(|&x| x as f32).collect(),
        DatumType::I32 => slice::<i32>(tensor)?.iter().map(|&x| x as f32).collect(),
        DatumType::I64 | DatumType::TDim => int64s(tensor)?.iter().map(|&x| x as f32).collect(),
        other => bail!("{op} takes numbers (float, double, int32 or int64), got {other:?}"),
    })
}

/// An int64 tensor's elements (also when tract holds it as TDim).
pub fn int64s(tensor: &Tensor) -> TractResult<Cow<'_, [i64]>> {
    Ok(match tensor.datum_type() {
        DatumType::I64 => Cow::Borrowed(slice::<i64>(tensor)?),
        DatumType::TDim => Cow::Owned(slice::<i64>(&*tensor.cast_to::<i64>()?)?.to_vec()),
        other => bail!("expected int64 values, got {other:?}"),
    })
}

/// A tensor from a shape and its elements in row-major order.
pub fn tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tensor())
}

/// Rows and row width of an input read as onnxruntime's ML kernels read it: `[N, F]`, or a
/// single row `[F]`.
pub fn rows_and_width(shape: &[usize], op: &str) -> TractResult<(usize, usize)> {
    match *shape {
        [width] => Ok((1, width)),
        [rows, width] => Ok((rows, width)),
        _ => bail!("{op} takes a 1- or 2-dimensional input, got shape {shape:?}"),
    }
}

/// The same for a typed fact: the row count (a dimension, maybe symbolic) and the width.
pub fn fact_rows_and_width(fact: &TypedFact, op: &str) -> TractResult<(TDim, TDim)> {
    let dims = fact.shape.to_tvec();
    match &*dims {
        [width] => Ok((1.to_dim(), width.clone())),
        [rows, width] => Ok((rows.clone(), width.clone())),
        _ => bail!(
            "{op} takes a 1- or 2-dimensional input, got shape {:?}",
            fact.shape
        ),
    }
}

/// Checks a row width known at load time against the one the operator's attributes imply.
pub fn check_width(width: &TDim, expected: usize, op: &str) -> TractResult<()> {
    match width.to_usize() {
        Ok(w) if w != expected => {
            bail!("{op} expects {expected} features per row, the model gives it {w}")
        }
        _ => Ok(()),
    }
}

/// `static_cast<int64_t>(x)` as it behaves on x86-64, where onnxruntime's reference answers
/// come from: truncation toward zero, and i64::MIN for NaN and values out of range.
pub fn c_cast_to_i64(x: f64) -> i64 {
    // 2^63: the first double past i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_to_int64_like_x86() {
        assert_eq!(c_cast_to_i64(2.9), 2);
        assert_eq!(c_cast_to_i64(-2.9), -2);
        assert_eq!(c_cast_to_i64(f64::NAN), i64::MIN);
        assert_eq!(c_cast_to_i64(1e30), i64::MIN);
        assert_eq!(c_cast_to_i64(-1e30), i64::MIN);
    }

    #[test]
    fn reads_rows_like_onnxruntime() {
        assert_eq!(rows_and_width(&[4], "Op").unwrap(), (1, 4));
        assert_eq!(rows_and_width(&[3, 4], "Op").unwrap(), (3, 4));
        let err = rows_and_width(&[1, 3, 4], "Op").unwrap_err().to_string();
        assert!(err.contains("1- or 2-dimensional"), "{err}");
    }

    #[test]
    fn numbers_become_floats_and_strings_are_refused() {
        let t = tensor(&[2], vec![3i64, -4]).unwrap();
        assert_eq!(&*floats(&t, "Op").unwrap(), &[3.0, -4.0]);
        let t = tensor(&[1], vec!["a".to_string()]).unwrap();
        let err = floats(&t, "Scaler").unwrap_err().to_string();
        assert!(err.contains("Scaler takes numbers"), "{err}");
    }
}
