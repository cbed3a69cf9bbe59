//! `ReduceMax` and `ReduceMin` where tract's answers differ from ONNX's, or tract fails:
//! - FP16 and FP32: the maximum of a group of -inf (or of an empty group) is -inf, and the
//!   minimum of +inf values +inf. tract starts its maximum from the lowest finite value, so
//!   such a group comes out -3.4e38 (fully masked attention rows, say). The reduction runs
//!   on the values widened to FP64, where that starting point lies beyond every FP32 value
//!   and rounds back to the infinity; finite answers are the same. FP64 tensors (no wider
//!   type) stay tract's.
//! - BOOL (operator set 20): tract fails the run ("Bool is not a number"). The reduction
//!   runs on the values as UINT8 (false 0, true 1): the maximum is "any", the minimum
//!   "all", an empty group false and true, as ONNX defines.
//!
//! Integers stay tract's.

use super::Around;
use tract_onnx::model::OnnxOpRegister;
use tract_onnx::tract_core::ops::cast::{cast, wire_cast};
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("ReduceMax", |ctx, node| super::wrap(ctx, node, Widened));
    registry.insert("ReduceMin", |ctx, node| super::wrap(ctx, node, Widened));
}

#[derive(Clone, Debug)]
struct Widened;

impl Around for Widened {
    fn name(&self) -> &'static str {
        "ReduceExtremeWidened"
    }

    fn wire(
        &self,
        tract: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let wide = match dt {
            DatumType::F16 | DatumType::F32 => DatumType::F64,
            DatumType::Bool => DatumType::U8,
            _ => return tract.wire(prefix, model, inputs),
        };
        let mut inputs: TVec<OutletId> = inputs.into();
        inputs[0] = wire_cast(format!("{prefix}.widen"), model, &inputs[..1], wide)?[0];
        let reduced = tract.wire(&format!("{prefix}.wide"), model, &inputs)?;
        Ok(tvec!(model.wire_node(prefix, cast(dt), &reduced)?[0]))
    }
}
