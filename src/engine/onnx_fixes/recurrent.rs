//! `GRU`, `LSTM` and `RNN` with `direction="reverse"`: tract reads no `direction` and runs a
//! single-direction node forward. A reverse pass is the forward pass over the sequence
//! reversed in time, with `Y` reversed back; `Y_h` and `Y_c`, the states after the last
//! step processed, need nothing. Forward and bidirectional nodes stay tract's.

use super::Around;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("GRU", recurrent);
    registry.insert("LSTM", recurrent);
    registry.insert("RNN", recurrent);
}

fn recurrent(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    match node.get_attr_opt::<&str>("direction")?.unwrap_or("forward") {
        "reverse" => {
            let batch_first = node.get_attr_opt::<i64>("layout")?.unwrap_or(0) == 1;
            let has_y = node.output.first().is_some_and(|y| !y.is_empty());
            super::wrap(ctx, node, Reverse { batch_first, has_y })
        }
        "forward" | "bidirectional" => super::tract_op(ctx, node),
        other => bail!(
            "{}: direction must be forward, reverse or bidirectional, got {other}",
            node.op_type
        ),
    }
}

#[derive(Clone, Debug)]
struct Reverse {
    /// `layout=1`: time is the second axis of X and Y, not the first.
    batch_first: bool,
    /// The node computes Y, its first output.
    has_y: bool,
}

impl Reverse {
    /// `wire` reversed along the time axis.
    fn reversed(
        &self,
        name: String,
        model: &mut TypedModel,
        wire: OutletId,
    ) -> TractResult<OutletId> {
        let time = self.batch_first as usize;
        Ok(model.wire_node(name, Downsample::new(time, -1, 0), &[wire])?[0])
    }
}

impl Around for Reverse {
    fn name(&self) -> &'static str {
        "ReverseRecurrence"
    }

    fn wire(
        &self,
        tract: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut inputs: TVec<OutletId> = inputs.into();
        inputs[0] = self.reversed(format!("{prefix}.reverse_x"), model, inputs[0])?;
        let mut outputs = tract.wire(&format!("{prefix}.forward"), model, &inputs)?;
        if self.has_y {
            outputs[0] = self.reversed(format!("{prefix}.reverse_y"), model, outputs[0])?;
        }
        Ok(outputs)
    }
}
