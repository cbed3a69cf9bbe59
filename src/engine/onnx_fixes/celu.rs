//! `Celu`: `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`. tract's leaves out the
//! factor `alpha` on negative inputs, which is right only for `alpha = 1`.

use super::float_map::FloatMap;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("Celu", celu);
}

fn celu(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let alpha: f32 = node.get_attr_opt("alpha")?.unwrap_or(1.0);
    ensure!(alpha != 0.0, "Celu: alpha must not be 0");
    let op = FloatMap {
        name: "Celu",
        alpha: f64::from(alpha),
        f: celu_of,
    };
    Ok((expand(op), vec![]))
}

fn celu_of(x: f64, alpha: f64) -> f64 {
    x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::celu_of;

    #[test]
    fn negative_inputs_approach_minus_alpha() {
        assert_eq!(celu_of(3.0, 2.0), 3.0);
        assert!((celu_of(-3.0, 2.0) - 2.0 * (-1.5f64).exp_m1()).abs() < 1e-15);
        assert!((celu_of(-100.0, 2.0) + 2.0).abs() < 1e-15);
    }
}
