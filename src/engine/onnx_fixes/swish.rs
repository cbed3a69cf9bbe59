//! `Swish` (since operator set 24): `x * sigmoid(alpha * x)`. tract's is SiLU, `alpha = 1`
//! whatever the attribute says; that case stays tract's.

use super::float_map::FloatMap;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("Swish", swish);
}

fn swish(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let alpha: f32 = node.get_attr_opt("alpha")?.unwrap_or(1.0);
    if alpha == 1.0 {
        return super::tract_op(ctx, node);
    }
    let op = FloatMap {
        name: "Swish",
        alpha: f64::from(alpha),
        f: swish_of,
    };
    Ok((expand(op), vec![]))
}

fn swish_of(x: f64, alpha: f64) -> f64 {
    x / (1.0 + (-alpha * x).exp())
}

#[cfg(test)]
mod tests {
    use super::swish_of;

    #[test]
    fn alpha_scales_the_gate_only() {
        assert_eq!(swish_of(0.0, 0.5), 0.0);
        assert!((swish_of(2.0, 0.5) - 2.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-15);
    }
}
