//! `Conv` on FP16 tensors, computed in FP32 and rounded once, as onnxruntime does. tract
//! accumulates an FP16 convolution in FP16: 4096 ones sum to 2048, and a 3x3 convolution
//! over 64 channels of values in [0, 1) comes out 1% low. Other types stay tract's.

use super::Around;
use tract_onnx::model::OnnxOpRegister;
use tract_onnx::tract_core::ops::cast::{cast, wire_cast};
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("Conv", |ctx, node| super::wrap(ctx, node, InF32));
}

#[derive(Clone, Debug)]
struct InF32;

impl Around for InF32 {
    fn name(&self) -> &'static str {
        "ConvInF32"
    }

    fn wire(
        &self,
        tract: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        if model.outlet_fact(inputs[0])?.datum_type != DatumType::F16 {
            return tract.wire(prefix, model, inputs);
        }
        let wide = wire_cast(format!("{prefix}.to_f32"), model, inputs, DatumType::F32)?;
        let outputs = tract.wire(&format!("{prefix}.f32"), model, &wide)?;
        (outputs.iter().enumerate())
            .map(|(ix, &output)| {
                let name = if ix == 0 {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{ix}")
                };
                Ok(model.wire_node(name, cast(DatumType::F16), &[output])?[0])
            })
            .collect()
    }
}
