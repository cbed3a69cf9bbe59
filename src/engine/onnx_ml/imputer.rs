//! `Imputer`: replaces a value that marks "missing" (NaN, or a given number) with a per-feature
//! or single value (scikit-learn's SimpleImputer), computed as onnxruntime computes it.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq)]
enum Replacement {
    Floats { missing: f32, values: Vec<f32> },
    Int64s { missing: i64, values: Vec<i64> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Imputer(Replacement);

impl Eq for Imputer {}

pub fn imputer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let floats = support::floats_attr(node, "imputed_value_floats")?;
    let ints = support::ints_attr(node, "imputed_value_int64s")?;
    let replacement = match (floats.is_empty(), ints.is_empty()) {
        (false, true) => Replacement::Floats {
            missing: node.get_attr_opt("replaced_value_float")?.unwrap_or(0.0),
            values: floats,
        },
        (true, false) => Replacement::Int64s {
            missing: node.get_attr_opt("replaced_value_int64")?.unwrap_or(0),
            values: ints,
        },
        _ => bail!("needs exactly one of imputed_value_floats and imputed_value_int64s"),
    };
    Ok((Box::new(Imputer(replacement)), vec![]))
}

/// Replaces the elements `is_missing` picks: by feature when there is a value per feature of
/// rows of `stride`, else all by the first value.
fn impute<T: Copy>(x: &[T], stride: usize, values: &[T], is_missing: impl Fn(T) -> bool) -> Vec<T> {
    let per_feature = values.len() == stride;
    x.iter()
        .enumerate()
        .map(|(i, &v)| match is_missing(v) {
            true if per_feature => values[i % stride],
            true => values[0],
            false => v,
        })
        .collect()
}

impl Imputer {
    fn stride(shape: &[usize]) -> TractResult<usize> {
        match shape {
            [] => bail!("Imputer takes an input of at least one dimension"),
            [n] | [_, n, ..] => Ok(*n),
        }
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let stride = Self::stride(x.shape())?;
        let out = match (&self.0, x.datum_type()) {
            (Replacement::Floats { missing, values }, DatumType::F32) => {
                let missing = *missing;
                let data = impute(support::slice::<f32>(&x)?, stride, values, |v| {
                    (v.is_nan() && missing.is_nan()) || v == missing
                });
                support::tensor(x.shape(), data)?
            }
            (Replacement::Int64s { missing, values }, DatumType::I64 | DatumType::TDim) => {
                let data = impute(&support::int64s(&x)?, stride, values, |v| v == *missing);
                support::tensor(x.shape(), data)?
            }
            (_, other) => bail!("{}", self.type_error(other)),
        };
        Ok(tvec!(out.into_tvalue()))
    }

    fn type_error(&self, input: DatumType) -> String {
        let expected = match self.0 {
            Replacement::Floats { .. } => "float (it has imputed_value_floats)",
            Replacement::Int64s { .. } => "int64 (it has imputed_value_int64s)",
        };
        format!("Imputer takes {expected}, got {input:?}")
    }
}

impl TypedOp for Imputer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let dt = inputs[0].datum_type;
        let fits = match self.0 {
            Replacement::Floats { .. } => dt == DatumType::F32,
            Replacement::Int64s { .. } => support::is_int64(dt),
        };
        ensure!(fits, "{}", self.type_error(dt));
        ensure!(
            inputs[0].rank() >= 1,
            "Imputer takes an input of at least one dimension"
        );
        let dt = if dt == DatumType::TDim {
            DatumType::I64
        } else {
            dt
        };
        Ok(tvec!(dt.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

ml_operator!(Imputer, "Imputer", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_replaced_per_feature_or_by_the_first_value() {
        let x = [f32::NAN, 1.0, 2.0, f32::NAN];
        let missing = |v: f32| v.is_nan();
        assert_eq!(impute(&x, 2, &[7.0, 8.0], missing), [7.0, 1.0, 2.0, 8.0]);
        assert_eq!(impute(&x, 2, &[7.0], missing), [7.0, 1.0, 2.0, 7.0]);
    }

    #[test]
    fn a_float_imputer_refuses_int64() {
        let op = Imputer(Replacement::Floats {
            missing: f32::NAN,
            values: vec![0.0],
        });
        let x = support::tensor(&[1, 1], vec![1i64]).unwrap().into_tvalue();
        let err = op.evaluate(tvec!(x)).unwrap_err().to_string();
        assert!(err.contains("Imputer takes float"), "{err}");
    }
}
