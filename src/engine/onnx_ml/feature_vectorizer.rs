//! `FeatureVectorizer`: several inputs' rows side by side, each cut or padded with zeros to its
//! declared width (`inputdimensions`), as floats; computed as onnxruntime computes it.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeatureVectorizer {
    widths: Vec<usize>,
}

pub fn feature_vectorizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let widths = support::ints_attr(node, "inputdimensions")?
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format_err!("inputdimensions has a negative width"))?;
    let inputs = node.input.iter().filter(|name| !name.is_empty()).count();
    ensure!(
        widths.len() == inputs,
        "has {inputs} inputs but {} inputdimensions",
        widths.len()
    );
    Ok((Box::new(FeatureVectorizer { widths }), vec![]))
}

/// Rows of an input, and the values of each row: `[N, ...]`, or one row for `[F]`.
fn rows_of(shape: &[usize]) -> TractResult<(usize, usize)> {
    match shape {
        [] => bail!("FeatureVectorizer takes inputs of at least one dimension"),
        [width] => Ok((1, *width)),
        [rows, rest @ ..] => Ok((*rows, rest.iter().product())),
    }
}

impl FeatureVectorizer {
    fn total(&self) -> usize {
        self.widths.iter().sum()
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, _) = rows_of(inputs[0].shape())?;
        let total = self.total();
        let mut out = vec![0.0f32; rows * total];
        let mut offset = 0;
        for (index, (input, &width)) in inputs.iter().zip(&self.widths).enumerate() {
            let (input_rows, input_width) = rows_of(input.shape())?;
            ensure!(
                input_rows == rows,
                "FeatureVectorizer: input {index} has {input_rows} rows, input 0 has {rows}"
            );
            let values = support::floats(input, "FeatureVectorizer")?;
            let kept = input_width.min(width);
            for (r, row) in values.chunks(input_width.max(1)).take(rows).enumerate() {
                out[r * total + offset..][..kept].copy_from_slice(&row[..kept]);
            }
            offset += width;
        }
        Ok(tvec!(support::tensor(&[rows, total], out)?.into_tvalue()))
    }
}

impl TypedOp for FeatureVectorizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.widths.len(),
            "FeatureVectorizer has {} inputs but {} inputdimensions",
            inputs.len(),
            self.widths.len()
        );
        for input in inputs {
            ensure!(
                support::is_numeric(input.datum_type),
                "FeatureVectorizer takes numbers, got {:?}",
                input.datum_type
            );
            ensure!(
                input.rank() >= 1,
                "FeatureVectorizer takes inputs of at least one dimension"
            );
        }
        let rows = match inputs[0].rank() {
            1 => 1.to_dim(),
            _ => inputs[0].shape[0].clone(),
        };
        Ok(tvec!(f32::fact([rows, self.total().to_dim()])))
    }

    as_op!();
}

ml_operator!(FeatureVectorizer, "FeatureVectorizer", inputs: None, outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_cut_or_padded_to_their_width() {
        let op = FeatureVectorizer { widths: vec![1, 3] };
        let a = support::tensor(&[2, 2], vec![1.0f32, 9.0, 2.0, 9.0]).unwrap();
        let b = support::tensor(&[2, 2], vec![3i64, 4, 5, 6]).unwrap();
        let out = op
            .evaluate(tvec!(a.into_tvalue(), b.into_tvalue()))
            .unwrap();
        assert_eq!(out[0].shape(), [2, 4]);
        assert_eq!(
            support::slice::<f32>(&out[0]).unwrap(),
            [1.0, 3.0, 4.0, 0.0, 2.0, 5.0, 6.0, 0.0]
        );
    }
}
