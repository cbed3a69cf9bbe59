//! Maxima and minima over values that are all -inf (or +inf), where tract starts from the
//! lowest (highest) finite value instead of the infinity:
//! - `ReduceMax`, `MaxPool`, `GlobalMaxPool` of a group of -inf values, or of an empty
//!   group, answer -3.4e38 instead of -inf (fully masked attention rows, say); `ReduceMin`
//!   likewise with +inf. On FP16 and FP32 tensors they run on the values widened to FP64,
//!   where tract's starting point lies beyond every FP32 value and rounds back to the
//!   infinity; finite answers are the same. FP64 tensors (there is no wider type) stay
//!   tract's.
//! - `ArgMax` and `ArgMin` with `select_last_index=1` answer index 0 for a row of -inf
//!   (+inf) values, not the last index. The values are widened, then -inf raised to FP64's
//!   lowest value (+inf lowered to its highest), which ties with tract's starting point
//!   while every FP32 value stays apart from it.
//! - `ReduceMax` and `ReduceMin` on BOOL (operator set 20) fail the run in tract ("Bool is
//!   not a number"). They run on the values as UINT8 (false 0, true 1): the maximum is
//!   "any", the minimum "all", an empty group false and true, as ONNX defines.
//!
//! Integers, and the other outputs of these operators (`MaxPool`'s indices), stay tract's.

use super::Around;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::{cast, wire_cast};
use tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_core::ops::math::{max, min};
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    for op in ["ReduceMax", "ReduceMin", "MaxPool", "GlobalMaxPool"] {
        registry.insert(op, |ctx, node| {
            super::wrap(ctx, node, Widened { clamp: None })
        });
    }
    registry.insert("ArgMax", |ctx, node| arg(ctx, node, Clamp::RaiseMinusInf));
    registry.insert("ArgMin", |ctx, node| arg(ctx, node, Clamp::LowerPlusInf));
}

fn arg(
    ctx: &ParsingContext,
    node: &NodeProto,
    clamp: Clamp,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if node.get_attr_opt::<i64>("select_last_index")?.unwrap_or(0) == 1 {
        super::wrap(ctx, node, Widened { clamp: Some(clamp) })
    } else {
        super::tract_op(ctx, node)
    }
}

/// How an `ArgMax` (`ArgMin`) brings an infinity to tract's starting point.
#[derive(Clone, Copy, Debug)]
enum Clamp {
    RaiseMinusInf,
    LowerPlusInf,
}

#[derive(Clone, Debug)]
struct Widened {
    clamp: Option<Clamp>,
}

impl Around for Widened {
    fn name(&self) -> &'static str {
        "WidenedExtremes"
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
            DatumType::Bool if self.clamp.is_none() => DatumType::U8,
            _ => return tract.wire(prefix, model, inputs),
        };
        let mut inputs: TVec<OutletId> = inputs.into();
        inputs[0] = wire_cast(format!("{prefix}.widen"), model, &inputs[..1], wide)?[0];
        if let Some(clamp) = self.clamp {
            let (bound, op) = match clamp {
                Clamp::RaiseMinusInf => (f64::MIN, max()),
                Clamp::LowerPlusInf => (f64::MAX, min()),
            };
            let rank = model.outlet_fact(inputs[0])?.rank();
            let bound = model.add_const(
                format!("{prefix}.bound"),
                tensor0(bound).broadcast_into_rank(rank)?,
            )?;
            inputs[0] = wire_with_rank_broadcast(
                format!("{prefix}.clamp"),
                model,
                op,
                &[inputs[0], bound],
            )?[0];
        }
        let mut outputs = tract.wire(&format!("{prefix}.wide"), model, &inputs)?;
        // The extreme values narrow back; ArgMax's indices and MaxPool's stay as they are.
        if model.outlet_fact(outputs[0])?.datum_type == wide {
            outputs[0] = model.wire_node(prefix, cast(dt), &[outputs[0]])?[0];
        }
        Ok(outputs)
    }
}
