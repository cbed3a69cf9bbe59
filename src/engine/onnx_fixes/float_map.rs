//! The operator behind our `Celu` and `Swish`: a function of each element of a float
//! tensor, computed in f64 and rounded once to the tensor's type, so an FP16 model is
//! answered as precisely as its type allows.

use tract_onnx::tract_hir::internal::*;

/// `f(x, alpha)` for each element `x`.
#[derive(Clone, Debug)]
pub struct FloatMap {
    pub name: &'static str,
    pub alpha: f64,
    pub f: fn(f64, f64) -> f64,
}

// One name computes one function, so name and alpha tell two maps apart.
impl PartialEq for FloatMap {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.alpha.to_bits() == other.alpha.to_bits()
    }
}

impl Eq for FloatMap {}

impl FloatMap {
    fn map<T: Datum + Copy>(
        &self,
        input: &Tensor,
        into: impl Fn(T) -> f64,
        from: impl Fn(f64) -> T,
    ) -> TractResult<Tensor> {
        let view = input.to_plain_array_view::<T>()?;
        Ok(view
            .mapv(|x| from((self.f)(into(x), self.alpha)))
            .into_tensor())
    }
}

/// An Expansion for an operator of one float input, one output of its type and shape.
impl Expansion for FloatMap {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for FloatMap {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    op_as_typed_op!();
}

impl EvalOp for FloatMap {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let output = match input.datum_type() {
            DatumType::F16 => self.map::<f16>(&input, |x| x.to_f64(), f16::from_f64)?,
            DatumType::F32 => self.map::<f32>(&input, f64::from, |y| y as f32)?,
            DatumType::F64 => self.map::<f64>(&input, |x| x, |y| y)?,
            other => bail!("{} takes a float tensor, not {other:?}", self.name),
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FloatMap {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type.is_float(),
            "{} takes a float tensor, not {:?}",
            self.name,
            inputs[0].datum_type
        );
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}
