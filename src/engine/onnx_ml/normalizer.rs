//! `Normalizer`: each row divided by its MAX, L1 or L2 norm, computed as onnxruntime computes
//! it. It replaces tract's, which takes MAX as the largest absolute value where onnxruntime
//! takes the largest value (so a row with negative values differs), and clamps zero norms.

use super::support::{self, ml_operator};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Normalizer {
    norm: Norm,
}

pub fn normalizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm: Option<String> = node.get_attr_opt("norm")?;
    let norm = match norm.as_deref().unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("unknown norm '{other}'"),
    };
    Ok((Box::new(Normalizer { norm }), vec![]))
}

/// One element as onnxruntime's kernel sees it: the value, its absolute value and its square,
/// each computed in the input's own type and then made a float.
struct Element {
    value: f32,
    abs: f32,
    square: f32,
}

fn elements(x: &Tensor) -> TractResult<Vec<Element>> {
    fn of<T: Copy>(values: &[T], f: impl Fn(T) -> Element) -> Vec<Element> {
        values.iter().map(|&v| f(v)).collect()
    }
    Ok(match x.datum_type() {
        DatumType::F32 => of(support::slice::<f32>(x)?, |v| Element {
            value: v,
            abs: v.abs(),
            square: v * v,
        }),
        DatumType::F64 => of(support::slice::<f64>(x)?, |v| Element {
            value: v as f32,
            abs: v.abs() as f32,
            square: (v * v) as f32,
        }),
        DatumType::I32 => of(support::slice::<i32>(x)?, |v| Element {
            value: v as f32,
            abs: v.wrapping_abs() as f32,
            square: v.wrapping_mul(v) as f32,
        }),
        DatumType::I64 | DatumType::TDim => of(&support::int64s(x)?, |v| Element {
            value: v as f32,
            abs: v.wrapping_abs() as f32,
            square: v.wrapping_mul(v) as f32,
        }),
        other => bail!("Normalizer takes numbers, got {other:?}"),
    })
}

impl Normalizer {
    fn normalize_row(&self, row: &[Element], out: &mut Vec<f32>) {
        let divisor = match self.norm {
            Norm::Max => row
                .iter()
                .fold(f32::MIN, |m, e| if m < e.value { e.value } else { m }),
            Norm::L1 => row.iter().fold(0.0, |sum, e| sum + e.abs),
            Norm::L2 => row.iter().fold(0.0, |sum, e| sum + e.square),
        };
        // A zero norm leaves the row as it is.
        if divisor == 0.0 {
            out.extend(row.iter().map(|e| e.value));
            return;
        }
        out.extend(row.iter().map(|e| match self.norm {
            Norm::Max | Norm::L1 => e.value / divisor,
            Norm::L2 if e.value < 0.0 => -(e.square / divisor).sqrt(),
            Norm::L2 => (e.square / divisor).sqrt(),
        }));
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (_, width) = support::rows_and_width(x.shape(), "Normalizer")?;
        let elements = elements(&x)?;
        let mut out = Vec::with_capacity(elements.len());
        for row in elements.chunks(width.max(1)) {
            self.normalize_row(row, &mut out);
        }
        Ok(tvec!(support::tensor(x.shape(), out)?.into_tvalue()))
    }
}

impl TypedOp for Normalizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "Normalizer takes numbers, got {:?}",
            inputs[0].datum_type
        );
        support::fact_rows_and_width(inputs[0], "Normalizer")?;
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

ml_operator!(Normalizer, "Normalizer", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(norm: Norm, x: Tensor) -> Vec<f32> {
        let out = Normalizer { norm }
            .evaluate(tvec!(x.into_tvalue()))
            .unwrap();
        support::slice::<f32>(&out[0]).unwrap().to_vec()
    }

    #[test]
    fn max_is_the_largest_value_not_the_largest_magnitude() {
        let x = support::tensor(&[1, 3], vec![1.0f32, 2.0, -4.0]).unwrap();
        assert_eq!(run(Norm::Max, x), [0.5, 1.0, -2.0]);
    }

    #[test]
    fn a_zero_norm_leaves_the_row() {
        let x = support::tensor(&[2, 2], vec![0.0f32, 0.0, 3.0, -4.0]).unwrap();
        assert_eq!(run(Norm::L2, x.clone()), [0.0, 0.0, 0.6, -0.8]);
        assert_eq!(run(Norm::L1, x), [0.0, 0.0, 3.0 / 7.0, -4.0 / 7.0]);
    }

    #[test]
    fn integers_are_normalized_to_floats() {
        let x = support::tensor(&[2], vec![1i64, 3]).unwrap();
        assert_eq!(run(Norm::L1, x), [0.25, 0.75]);
    }
}
