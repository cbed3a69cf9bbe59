//! `ArrayFeatureExtractor`: picks elements of the last axis by index (converters use it to pick
//! labels and columns), as onnxruntime does: any element type (strings too), the indices
//! flattened, a 1-D input answered as one row `[1, n]`. It replaces tract's, a Gather that
//! keeps the indices' shape and wraps negative indices; a negative index is an error here.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArrayFeatureExtractor;

pub fn array_feature_extractor(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((Box::new(ArrayFeatureExtractor), vec![]))
}

/// The output shape: the input's, with the last axis as long as the indices, or `[1, n]`.
fn output_shape<D: Clone + From<usize>>(input: &[D], indices: D) -> TVec<D> {
    match input {
        [_] => tvec![D::from(1), indices],
        _ => {
            let mut shape: TVec<D> = input.into();
            if let Some(last) = shape.last_mut() {
                *last = indices;
            }
            shape
        }
    }
}

impl ArrayFeatureExtractor {
    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, indices) = args_2!(inputs);
        let Some(&stride) = x.shape().last() else {
            bail!("ArrayFeatureExtractor takes an input of at least one dimension");
        };
        let indices = support::int64s(&indices)?;
        ensure!(!indices.is_empty(), "ArrayFeatureExtractor got no indices");
        let indices = indices
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < stride)
                    .ok_or_else(|| {
                        format_err!("ArrayFeatureExtractor: index {i} is out of range 0..{stride}")
                    })
            })
            .collect::<TractResult<Vec<usize>>>()?;
        let shape = output_shape(x.shape(), indices.len());
        fn pick<T: Datum>(
            x: &Tensor,
            indices: &[usize],
            stride: usize,
            shape: &[usize],
        ) -> TractResult<Tensor> {
            let values = support::slice::<T>(x)?;
            let picked = values
                .chunks(stride.max(1))
                .flat_map(|row| indices.iter().map(move |&i| row[i].clone()))
                .collect();
            support::tensor(shape, picked)
        }
        let out = dispatch_datum!(pick(x.datum_type())(&x, &indices, stride, &shape))?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for ArrayFeatureExtractor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].rank() >= 1,
            "ArrayFeatureExtractor takes an input of at least one dimension"
        );
        ensure!(
            support::is_int64(inputs[1].datum_type),
            "ArrayFeatureExtractor takes int64 indices, got {:?}",
            inputs[1].datum_type
        );
        let count: TDim = inputs[1].shape.iter().product();
        let shape = output_shape(&inputs[0].shape.to_tvec(), count);
        Ok(tvec!(inputs[0].datum_type.fact(shape)))
    }

    as_op!();
}

ml_operator!(ArrayFeatureExtractor, "ArrayFeatureExtractor", inputs: Some(2), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: Tensor, indices: Vec<i64>) -> TractResult<Tensor> {
        let indices = support::tensor(&[indices.len()], indices)?;
        let out = ArrayFeatureExtractor.evaluate(tvec!(x.into_tvalue(), indices.into_tvalue()))?;
        Ok(out[0].clone().into_tensor())
    }

    #[test]
    fn picks_strings_along_the_last_axis() {
        let x = support::tensor(
            &[2, 2],
            vec!["a".to_string(), "b".into(), "c".into(), "d".into()],
        )
        .unwrap();
        let out = run(x, vec![1]).unwrap();
        assert_eq!(out.shape(), [2, 1]);
        assert_eq!(support::slice::<String>(&out).unwrap(), ["b", "d"]);
    }

    #[test]
    fn a_vector_gives_one_row() {
        let x = support::tensor(&[3], vec![5i64, 6, 7]).unwrap();
        let out = run(x, vec![2, 0]).unwrap();
        assert_eq!(out.shape(), [1, 2]);
        assert_eq!(support::slice::<i64>(&out).unwrap(), [7, 5]);
    }

    #[test]
    fn indices_out_of_range_are_errors() {
        let x = || support::tensor(&[3], vec![5i64, 6, 7]).unwrap();
        assert!(
            run(x(), vec![3])
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            run(x(), vec![-1])
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }
}
