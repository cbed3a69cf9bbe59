//! `If`, as tract's, except that a condition known when the model is optimised picks its
//! branch there and then. Models test their input's size to choose how to process it (a
//! branch per resolution); once a plan is made for concrete input sizes, the condition is a
//! constant, and the branch not taken may well give outputs of another shape. tract's `If`
//! always becomes `IfThenElse`, which needs both branches to agree, so such a model could
//! never be planned; here the branch taken is inlined instead. With a condition only known
//! at run time, this is tract's `IfThenElse`, as before.

use tract_onnx::model::{ParseResult, ParsingContext};
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::tract_core::ops::logic::IfThenElse;
use tract_onnx::tract_hir::internal::*;

/// Reads an `If` node and its two branches. The values a branch reads from outside it
/// become inputs of the node, after the condition.
pub(super) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let then_graph: &GraphProto = node.get_attr("then_branch")?;
    let else_graph: &GraphProto = node.get_attr("else_branch")?;
    let ParseResult {
        model: then_body,
        unresolved_inputs: then_reads,
        ..
    } = ctx.parse_graph(then_graph)?;
    let ParseResult {
        model: else_body,
        unresolved_inputs: else_reads,
        ..
    } = ctx.parse_graph(else_graph)?;
    let mut reads: Vec<String> = then_reads.iter().chain(&else_reads).cloned().collect();
    reads.sort();
    reads.dedup();
    let mapping = |branch_reads: &[String]| -> Vec<usize> {
        branch_reads
            .iter()
            .map(|name| 1 + reads.iter().position(|r| r == name).expect("listed above"))
            .collect()
    };
    let op = If {
        then_input_mapping: mapping(&then_reads),
        else_input_mapping: mapping(&else_reads),
        then_body,
        else_body,
    };
    Ok((Box::new(op), reads))
}

#[derive(Debug, Clone)]
struct If {
    then_body: InferenceModel,
    /// For each input of the branch, the node's input it reads (0 is the condition).
    then_input_mapping: Vec<usize>,
    else_body: InferenceModel,
    else_input_mapping: Vec<usize>,
}

// Two `If`s are never taken for one another (tract's own is the same).
impl PartialEq for If {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for If {}

impl If {
    fn branch(&self, condition: bool) -> (&InferenceModel, &[usize]) {
        if condition {
            (&self.then_body, &self.then_input_mapping)
        } else {
            (&self.else_body, &self.else_input_mapping)
        }
    }
}

impl Op for If {
    fn name(&self) -> StaticName {
        "If".into()
    }

    not_a_typed_op!();
}

impl EvalOp for If {
    op_out_of_plan!();

    /// Runs the branch the condition picks (while the model is analysed, never in a plan).
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (body, mapping) = self.branch(inputs[0].cast_to_scalar::<bool>()?);
        let inputs: TVec<TValue> = mapping.iter().map(|&ix| inputs[ix].clone()).collect();
        body.clone().into_runnable()?.run(inputs)
    }
}

impl InferenceOp for If {
    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        let mut inputs: TVec<InferenceFact> = inputs.into_iter().cloned().collect();
        let mut outputs: TVec<InferenceFact> = outputs.into_iter().cloned().collect();
        loop {
            let mut changed = inputs[0]
                .datum_type
                .unify_with(&bool::datum_type().into())?;
            for (body, mapping) in [
                (&mut self.then_body, &self.then_input_mapping),
                (&mut self.else_body, &self.else_input_mapping),
            ] {
                for (body_ix, &outer_ix) in mapping.iter().enumerate() {
                    changed |= body
                        .input_fact_mut(body_ix)?
                        .unify_with_mut(&mut inputs[outer_ix])?;
                }
            }
            match inputs[0].value.concretize() {
                // Only the branch taken says what the outputs are.
                Some(condition) => {
                    let body = if condition.cast_to_scalar::<bool>()? {
                        &mut self.then_body
                    } else {
                        &mut self.else_body
                    };
                    for (ix, output) in outputs.iter_mut().enumerate() {
                        changed |= body.output_fact_mut(ix)?.unify_with_mut(output)?;
                    }
                }
                // Either may be taken: both must agree with the outputs.
                None => {
                    for (ix, output) in outputs.iter_mut().enumerate() {
                        for body in [&mut self.then_body, &mut self.else_body] {
                            let fact = body.output_fact_mut(ix)?;
                            changed |= fact.shape.unify_with_mut(&mut output.shape)?;
                            changed |= fact.datum_type.unify_with_mut(&mut output.datum_type)?;
                        }
                    }
                }
            }
            changed |= self.then_body.analyse(false)?;
            changed |= self.else_body.analyse(false)?;
            if !changed {
                return Ok((inputs, outputs, observed.into_iter().cloned().collect()));
            }
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        let (then_outputs, else_outputs) =
            (self.then_body.outputs.len(), self.else_body.outputs.len());
        ensure!(
            then_outputs == else_outputs,
            "the then_branch gives {then_outputs} outputs and the else_branch {else_outputs}"
        );
        Ok(then_outputs)
    }

    fn to_typed(
        &self,
        _source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let inputs: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
        if let Some(condition) = target.outlet_fact(inputs[0])?.konst.clone() {
            let (body, body_mapping) = self.branch(condition.cast_to_scalar::<bool>()?);
            return inline(&node.name, body, body_mapping, &inputs, target);
        }
        let op = IfThenElse {
            then_body: self.then_body.clone().into_typed()?,
            then_input_mapping: self.then_input_mapping.clone(),
            else_body: self.else_body.clone().into_typed()?,
            else_input_mapping: self.else_input_mapping.clone(),
        };
        target.wire_node(&node.name, op, &inputs)
    }

    as_op!();
}

/// Wires a branch's nodes into `target`, named after the `If` node, its inputs read from
/// the node's `inputs` as `body_mapping` says; returns its outputs.
fn inline(
    name: &str,
    body: &InferenceModel,
    body_mapping: &[usize],
    inputs: &[OutletId],
    target: &mut TypedModel,
) -> TractResult<TVec<OutletId>> {
    let body = body.clone().into_typed()?;
    let mut wired: HashMap<OutletId, OutletId> = HashMap::new();
    for (body_ix, &outer_ix) in body_mapping.iter().enumerate() {
        wired.insert(body.inputs[body_ix], inputs[outer_ix]);
    }
    for id in body.eval_order()? {
        let node = body.node(id);
        if body.inputs.contains(&OutletId::new(id, 0)) {
            continue;
        }
        let node_inputs: TVec<OutletId> = node.inputs.iter().map(|i| wired[i]).collect();
        let outputs = target.wire_node(
            format!("{name}.{}", node.name),
            node.op.clone(),
            &node_inputs,
        )?;
        for (ix, outlet) in outputs.into_iter().enumerate() {
            wired.insert(OutletId::new(id, ix), outlet);
        }
    }
    Ok(body.outputs.iter().map(|o| wired[o]).collect())
}
