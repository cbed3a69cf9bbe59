//! `ReduceMax` and `ReduceMin` on FP16 and FP32 tensors: the maximum of a group of -inf
//! (or of an empty group) is -inf, and the minimum of +inf values +inf. tract starts its
//! maximum from the lowest finite value, so such a group comes out -3.4e38 (fully masked
//! attention rows, say). The reduction runs on the values widened to FP64, where that
//! starting point lies beyond every FP32 value and rounds back to the infinity; finite
//! answers are the same. FP64 tensors (no wider type) and integers stay tract's.

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
        if dt != DatumType::F16 && dt != DatumType::F32 {
            return tract.wire(prefix, model, inputs);
        }
        let mut inputs: TVec<OutletId> = inputs.into();
        inputs[0] = wire_cast(
            format!("{prefix}.to_f64"),
            model,
            &inputs[..1],
            DatumType::F64,
        )?[0];
        let reduced = tract.wire(&format!("{prefix}.f64"), model, &inputs)?;
        Ok(tvec!(model.wire_node(prefix, cast(dt), &reduced)?[0]))
    }
}
