//! `Slice` (operator set 10 and later) whose `starts`, `ends`, `axes` or `steps` are fed at
//! run time. tract types such a slice in a throwaway model: the symbol it makes for the
//! output's length belongs to that model's symbol scope, which is gone by the time the
//! model runs, and every run fails ("Symbol points to an invalid (dead ?) SymbolScope").
//! It also takes the run-time starts and ends as they are, without the clamping and the
//! negative indices ONNX defines, and types no run-time `steps` or `axes` at all.
//!
//! Here a slice whose parameters are all constants stays tract's. Otherwise the slice is
//! our own operator, after the ONNX specification: each sliced axis gets a symbol made in
//! the model's own scope, bound from the actual output when the model runs.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ndarray::Axis;
use tract_onnx::tract_core::ops::array::StridedSlice;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("Slice", slice);
}

fn slice(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (op, closures) = super::tract_op(ctx, node)?;
    // Before operator set 10 the parameters are attributes: nothing comes at run time.
    let Some(tract) = op.as_op().downcast_ref::<StridedSlice>() else {
        return Ok((op, closures));
    };
    Ok((
        expand(OnnxSlice {
            tract: tract.clone(),
        }),
        closures,
    ))
}

/// tract's slice, for its inference rules and for constant parameters.
#[derive(Clone, Debug)]
struct OnnxSlice {
    tract: StridedSlice,
}

impl Expansion for OnnxSlice {
    fn name(&self) -> StaticName {
        "OnnxSlice".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        InferenceRulesOp::rules(&self.tract, s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let constant = |ix: usize| -> TractResult<Option<Arc<Tensor>>> {
            Ok(model.outlet_fact(inputs[ix])?.konst.clone())
        };
        let params = (1..inputs.len())
            .map(constant)
            .collect::<TractResult<Vec<_>>>()?;
        if params.iter().all(Option::is_some) {
            return model.wire_node(prefix, self.tract.clone(), inputs);
        }
        let rank = model.outlet_fact(inputs[0])?.rank();
        let sliced = self.axes_maybe_sliced(model, inputs, rank)?;
        let lengths = (0..rank)
            .map(|axis| sliced[axis].then(|| model.symbols.new_with_prefix("slice")))
            .collect();
        let op = DynamicSlice {
            axes_input: self.tract.optional_axes_input,
            steps_input: self.tract.optional_steps_input,
            lengths,
        };
        model.wire_node(prefix, op, inputs)
    }
}

impl OnnxSlice {
    /// Which axes the slice may shorten: those `axes` names when it is a constant, the
    /// first `len(starts)` when there is no `axes`, else all.
    fn axes_maybe_sliced(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
        rank: usize,
    ) -> TractResult<Vec<bool>> {
        let mut sliced = vec![true; rank];
        match self.tract.optional_axes_input {
            Some(ix) => {
                if let Some(axes) = &model.outlet_fact(inputs[ix])?.konst {
                    sliced = vec![false; rank];
                    for &axis in axes
                        .cast_to::<i64>()?
                        .try_as_plain_ram()?
                        .as_slice::<i64>()?
                    {
                        sliced[normalize_axis(axis, rank)?] = true;
                    }
                }
            }
            None => {
                if let Ok(count) = model.outlet_fact(inputs[1])?.shape[0].to_usize() {
                    sliced.iter_mut().skip(count).for_each(|s| *s = false);
                }
            }
        }
        Ok(sliced)
    }
}

fn normalize_axis(axis: i64, rank: usize) -> TractResult<usize> {
    let rank = rank as i64;
    ensure!(
        (-rank..rank).contains(&axis),
        "Slice: axis {axis} is out of range for rank {rank}"
    );
    Ok(axis.rem_euclid(rank) as usize)
}

/// The indices ONNX's Slice keeps along an axis of size `dim`: from `start` towards `end`
/// (excluded) by `step`, negative values counting from the end, both clamped to the axis.
fn kept_indices(dim: usize, start: i64, end: i64, step: i64) -> TractResult<Vec<usize>> {
    ensure!(step != 0, "Slice: a step is 0");
    let dim = dim as i64;
    let from_end = |i: i64| if i < 0 { i.saturating_add(dim) } else { i };
    let (start, end) = (from_end(start), from_end(end));
    let mut kept = vec![];
    if step > 0 {
        let (mut i, end) = (start.clamp(0, dim), end.clamp(0, dim));
        while i < end {
            kept.push(i as usize);
            i = i.saturating_add(step);
        }
    } else if dim > 0 {
        let (mut i, end) = (start.clamp(0, dim - 1), end.clamp(-1, dim - 1));
        while i > end {
            kept.push(i as usize);
            i = i.saturating_add(step);
        }
    }
    Ok(kept)
}

/// A slice with parameters known only at run time. `lengths` holds, for each axis the
/// slice may shorten, the symbol its length is bound to.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct DynamicSlice {
    axes_input: Option<usize>,
    steps_input: Option<usize>,
    lengths: TVec<Option<Symbol>>,
}

impl DynamicSlice {
    /// The kept indices of each axis (`None`: all of it).
    fn plan(&self, inputs: &[TValue]) -> TractResult<Vec<Option<Vec<usize>>>> {
        let values = |ix: usize| -> TractResult<Vec<i64>> {
            Ok(inputs[ix]
                .cast_to::<i64>()?
                .try_as_plain_ram()?
                .as_slice::<i64>()?
                .to_vec())
        };
        let shape = inputs[0].shape();
        let (starts, ends) = (values(1)?, values(2)?);
        let axes = match self.axes_input {
            Some(ix) => values(ix)?,
            None => (0..starts.len() as i64).collect(),
        };
        let steps = match self.steps_input {
            Some(ix) => values(ix)?,
            None => vec![1; starts.len()],
        };
        ensure!(
            [ends.len(), axes.len(), steps.len()]
                .iter()
                .all(|&n| n == starts.len()),
            "Slice: starts, ends, axes and steps differ in length"
        );
        let mut plan = vec![None; shape.len()];
        for (ix, &axis) in axes.iter().enumerate() {
            let axis = normalize_axis(axis, shape.len())?;
            ensure!(plan[axis].is_none(), "Slice: axis {axis} is given twice");
            ensure!(
                self.lengths[axis].is_some(),
                "Slice: axis {axis} was typed as not sliced"
            );
            plan[axis] = Some(kept_indices(shape[axis], starts[ix], ends[ix], steps[ix])?);
        }
        Ok(plan)
    }

    fn eval_t<T: Datum>(data: &Tensor, plan: &[Option<Vec<usize>>]) -> TractResult<Tensor> {
        let mut array = data.to_plain_array_view::<T>()?.to_owned();
        for (axis, kept) in plan.iter().enumerate() {
            if let Some(kept) = kept {
                array = array.select(Axis(axis), kept);
            }
        }
        Ok(array.into_tensor())
    }
}

impl Op for DynamicSlice {
    fn name(&self) -> StaticName {
        "DynamicSlice".into()
    }

    /// The sliced lengths are bound when the model runs.
    fn mints_runtime_symbols(&self) -> bool {
        true
    }

    op_as_typed_op!();
}

impl EvalOp for DynamicSlice {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let plan = self.plan(&inputs)?;
        let data = &inputs[0];
        let output = dispatch_datum!(Self::eval_t(data.datum_type())(data, &plan))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DynamicSlice {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs[0];
        ensure!(
            input.rank() == self.lengths.len(),
            "Slice: the input's rank changed"
        );
        let shape: TVec<TDim> = (input.shape.iter().zip(&self.lengths))
            .map(|(dim, length)| match length {
                Some(symbol) => symbol.to_dim(),
                None => dim.clone(),
            })
            .collect();
        Ok(tvec!(input.datum_type.fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::kept_indices;

    #[test]
    fn indices_follow_the_onnx_rules() {
        assert_eq!(kept_indices(5, 0, 3, 1).unwrap(), [0, 1, 2]);
        assert_eq!(kept_indices(5, -2, i64::MAX, 1).unwrap(), [3, 4]);
        assert_eq!(kept_indices(5, 1, 1000, 2).unwrap(), [1, 3]);
        assert_eq!(
            kept_indices(5, i64::MAX, i64::MIN, -1).unwrap(),
            [4, 3, 2, 1, 0]
        );
        assert_eq!(kept_indices(5, -1, -4, -2).unwrap(), [4, 2]);
        assert_eq!(kept_indices(5, 3, 1, 1).unwrap(), Vec::<usize>::new());
        assert_eq!(kept_indices(0, -1, -10, -1).unwrap(), Vec::<usize>::new());
        assert!(kept_indices(5, 0, 3, 0).is_err());
    }
}
