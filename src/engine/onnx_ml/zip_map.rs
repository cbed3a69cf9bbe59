//! `ZipMap`: onnxruntime answers a list of maps, one per row, class label to probability. tract
//! has no map type, so our ZipMap passes its probabilities `[N, classes]` through unchanged, and
//! the engine records the labels for the output it feeds (`TensorSpec::map_keys`), for the
//! server to render maps where a protocol wants them.

use super::support::{self, ml_operator};
use crate::tensor::ClassLabels;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipMap {
    labels: ClassLabels,
}

pub fn zip_map(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints = support::ints_attr(node, "classlabels_int64s")?;
    let strings = support::strings_attr(node, "classlabels_strings")?;
    let labels = match (ints.is_empty(), strings.is_empty()) {
        (false, true) => ClassLabels::Int64(ints),
        (true, false) => ClassLabels::Strings(strings),
        _ => bail!("needs exactly one of classlabels_int64s and classlabels_strings"),
    };
    Ok((Box::new(ZipMap { labels }), vec![]))
}

impl ZipMap {
    pub fn labels(&self) -> &ClassLabels {
        &self.labels
    }

    fn check_width(&self, width: usize) -> TractResult<()> {
        ensure!(
            width == self.labels.len(),
            "ZipMap has {} class labels for rows of {width} probabilities",
            self.labels.len()
        );
        Ok(())
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (_, width) = support::rows_and_width(x.shape(), "ZipMap")?;
        self.check_width(width)?;
        Ok(tvec!(x))
    }
}

impl TypedOp for ZipMap {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "ZipMap takes float, got {:?}",
            inputs[0].datum_type
        );
        let (_, width) = support::fact_rows_and_width(inputs[0], "ZipMap")?;
        if let Ok(width) = width.to_usize() {
            self.check_width(width)?;
        }
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

ml_operator!(ZipMap, "ZipMap", inputs: Some(1), outputs: 1);

/// For each output of `model`, the class labels of the ZipMap node that makes it, if one does.
pub fn output_map_keys(model: &InferenceModel) -> Vec<Option<ClassLabels>> {
    model
        .outputs
        .iter()
        .map(|outlet| {
            let node = model.node(outlet.node);
            node.op_as::<ZipMap>()
                .map(|zip_map| zip_map.labels().clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_pass_through_when_the_labels_fit() {
        let op = ZipMap {
            labels: ClassLabels::Strings(vec!["a".into(), "b".into()]),
        };
        let x = support::tensor(&[1, 2], vec![0.25f32, 0.75]).unwrap();
        let out = op.evaluate(tvec!(x.clone().into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), x);
        let wrong = support::tensor(&[1, 3], vec![0.0f32; 3]).unwrap();
        let err = op
            .evaluate(tvec!(wrong.into_tvalue()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 class labels for rows of 3"), "{err}");
    }
}
