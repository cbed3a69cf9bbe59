//! `Attention` (operator set 23) with an `attn_mask`: a query whose every key is hidden
//! (a row of the mask all -inf, or hidden by the mask and the causal mask together) has
//! nothing to attend to. ONNX, like onnxruntime, answers 0 for it; tract's softmax divides
//! 0 by 0 and answers NaN. The node stays tract's, and its `Y` is set to 0 on those rows.
//!
//! Configurations tract gets wrong in other ways (a local window, a causal mask with a
//! past) are refused in `engine::vet`; those it does not implement tract refuses itself.

use super::Around;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_core::ops::logic::{Iff, and, comp_eq, comp_gt};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("Attention", attention);
}

fn attention(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let has_mask = node.input.get(3).is_some_and(|name| !name.is_empty());
    if !has_mask {
        return super::tract_op(ctx, node);
    }
    let guard = HiddenRowsToZero {
        is_causal: node.get_attr_opt::<i64>("is_causal")?.unwrap_or(0) == 1,
        q_num_heads: node.get_attr_opt::<i64>("q_num_heads")?,
    };
    super::wrap(ctx, node, guard)
}

#[derive(Clone, Debug)]
struct HiddenRowsToZero {
    is_causal: bool,
    /// For 3D inputs, whose heads are packed in the last axis.
    q_num_heads: Option<i64>,
}

/// Where `attn_mask` sits among the node's inputs: after Q, K and V.
const MASK: usize = 3;

impl HiddenRowsToZero {
    /// A boolean `[b, h, q, 1]` (b and h 1 when the mask broadcasts them): true for the
    /// queries that see no key.
    fn hidden_rows(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<OutletId> {
        let name = |step: &str| format!("{prefix}.hidden_rows.{step}");
        let mask_fact = model.outlet_fact(inputs[MASK])?.clone();
        let mut mask = inputs[MASK];
        for ix in mask_fact.rank()..4 {
            mask = model.wire_node(name(&format!("add_axis_{ix}")), AxisOp::Add(0), &[mask])?[0];
        }
        let minus_inf = tensor0(f32::NEG_INFINITY)
            .cast_to_dt(mask_fact.datum_type)?
            .into_owned();
        let minus_inf = model.add_const(name("minus_inf"), minus_inf.broadcast_into_rank(4)?)?;
        let gt = TypedBinOp(comp_gt(), None);
        let mut visible =
            wire_with_rank_broadcast(name("visible"), model, gt, &[mask, minus_inf])?[0];
        if self.is_causal {
            let (queries, keys) = self.sequence_lengths(model, inputs)?;
            let causal = tract_ndarray::Array2::from_shape_fn((queries, keys), |(i, j)| j <= i);
            let causal =
                model.add_const(name("causal"), causal.into_tensor().broadcast_into_rank(4)?)?;
            visible =
                wire_with_rank_broadcast(name("visible_causal"), model, and(), &[visible, causal])?
                    [0];
        }
        let visible = model.wire_node(name("as_f32"), cast(DatumType::F32), &[visible])?[0];
        let count = model.wire_node(
            name("count"),
            Reduce::new(tvec![3], Reducer::Sum),
            &[visible],
        )?[0];
        let zero = model.add_const(name("zero"), tensor0(0f32).broadcast_into_rank(4)?)?;
        let eq = TypedBinOp(comp_eq(), None);
        Ok(wire_with_rank_broadcast(name("none"), model, eq, &[count, zero])?[0])
    }

    /// The query and key lengths, which a causal mask needs concrete (as tract does).
    fn sequence_lengths(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<(usize, usize)> {
        let (q, k) = (model.outlet_fact(inputs[0])?, model.outlet_fact(inputs[1])?);
        let axis = if q.rank() == 4 { 2 } else { 1 };
        let length = |fact: &TypedFact| {
            fact.shape[axis].to_usize().context(
                "Attention: a causal mask with an attn_mask needs sequence lengths known at load",
            )
        };
        Ok((length(q)?, length(k)?))
    }
}

impl Around for HiddenRowsToZero {
    fn name(&self) -> &'static str {
        "AttentionHiddenRowsToZero"
    }

    fn wire(
        &self,
        tract: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut outputs = tract.wire(&format!("{prefix}.tract"), model, inputs)?;
        if model.outlet_fact(inputs[MASK])?.datum_type == DatumType::Bool {
            // tract refuses boolean masks when it optimises the model.
            return Ok(outputs);
        }
        let hidden = self.hidden_rows(prefix, model, inputs)?;
        let y_fact = model.outlet_fact(outputs[0])?.clone();
        let zero = tensor0(0f32).cast_to_dt(y_fact.datum_type)?.into_owned();
        let zero = model.add_const(format!("{prefix}.zero"), zero.broadcast_into_rank(4)?)?;
        outputs[0] = if y_fact.rank() == 4 {
            wire_with_rank_broadcast(prefix, model, Iff, &[hidden, zero, outputs[0]])?[0]
        } else {
            // Y is [batch, queries, heads * v_head]: the heads are split out, and the rows
            // moved to the same axes, for the selection, then packed again.
            let heads = self
                .q_num_heads
                .context("Attention: 3D inputs need q_num_heads")? as usize;
            let packed = y_fact.shape[2].clone();
            let split = tvec![heads.to_dim(), packed.clone() / heads];
            let y = model.wire_node(
                format!("{prefix}.split_heads"),
                AxisOp::Reshape(2, tvec![packed.clone()], split.clone()),
                &[outputs[0]],
            )?[0];
            let hidden = model.wire_node(
                format!("{prefix}.rows_first"),
                AxisOp::Move(1, 2),
                &[hidden],
            )?[0];
            let y = wire_with_rank_broadcast(
                format!("{prefix}.select"),
                model,
                Iff,
                &[hidden, zero, y],
            )?[0];
            model.wire_node(prefix, AxisOp::Reshape(2, split, tvec![packed]), &[y])?[0]
        };
        Ok(outputs)
    }
}
