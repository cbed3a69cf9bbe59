//! `Binarizer`: 1 above the threshold, else 0 (scikit-learn's Binarizer), as onnxruntime
//! computes it: float input only, and NaN is an error.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq)]
pub struct Binarizer {
    threshold: f32,
}

impl Eq for Binarizer {}

pub fn binarizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt("threshold")?.unwrap_or(0.0);
    Ok((Box::new(Binarizer { threshold }), vec![]))
}

impl Binarizer {
    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let values = support::slice::<f32>(&x)?;
        if let Some(at) = values.iter().position(|v| v.is_nan()) {
            bail!("Binarizer: input element {at} is NaN");
        }
        let out = values
            .iter()
            .map(|&v| if v > self.threshold { 1.0f32 } else { 0.0 })
            .collect();
        Ok(tvec!(support::tensor(x.shape(), out)?.into_tvalue()))
    }
}

impl TypedOp for Binarizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "Binarizer takes float, got {:?}",
            inputs[0].datum_type
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

ml_operator!(Binarizer, "Binarizer", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn above_the_threshold_is_one_and_nan_an_error() {
        let op = Binarizer { threshold: 0.5 };
        let x = support::tensor(&[3], vec![0.5f32, 0.6, -1.0])
            .unwrap()
            .into_tvalue();
        let out = op.evaluate(tvec!(x)).unwrap();
        assert_eq!(support::slice::<f32>(&out[0]).unwrap(), [0.0, 1.0, 0.0]);
        let x = support::tensor(&[1], vec![f32::NAN]).unwrap().into_tvalue();
        assert!(
            op.evaluate(tvec!(x))
                .unwrap_err()
                .to_string()
                .contains("NaN")
        );
    }
}
