//! Our own versions of ai.onnx operators tract-onnx 0.23.9 answers wrong, registered in
//! place of tract's. Each was found by the conformance suite (tests/conformance.rs, the
//! ONNX backend node tests) and is checked against the ONNX reference there:
//! | operator | what tract gets wrong | file |
//! |---|---|---|
//! | Attention | a query the `attn_mask` hides from every key comes out NaN (ONNX: 0) | `attention.rs` |
//! | BitShift | shifts by a negative amount or by the bit width or more (ONNX: 0, or -1 for a negative value shifted right) | `bit_shift.rs` |
//! | Celu | leaves out the factor `alpha` on negative inputs | `celu.rs` |
//! | Swish | ignores `alpha` | `swish.rs` |
//! | SpaceToDepth | ignores `mode` (CRD) | `space_to_depth.rs` |
//! | Conv | accumulates FP16 convolutions in FP16 (4096 ones sum to 2048) | `conv.rs` |
//! | GRU, LSTM, RNN | ignore `direction="reverse"` and run forward | `recurrent.rs` |
//! | ReduceMax, ReduceMin, MaxPool, GlobalMaxPool | answer the lowest (highest) finite float for a group of -inf (+inf) or an empty group; fail on BOOL (Reduce) | `extremes.rs` |
//! | ArgMax, ArgMin | with `select_last_index=1`, answer index 0 for a row of -inf (+inf) | `extremes.rs` |
//! | Slice | with starts or ends fed at run time, names the output's sizes with a symbol of a scope that is gone, and every run fails | `slice.rs` |
//! | If | always builds `IfThenElse`, which needs both branches to give outputs of one shape, even when the condition is known once input sizes are concrete (a branch per resolution) | `if_on_shapes.rs` |
//!
//! Configurations too large to reimplement are refused instead, in `engine::vet`.

mod attention;
mod bit_shift;
mod celu;
mod conv;
mod extremes;
mod float_map;
mod if_on_shapes;
mod recurrent;
mod slice;
mod space_to_depth;
mod swish;

use std::sync::LazyLock;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Adds our operators to `registry`, replacing tract's of the same name.
pub fn register(registry: &mut OnnxOpRegister) {
    attention::register(registry);
    bit_shift::register(registry);
    celu::register(registry);
    conv::register(registry);
    extremes::register(registry);
    registry.insert("If", if_on_shapes::parse);
    recurrent::register(registry);
    slice::register(registry);
    space_to_depth::register(registry);
    swish::register(registry);
}

/// tract-onnx's own operator builders, for our operators that adjust what tract builds.
static TRACT: LazyLock<OnnxOpRegister> = LazyLock::new(|| tract_onnx::onnx().op_register);

/// What tract's own builder makes of `node`: its operator and the names it closes over.
fn tract_op(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let builder = TRACT
        .0
        .get(&node.op_type)
        .with_context(|| format!("tract has no operator {}", node.op_type))?;
    builder(ctx, node)
}

/// `tract_op` for an operator tract builds as an `Expansion` (one that wires tract's typed
/// operators when the model is typed), as that expansion.
fn tract_expansion(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn Expansion>, Vec<String>)> {
    let (op, closures) = tract_op(ctx, node)?;
    let expansion = op
        .as_op()
        .downcast_ref::<Box<dyn Expansion>>()
        .with_context(|| format!("tract's {} is not an expansion", node.op_type))?
        .clone();
    Ok((expansion, closures))
}

/// What one of our operators wires around tract's own expansion of the same node.
trait Around: std::fmt::Debug + Clone + Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Wires the node: `tract` is tract's expansion, to wire somewhere in between.
    fn wire(
        &self,
        tract: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>>;
}

/// tract's expansion of a node with our wiring around it: tract's inference rules (the
/// types and shapes are tract's), our `wire`.
#[derive(Clone, Debug)]
struct Wrapped<A: Around> {
    tract: Box<dyn Expansion>,
    around: A,
}

/// Builds `node` as tract does, then wraps it in `around`.
fn wrap<A: Around>(
    ctx: &ParsingContext,
    node: &NodeProto,
    around: A,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (tract, closures) = tract_expansion(ctx, node)?;
    Ok((expand(Wrapped { tract, around }), closures))
}

impl<A: Around> Expansion for Wrapped<A> {
    fn name(&self) -> StaticName {
        self.around.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.tract.as_ref().nboutputs()
    }

    fn validation(&self) -> Validation {
        self.tract.as_ref().validation()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.tract.as_ref().info()
    }

    fn runs_out_of_plan(&self) -> bool {
        self.tract.as_ref().runs_out_of_plan()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.tract.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.around.wire(&*self.tract, prefix, model, inputs)
    }
}
