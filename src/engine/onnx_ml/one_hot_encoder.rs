//! `OneHotEncoder`: one column per category, 1 where the input is that category (scikit-learn's
//! OneHotEncoder on int or string columns), computed as onnxruntime computes it: numbers are
//! cast to int64 first (truncated), a duplicated category takes its last column, and an unknown
//! category is a row of zeros, or an error when `zeros` is 0.

use super::support::{self, ml_operator};
use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Categories {
    Int64(HashMap<i64, usize>),
    Strings(HashMap<String, usize>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneHotEncoder {
    categories: Categories,
    count: usize,
    /// Whether an unknown category gives zeros (else the run fails).
    zeros: bool,
}

pub fn one_hot_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints = support::ints_attr(node, "cats_int64s")?;
    let strings = support::strings_attr(node, "cats_strings")?;
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    ensure!(
        ints.is_empty() || strings.is_empty(),
        "has both cats_int64s and cats_strings"
    );
    // Later duplicates overwrite earlier ones, as in onnxruntime's map.
    let (categories, count) = if !ints.is_empty() {
        let count = ints.len();
        (
            Categories::Int64(ints.into_iter().zip(0..).collect()),
            count,
        )
    } else {
        let count = strings.len();
        (
            Categories::Strings(strings.into_iter().zip(0..).collect()),
            count,
        )
    };
    ensure!(count > 0, "has no categories");
    Ok((
        Box::new(OneHotEncoder {
            categories,
            count,
            zeros,
        }),
        vec![],
    ))
}

impl OneHotEncoder {
    /// The column of each input element, `None` for an unknown category.
    fn columns(&self, x: &Tensor) -> TractResult<Vec<Option<usize>>> {
        let ints: Vec<i64> = match x.datum_type() {
            DatumType::String => {
                let strings = support::slice::<String>(x)?;
                return Ok(match &self.categories {
                    Categories::Strings(map) => {
                        strings.iter().map(|s| map.get(s).copied()).collect()
                    }
                    Categories::Int64(_) => vec![None; strings.len()],
                });
            }
            DatumType::I64 | DatumType::TDim => support::int64s(x)?.into_owned(),
            DatumType::F32 => support::slice::<f32>(x)?
                .iter()
                .map(|&v| support::c_cast_to_i64(f64::from(v)))
                .collect(),
            DatumType::F64 => support::slice::<f64>(x)?
                .iter()
                .map(|&v| support::c_cast_to_i64(v))
                .collect(),
            other => bail!("OneHotEncoder takes int64, float, double or string, got {other:?}"),
        };
        Ok(match &self.categories {
            Categories::Int64(map) => ints.iter().map(|i| map.get(i).copied()).collect(),
            Categories::Strings(_) => vec![None; ints.len()],
        })
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        ensure!(
            x.rank() <= 2,
            "OneHotEncoder takes at most 2 dimensions, got shape {:?}",
            x.shape()
        );
        let columns = self.columns(&x)?;
        let mut out = vec![0.0f32; columns.len() * self.count];
        for (i, column) in columns.iter().enumerate() {
            match column {
                Some(c) => out[i * self.count + c] = 1.0,
                None if self.zeros => {}
                None => bail!("OneHotEncoder: unknown category, and zeros = 0"),
            }
        }
        let mut shape = x.shape().to_vec();
        shape.push(self.count);
        Ok(tvec!(support::tensor(&shape, out)?.into_tvalue()))
    }
}

impl TypedOp for OneHotEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let dt = inputs[0].datum_type;
        ensure!(
            matches!(
                dt,
                DatumType::String
                    | DatumType::I64
                    | DatumType::TDim
                    | DatumType::F32
                    | DatumType::F64
            ),
            "OneHotEncoder takes int64, float, double or string, got {dt:?}"
        );
        ensure!(
            inputs[0].rank() <= 2,
            "OneHotEncoder takes at most 2 dimensions, got {:?}",
            inputs[0].shape
        );
        let mut shape = inputs[0].shape.to_tvec();
        shape.push(self.count.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

ml_operator!(OneHotEncoder, "OneHotEncoder", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(categories: Categories, count: usize, zeros: bool) -> OneHotEncoder {
        OneHotEncoder {
            categories,
            count,
            zeros,
        }
    }

    fn run(op: &OneHotEncoder, x: Tensor) -> TractResult<(Vec<usize>, Vec<f32>)> {
        let out = op.evaluate(tvec!(x.into_tvalue()))?;
        Ok((
            out[0].shape().to_vec(),
            support::slice::<f32>(&out[0])?.to_vec(),
        ))
    }

    #[test]
    fn strings_get_their_column_and_unknown_ones_zeros() {
        let map = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        let op = encoder(Categories::Strings(map), 2, true);
        let x = support::tensor(&[1, 3], vec!["b".to_string(), "z".into(), "a".into()]).unwrap();
        let (shape, out) = run(&op, x).unwrap();
        assert_eq!(shape, [1, 3, 2]);
        assert_eq!(out, [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn floats_are_truncated_to_int64() {
        let op = encoder(Categories::Int64([(1, 0), (-1, 1)].into()), 2, true);
        let x = support::tensor(&[3], vec![1.9f32, -1.5, f32::NAN]).unwrap();
        let (_, out) = run(&op, x).unwrap();
        assert_eq!(out, [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn an_unknown_category_without_zeros_is_an_error() {
        let op = encoder(Categories::Int64([(1, 0)].into()), 1, false);
        let x = support::tensor(&[1], vec![2i64]).unwrap();
        let err = run(&op, x).unwrap_err().to_string();
        assert!(err.contains("unknown category"), "{err}");
    }
}
