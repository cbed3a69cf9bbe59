//! The tract side: `Trees` is the operator of the inference model (its shape and type
//! rules); once the input type is known it becomes `EvaluateTrees`, a typed operator that
//! holds the laid-out forest and evaluates it.

use super::attributes::Attributes;
use super::classification::{Classes, Finish, Labels};
use super::ensemble::Ensemble;
use super::forest::Forest;
use super::real::Real;
use super::regression::Regression;
use super::{v3, v5};
use std::borrow::Cow;
use std::fmt;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

pub fn classifier(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let attrs = Attributes::new(ctx, node);
    let (ensemble, classes) = v3::classifier(&attrs)?;
    let declared = attrs
        .outputs()
        .iter()
        .filter(|name| !name.is_empty())
        .count();
    if declared != 2 {
        return Err(attrs.refuse(format!(
            "declares {declared} output(s); it has two, the label and the scores"
        )));
    }
    let kind = Kind::Classifier(classes);
    Ok((
        expand(Trees::new("TreeEnsembleClassifier", ensemble, kind)),
        vec![],
    ))
}

pub fn regressor(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let ensemble = v3::regressor(&Attributes::new(ctx, node))?;
    Ok((
        expand(Trees::new(
            "TreeEnsembleRegressor",
            ensemble,
            Kind::Regressor,
        )),
        vec![],
    ))
}

pub fn tree_ensemble(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let ensemble = v5::tree_ensemble(&Attributes::new(ctx, node))?;
    Ok((
        expand(Trees::new("TreeEnsemble", ensemble, Kind::TreeEnsemble)),
        vec![],
    ))
}

/// What the operator answers.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// A label per row and a score per class.
    Classifier(Classes),
    /// `TreeEnsembleRegressor`: float outputs.
    Regressor,
    /// `TreeEnsemble`: outputs of the input's type.
    TreeEnsemble,
}

#[derive(Clone)]
struct Trees {
    name: &'static str,
    spec: Arc<(Ensemble, Kind)>,
}

impl Trees {
    fn new(name: &'static str, ensemble: Ensemble, kind: Kind) -> Trees {
        Trees {
            name,
            spec: Arc::new((ensemble, kind)),
        }
    }
}

impl fmt::Debug for Trees {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({} trees)", self.name, self.spec.0.roots.len())
    }
}

impl Expansion for Trees {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(match &self.spec.1 {
            Kind::Classifier(_) => 2,
            Kind::Regressor | Kind::TreeEnsemble => 1,
        })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, self.nboutputs()?)?;
        // [rows, features], as onnxruntime requires.
        s.equals(&inputs[0].rank, 2)?;
        let n = self.spec.0.n_outputs;
        // (output, rank, datum type or None for the input's type)
        let mut shapes: Vec<(&TensorProxy, usize, Option<DatumType>)> = vec![];
        match &self.spec.1 {
            Kind::Classifier(classes) => {
                let label = match classes.labels {
                    Labels::Int64(_) => i64::datum_type(),
                    Labels::Strings(_) => String::datum_type(),
                };
                shapes.push((&outputs[0], 1, Some(label)));
                shapes.push((&outputs[1], 2, Some(f32::datum_type())));
            }
            Kind::Regressor => shapes.push((&outputs[0], 2, Some(f32::datum_type()))),
            Kind::TreeEnsemble => shapes.push((&outputs[0], 2, None)),
        }
        for &(output, rank, dt) in &shapes {
            match dt {
                Some(dt) => s.equals(&output.datum_type, dt)?,
                None => s.equals(&output.datum_type, &inputs[0].datum_type)?,
            }
            s.equals(&output.rank, rank as i64)?;
            s.equals(&output.shape[0], &inputs[0].shape[0])?;
            if rank == 2 {
                s.equals(&output.shape[1], n.to_dim())?;
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?.datum_type;
        let supported: &[DatumType] = match self.spec.1 {
            Kind::TreeEnsemble => &[DatumType::F32, DatumType::F64],
            // tract types some int64 tensors (a Cast's result) as TDim, its symbolic integer.
            _ => &[
                DatumType::F32,
                DatumType::F64,
                DatumType::I32,
                DatumType::I64,
                DatumType::TDim,
            ],
        };
        if !supported.contains(&input) {
            bail!(
                "{} node '{prefix}': its input is {input:?}; it takes {supported:?}",
                self.name
            );
        }
        let (ensemble, kind) = &*self.spec;
        let compiled = if input == DatumType::F64 || ensemble.double_attributes {
            Scorer::new(ensemble, kind, input).map(Compiled::F64)
        } else {
            Scorer::new(ensemble, kind, input).map(Compiled::F32)
        }
        .map_err(|why| format_err!("{} node '{prefix}': {why}", self.name))?;
        let fact = model.outlet_fact(inputs[0])?;
        if fact.rank() != 2 {
            bail!(
                "{} node '{prefix}': its input is {}-D; it takes 2-D",
                self.name,
                fact.rank()
            );
        }
        let read = compiled.width();
        if let Ok(features) = fact.shape[1].to_usize()
            && read > features
        {
            bail!(
                "{} node '{prefix}': the trees read feature {} but the input has {features} features",
                self.name,
                read - 1
            );
        }
        let op = EvaluateTrees {
            name: self.name,
            compiled: Arc::new(compiled),
        };
        model.wire_node(prefix, op, inputs)
    }
}

/// The typed operator: evaluates the forest.
#[derive(Clone)]
pub struct EvaluateTrees {
    name: &'static str,
    compiled: Arc<Compiled>,
}

enum Compiled {
    F32(Scorer<f32>),
    F64(Scorer<f64>),
}

struct Scorer<T> {
    forest: Forest<T>,
    head: Head<T>,
}

enum Head<T> {
    Classifier {
        classes: Classes,
        finish: Finish<T>,
    },
    Regressor {
        regression: Regression<T>,
        output: DatumType,
    },
}

impl Compiled {
    /// How many features a row must have.
    fn width(&self) -> usize {
        match self {
            Compiled::F32(s) => s.forest.width(),
            Compiled::F64(s) => s.forest.width(),
        }
    }
}

impl PartialEq for EvaluateTrees {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.compiled, &other.compiled)
    }
}

impl Eq for EvaluateTrees {}

impl fmt::Debug for EvaluateTrees {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (trees, precision) = match &*self.compiled {
            Compiled::F32(s) => (s.forest.n_trees(), "float"),
            Compiled::F64(s) => (s.forest.n_trees(), "double"),
        };
        write!(f, "{} ({trees} trees, in {precision})", self.name)
    }
}

impl Op for EvaluateTrees {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    op_as_typed_op!();
}

impl EvalOp for EvaluateTrees {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        match &*self.compiled {
            Compiled::F32(s) => s.eval(&input),
            Compiled::F64(s) => s.eval(&input),
        }
        .map_err(|e| format_err!("{}: {e}", self.name))
    }
}

impl TypedOp for EvaluateTrees {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        if inputs[0].rank() != 2 {
            bail!(
                "{} takes a 2-D input, not {}-D",
                self.name,
                inputs[0].rank()
            );
        }
        let rows = inputs[0].shape[0].clone();
        Ok(match &*self.compiled {
            Compiled::F32(s) => s.head.facts(rows),
            Compiled::F64(s) => s.head.facts(rows),
        })
    }

    as_op!();
}

impl<T: Real> Head<T> {
    fn facts(&self, rows: TDim) -> TVec<TypedFact> {
        match self {
            Head::Classifier { classes, .. } => {
                let label = match classes.labels {
                    Labels::Int64(_) => DatumType::I64,
                    Labels::Strings(_) => DatumType::String,
                };
                tvec![
                    TypedFact::dt_shape(label, [rows.clone()]),
                    TypedFact::dt_shape(DatumType::F32, [rows, classes.labels.len().to_dim()]),
                ]
            }
            Head::Regressor { regression, output } => {
                tvec![TypedFact::dt_shape(
                    *output,
                    [rows, regression.n_outputs().to_dim()]
                )]
            }
        }
    }
}

impl<T: Real> Scorer<T> {
    fn new(ensemble: &Ensemble, kind: &Kind, input: DatumType) -> Result<Scorer<T>, String> {
        let head = match kind {
            Kind::Classifier(classes) => Head::Classifier {
                classes: classes.clone(),
                finish: Finish::new(ensemble),
            },
            Kind::Regressor => Head::Regressor {
                regression: Regression::new(ensemble),
                output: DatumType::F32,
            },
            Kind::TreeEnsemble => Head::Regressor {
                regression: Regression::new(ensemble),
                output: input,
            },
        };
        Ok(Scorer {
            forest: Forest::new(ensemble)?,
            head,
        })
    }

    fn eval(&self, input: &Tensor) -> TractResult<TVec<TValue>> {
        let &[rows, stride] = input.shape() else {
            bail!("takes a 2-D input, not {}-D", input.rank());
        };
        let width = self.forest.width();
        if stride < width {
            bail!(
                "the input has {stride} features per row, but the trees read feature {}",
                width - 1
            );
        }
        let x = features::<T>(input)?;
        let scores = self.forest.score(&x, rows, stride);
        match &self.head {
            Head::Classifier { classes, finish } => {
                let n = classes.labels.len();
                let (labels, values) = classes
                    .finish(finish, scores)
                    .map_err(|e| format_err!("{e}"))?;
                let labels = match &classes.labels {
                    Labels::Int64(names) => {
                        let picked: Vec<i64> = labels.iter().map(|&k| names[k]).collect();
                        Tensor::from_shape(&[rows], &picked)?
                    }
                    Labels::Strings(names) => {
                        let picked: Vec<String> =
                            labels.iter().map(|&k| names[k].clone()).collect();
                        tract_ndarray::Array1::from_vec(picked).into_tensor()
                    }
                };
                let scores = Tensor::from_shape(&[rows, n], &values)?;
                Ok(tvec![labels.into_tvalue(), scores.into_tvalue()])
            }
            Head::Regressor { regression, output } => {
                let values = regression.finish(scores);
                let shape = [rows, regression.n_outputs()];
                let tensor = if *output == T::datum_type() {
                    Tensor::from_shape(&shape, &values)?
                } else {
                    // Double computations for a float TreeEnsemble or regressor output.
                    let floats: Vec<f32> = values.iter().map(|v| v.to_f32()).collect();
                    Tensor::from_shape(&shape, &floats)?
                };
                Ok(tvec![tensor.into_tvalue()])
            }
        }
    }
}

/// The input's values in the ensemble's number type (borrowed when it already is).
fn features<T: Real>(input: &Tensor) -> TractResult<Cow<'_, [T]>> {
    let plain = input.try_as_plain_ram()?;
    if input.datum_type() == T::datum_type() {
        return Ok(Cow::Borrowed(plain.as_slice::<T>()?));
    }
    Ok(Cow::Owned(match input.datum_type() {
        DatumType::F32 => plain
            .as_slice::<f32>()?
            .iter()
            .map(|&v| T::from_f32(v))
            .collect(),
        DatumType::F64 => plain
            .as_slice::<f64>()?
            .iter()
            .map(|&v| T::from_f64(v))
            .collect(),
        DatumType::I64 => plain
            .as_slice::<i64>()?
            .iter()
            .map(|&v| T::from_i64(v))
            .collect(),
        DatumType::I32 => plain
            .as_slice::<i32>()?
            .iter()
            .map(|&v| T::from_i64(v as i64))
            .collect(),
        DatumType::TDim => input
            .cast_to::<i64>()?
            .try_as_plain_ram()?
            .as_slice::<i64>()?
            .iter()
            .map(|&v| T::from_i64(v))
            .collect(),
        other => bail!("cannot take a {other:?} input"),
    }))
}
