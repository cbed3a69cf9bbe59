//! `SpaceToDepth` in `mode="CRD"` (operator set 28): each output channel takes one input
//! channel's `blocksize x blocksize` block in channel-major order, the layout
//! `DepthToSpace` undoes in its own CRD mode. tract reads no `mode` and always answers the
//! default `DCR` layout, which stays tract's.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("SpaceToDepth", space_to_depth);
}

fn space_to_depth(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    match node.get_attr_opt::<&str>("mode")?.unwrap_or("DCR") {
        "DCR" => super::tract_op(ctx, node),
        "CRD" => {
            let blocksize = node.get_attr_opt("blocksize")?.unwrap_or(2);
            ensure!(blocksize > 0, "SpaceToDepth: blocksize must be positive");
            Ok((expand(SpaceToDepthCrd { blocksize }), vec![]))
        }
        other => bail!("SpaceToDepth: mode must be DCR or CRD, got {other}"),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SpaceToDepthCrd {
    blocksize: usize,
}

impl Expansion for SpaceToDepthCrd {
    fn name(&self) -> StaticName {
        "SpaceToDepthCrd".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].shape, move |s, shape| {
            let b = self.blocksize;
            let output = tvec!(
                shape[0].clone(),
                shape[1].clone() * b * b,
                shape[2].clone() / b,
                shape[3].clone() / b,
            );
            s.equals(&outputs[0].shape, ShapeFactoid::from(output))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let shape = model.outlet_fact(inputs[0])?.shape.to_tvec();
        let (channels, height, width) = (shape[1].clone(), shape[2].clone(), shape[3].clone());
        let b = self.blocksize;
        // [N, C, H, W] -> [N, C, H/b, b, W/b, b] -> [N, C, b, b, H/b, W/b] -> [N, C*b*b, H/b, W/b]
        let steps = [
            AxisOp::Reshape(
                2,
                tvec![height.clone(), width.clone()],
                tvec![height / b, b.to_dim(), width / b, b.to_dim()],
            ),
            AxisOp::Move(3, 2),
            AxisOp::Move(5, 3),
            AxisOp::Reshape(
                1,
                tvec![channels.clone(), b.to_dim(), b.to_dim()],
                tvec![channels * b * b],
            ),
        ];
        let mut wire = inputs[0];
        for (ix, step) in steps.into_iter().enumerate() {
            wire = model.wire_node(format!("{prefix}.{ix}"), step, &[wire])?[0];
        }
        model.rename_node(wire.node, prefix)?;
        Ok(tvec!(wire))
    }
}
