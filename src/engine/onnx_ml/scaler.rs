//! `Scaler`: `(x - offset) * scale` per feature (scikit-learn's StandardScaler, MinMaxScaler,
//! RobustScaler, MaxAbsScaler), computed as onnxruntime computes it.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Eq for Scaler {}

pub fn scaler(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale = support::floats_attr(node, "scale")?;
    let offset = support::floats_attr(node, "offset")?;
    ensure!(!scale.is_empty(), "has no scale");
    ensure!(
        scale.len() == offset.len(),
        "has {} scale values but {} offsets",
        scale.len(),
        offset.len()
    );
    Ok((Box::new(Scaler { offset, scale }), vec![]))
}

impl Scaler {
    /// onnxruntime's feature count: the only dimension, else the second.
    fn stride(shape: &[usize]) -> TractResult<usize> {
        match shape {
            [] => bail!("Scaler takes an input of at least one dimension"),
            [n] => Ok(*n),
            [_, n, ..] => Ok(*n),
        }
    }

    /// Whether there is a scale per feature (else one for all); an error for any other count.
    fn per_feature(&self, stride: usize) -> TractResult<bool> {
        let per_feature = self.scale.len() == stride;
        ensure!(
            per_feature || self.scale.len() == 1,
            "Scaler has {} scale values for rows of {stride} features",
            self.scale.len()
        );
        Ok(per_feature)
    }

    /// Offset and scale of element `i`.
    fn parameters(&self, stride: usize) -> TractResult<impl Fn(usize) -> (f32, f32) + '_> {
        let per_feature = self.per_feature(stride)?;
        Ok(move |i: usize| {
            let j = if per_feature { i % stride } else { 0 };
            (self.offset[j], self.scale[j])
        })
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let at = self.parameters(Self::stride(x.shape())?)?;
        // Each type is computed as C++ computes `(x - offset) * scale` with float parameters.
        let out: Vec<f32> = match x.datum_type() {
            DatumType::F64 => support::slice::<f64>(&x)?
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (offset, scale) = at(i);
                    ((v - f64::from(offset)) * f64::from(scale)) as f32
                })
                .collect(),
            _ => support::floats(&x, "Scaler")?
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (offset, scale) = at(i);
                    (v - offset) * scale
                })
                .collect(),
        };
        Ok(tvec!(support::tensor(x.shape(), out)?.into_tvalue()))
    }
}

impl TypedOp for Scaler {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "Scaler takes numbers, got {:?}",
            inputs[0].datum_type
        );
        let dims = inputs[0].shape.to_tvec();
        let stride = match &*dims {
            [] => bail!("Scaler takes an input of at least one dimension"),
            [n] | [_, n, ..] => n.clone(),
        };
        if let Ok(stride) = stride.to_usize() {
            self.per_feature(stride)?;
        }
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

ml_operator!(Scaler, "Scaler", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &Scaler, x: Tensor) -> TractResult<Vec<f32>> {
        let out = op.evaluate(tvec!(x.into_tvalue()))?;
        Ok(support::slice::<f32>(&out[0])?.to_vec())
    }

    #[test]
    fn scales_per_feature_or_all_alike() {
        let per_feature = Scaler {
            offset: vec![1.0, 2.0],
            scale: vec![2.0, 0.5],
        };
        let x = support::tensor(&[2, 2], vec![1.0f32, 4.0, 3.0, 2.0]).unwrap();
        assert_eq!(run(&per_feature, x).unwrap(), [0.0, 1.0, 4.0, 0.0]);
        let one = Scaler {
            offset: vec![1.0],
            scale: vec![3.0],
        };
        let x = support::tensor(&[3], vec![1i64, 2, 3]).unwrap();
        assert_eq!(run(&one, x).unwrap(), [0.0, 3.0, 6.0]);
    }

    #[test]
    fn a_feature_count_that_fits_neither_is_an_error() {
        let op = Scaler {
            offset: vec![0.0, 0.0],
            scale: vec![1.0, 1.0],
        };
        let x = support::tensor(&[1, 3], vec![1.0f32; 3]).unwrap();
        let err = run(&op, x).unwrap_err().to_string();
        assert!(
            err.contains("2 scale values for rows of 3 features"),
            "{err}"
        );
    }
}
