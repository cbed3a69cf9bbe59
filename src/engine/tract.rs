//! The one file that drives tract: read an ONNX model with our operators registered
//! (`onnx_ml`), check it, optimise it into a runnable plan, read its signature, and run the
//! plan on our tensors, converting them to and from tract's.
//!
//! The plan is immutable and tract's `run` takes `&self`, so one plan is shared (`Arc`) by
//! every request and runs side by side with no lock.

use super::error::LoadError;
use crate::tensor::{ClassLabels, DataType, Dim, Signature, Tensor, TensorData, TensorSpec};
use std::path::Path;
use tract_linalg::multithread::{self, Executor};
use tract_onnx::Onnx;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::{ModelProto, TypeProto, ValueInfoProto, type_proto};
use tract_onnx::prelude::tract_data::internal::{DimLike, anyhow, bail};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// The version of tract-onnx this binary was built with (build.rs reads it from Cargo.lock).
pub const TRACT_VERSION: &str = env!("ONNX_SERVE_TRACT_VERSION");

/// An optimised, runnable model.
pub(super) struct Plan {
    plan: Arc<TypedRunnableModel>,
}

/// A model tract could not analyse with its free input sizes, kept as parsed: a plan is
/// made from it for each concrete set of input shapes (`plan_for`).
pub(super) struct Source {
    model: InferenceModel,
}

/// What loading gives.
pub(super) enum Loaded {
    /// One plan serves every request.
    Optimised(Plan),
    /// Plans are made per input shape; `why` says what symbolic analysis could not do.
    PerShape { source: Source, why: String },
}

/// A pool of threads for tract's kernels, which one run may use (`--intra-op-threads`).
pub(super) struct IntraOpPool(Executor);

impl IntraOpPool {
    pub(super) fn new(threads: usize) -> IntraOpPool {
        IntraOpPool(Executor::multithread_with_name(threads, "intra-op"))
    }
}

/// Reads, checks and optimises the ONNX file, and reads its signature. `fixed` gives some
/// inputs concrete shapes before analysis (`--input-shape`).
pub(super) fn load(path: &Path, fixed: &[InputShape]) -> Result<Read, LoadError> {
    let onnx = onnx();
    let origin = path.display().to_string();
    // Tensors stored beside the file are found from its folder.
    let folder = path.parent().and_then(Path::to_str);
    let (model, declared) = read(&onnx, onnx.proto_model_for_path(path), folder, &origin)?;
    prepare(model, declared, &origin, fixed)
}

/// Like `load`, from the bytes of an ONNX file; `origin` names it in messages.
pub(super) fn load_bytes(
    bytes: &[u8],
    origin: &str,
    fixed: &[InputShape],
) -> Result<Read, LoadError> {
    let onnx = onnx();
    let (model, declared) = read(&onnx, onnx.proto_model_for_read(&mut &*bytes), None, origin)?;
    prepare(model, declared, origin, fixed)
}

/// What the ONNX graph itself declares of its outputs, which tract may lose: their names
/// (optimisation can rewire an output to a node tract names after itself: an `Attention`'s
/// `present_key`), and their types and shapes (tract reads them only as constraints).
struct Declared {
    output_names: Vec<String>,
    /// As the signature would give them, or why the graph does not say.
    outputs: Result<Vec<TensorSpec>, String>,
    carried: Carried,
}

/// What the model carries besides its graph, which the server names classes with: its
/// `metadata_props` (key, value) in the file's order, and its ONNX-ML classifier's labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub metadata: Vec<(String, String)>,
    pub classifier_labels: Option<ClassLabels>,
}

/// A model read: how it runs, its signature, and what it carries.
pub(super) struct Read {
    pub loaded: Loaded,
    pub signature: Signature,
    pub carried: Carried,
}

/// Parses an ONNX model with our operators, first refusing a model whose inputs no
/// protocol can carry (maps, sequences: `onnx_ml::refusal`), then one that tract would
/// answer wrong (`vet`). `folder` is where tensors stored beside the file would be. The
/// protobuf, which holds a copy of every weight, is dropped before the model is optimised.
fn read(
    onnx: &Onnx,
    proto: TractResult<ModelProto>,
    folder: Option<&str>,
    origin: &str,
) -> Result<(InferenceModel, Declared), LoadError> {
    let unreadable = |e: TractError| {
        LoadError(format!(
            "cannot read the ONNX model {origin}: {}",
            brief(&e)
        ))
    };
    let proto = proto.map_err(unreadable)?;
    if let Some(why) = super::onnx_ml::refusal(&proto) {
        return Err(LoadError(format!("cannot load {origin}: {why}")));
    }
    let parsed = onnx.parse(&proto, folder).map_err(unreadable)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(LoadError(format!(
            "cannot read the ONNX model {origin}: nodes read values nothing makes: {}",
            parsed.unresolved_inputs.join(", ")
        )));
    }
    refuse_unsupported(&parsed.model, origin)?;
    super::vet::vet(&proto).map_err(|why| LoadError(format!("cannot serve {origin}: {why}")))?;
    let carried = Carried {
        metadata: (proto.metadata_props.iter())
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        classifier_labels: super::onnx_ml::classifier_labels(&proto),
    };
    let graph = proto.graph.unwrap_or_default();
    let declared = Declared {
        output_names: graph.output.iter().map(|o| o.name.clone()).collect(),
        outputs: declared_outputs(&graph.output),
        carried,
    };
    Ok((parsed.model, declared))
}

/// Unsupported operators are reported by node name and operator before tract's own,
/// longer, message. A model whose free input sizes symbolic analysis cannot handle is kept
/// for plans per shape; any other failure to optimise refuses it.
fn prepare(
    mut model: InferenceModel,
    declared: Declared,
    origin: &str,
    fixed: &[InputShape],
) -> Result<Read, LoadError> {
    let fail = |what: &str, e: TractError| LoadError(format!("{what} {origin}: {}", brief(&e)));
    // Read before optimising: ZipMap nodes are found by their op in the model as parsed.
    let map_keys = super::onnx_ml::output_map_keys(&model);
    let cannot_load = |e: String| LoadError(format!("cannot load {origin}: {e}"));
    fix_input_shapes(&mut model, fixed).map_err(cannot_load)?;
    // Converters leave every input's batch dimension unnamed ([None, 3], [None, 1]); read
    // as independent, tract cannot join such inputs (a Concat of their columns), so that
    // failure is retried with one batch dimension shared by all of them.
    let shared_retry = (open_first_dims(&model) > 1).then(|| model.clone());
    close_open_input_dims(&mut model, false).map_err(cannot_load)?;
    let free_sizes = free_input_sizes(&model);
    let optimized = match model.clone().into_optimized() {
        Ok(optimized) => Ok(optimized),
        Err(first) => {
            let why = brief(&first);
            match shared_retry {
                Some(mut shared) => close_open_input_dims(&mut shared, true)
                    .ok()
                    .and_then(|()| shared.into_optimized().ok())
                    .ok_or(why),
                None => Err(why),
            }
        }
    };
    match optimized {
        Ok(optimized) => {
            let signature = signature_of(&optimized, &declared.output_names, map_keys)
                .map_err(|e| LoadError(format!("cannot serve {origin}: {e}")))?;
            let plan = optimized
                .into_runnable()
                .map_err(|e| fail("tract cannot plan", e))?;
            Ok(Read {
                loaded: Loaded::Optimised(Plan { plan }),
                signature,
                carried: declared.carried,
            })
        }
        // Only a failure that involves the free sizes may go away once they are concrete;
        // any other (an operator's attribute, a width that does not fit) refuses the model.
        Err(why) if free_sizes.iter().any(|size| mentions(&why, size)) => {
            let signature = declared_signature(&model, declared.outputs, map_keys)
                .map_err(|e| LoadError(format!("cannot serve {origin}: {e}")))?;
            Ok(Read {
                loaded: Loaded::PerShape {
                    source: Source { model },
                    why,
                },
                signature,
                carried: declared.carried,
            })
        }
        Err(why) => Err(LoadError(format!("tract cannot optimize {origin}: {why}"))),
    }
}

/// The names of the inputs' free sizes (`batch`, `height`, or `dim_2` for an unnamed one).
fn free_input_sizes(model: &InferenceModel) -> Vec<String> {
    (0..model.inputs.len())
        .filter_map(|ix| model.input_fact(ix).ok())
        .flat_map(|fact| {
            fact.shape
                .dims()
                .filter_map(|d| d.concretize())
                .collect::<Vec<_>>()
        })
        .filter(|d| d.to_usize().is_err())
        .map(|d| d.to_string())
        .collect()
}

/// True when `text` names `word` as a word of its own (not inside a longer name).
fn mentions(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// Refuses a model with operators tract does not know, naming each node and operator.
fn refuse_unsupported(model: &InferenceModel, origin: &str) -> Result<(), LoadError> {
    let unsupported: Vec<String> = model
        .nodes()
        .iter()
        .filter_map(|node| {
            let op = node.op.name();
            let inner = op
                .strip_prefix("Unimplemented(")?
                .strip_suffix(')')?
                .to_owned();
            Some(format!("node '{}' (op {inner})", node.name))
        })
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(LoadError(format!(
        "cannot load {}: tract does not support {}",
        origin,
        unsupported.join(", ")
    )))
}

/// An input's concrete shape, given at start-up: `image=1,3,640,640`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub input: String,
    pub shape: Vec<usize>,
}

/// Gives the named inputs their concrete shapes, checking each against what the model
/// declares.
fn fix_input_shapes(model: &mut InferenceModel, fixed: &[InputShape]) -> Result<(), String> {
    for InputShape { input, shape } in fixed {
        let ix = model
            .inputs
            .iter()
            .position(|outlet| model.node(outlet.node).name == *input)
            .ok_or_else(|| {
                let names: Vec<&str> = model
                    .inputs
                    .iter()
                    .map(|o| model.node(o.node).name.as_str())
                    .collect();
                format!(
                    "--input-shape {input}: the model has no such input; its inputs are {}",
                    names.join(", ")
                )
            })?;
        let fact = model.input_fact(ix).map_err(|e| e.to_string())?.clone();
        let datum_type = fact
            .datum_type
            .concretize()
            .ok_or_else(|| format!("input '{input}' has no declared element type"))?;
        if let Some(rank) = fact.shape.rank().concretize() {
            let rank = rank as usize;
            if rank != shape.len() {
                return Err(format!(
                    "--input-shape {input}: the input has {rank} dimensions, not {}",
                    shape.len()
                ));
            }
            for (axis, (dim, &size)) in fact.shape.dims().zip(shape).enumerate() {
                if let Some(Ok(declared)) = dim.concretize().map(|d| d.to_usize())
                    && declared != size
                {
                    return Err(format!(
                        "--input-shape {input}: dimension {axis} is {declared} in the model, not {size}"
                    ));
                }
            }
        }
        model
            .set_input_fact(ix, InferenceFact::dt_shape(datum_type, shape.as_slice()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl Source {
    /// An optimised plan for inputs of these shapes (in the model's input order).
    pub(super) fn plan_for(&self, shapes: &[Vec<usize>]) -> Result<Plan, String> {
        let mut model = self.model.clone();
        for (ix, shape) in shapes.iter().enumerate() {
            let fact = model.input_fact(ix).map_err(|e| e.to_string())?;
            let datum_type = fact
                .datum_type
                .concretize()
                .ok_or("an input has no declared element type")?;
            model
                .set_input_fact(ix, InferenceFact::dt_shape(datum_type, shape.as_slice()))
                .map_err(|e| brief(&e))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|optimized| optimized.into_runnable())
            .map_err(|e| brief(&e))?;
        Ok(Plan { plan })
    }
}

impl Plan {
    /// Runs the plan on tensors in the model's input order, on the caller's thread or,
    /// with `pool`, on its threads too. Returns the outputs in the model's output order.
    pub(super) fn run(
        &self,
        inputs: Vec<Tensor>,
        pool: Option<&IntraOpPool>,
    ) -> Result<Vec<Tensor>, String> {
        let inputs: TVec<TValue> = inputs
            .into_iter()
            .map(to_tract)
            .collect::<TractResult<_>>()
            .map_err(|e| brief(&e))?;
        let outputs = match pool {
            Some(pool) => {
                multithread::multithread_tract_scope(pool.0.clone(), || self.plan.run(inputs))
            }
            None => self.plan.run(inputs),
        }
        .map_err(|e| brief(&e))?;
        outputs
            .into_iter()
            .map(from_tract)
            .collect::<TractResult<_>>()
            .map_err(|e| brief(&e))
    }
}

/// tract-onnx with our own operators registered (`engine::onnx_ml`, `engine::onnx_fixes`):
/// what the server loads models with, and what benchmarks of tract alone use.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    super::onnx_ml::register(&mut onnx.op_register);
    super::onnx_fixes::register(&mut onnx.op_register);
    onnx
}

/// tract's error chain in one line: the first line of each cause, clipped, because some
/// causes carry a dump of the whole model.
fn brief(e: &TractError) -> String {
    let causes: Vec<String> = e
        .chain()
        .map(|cause| {
            let text = cause.to_string();
            let line = text.lines().next().unwrap_or_default().trim();
            match line.char_indices().nth(300) {
                Some((cut, _)) => format!("{}...", &line[..cut]),
                None => line.to_owned(),
            }
        })
        .collect();
    causes.join(": ")
}

/// How many inputs leave their first dimension unnamed.
fn open_first_dims(model: &InferenceModel) -> usize {
    model
        .inputs
        .iter()
        .filter_map(|&outlet| model.outlet_fact(outlet).ok())
        .filter(|fact| {
            fact.shape
                .dims()
                .next()
                .is_some_and(|d| d.concretize().is_none())
        })
        .count()
}

/// ONNX lets an input leave some dimensions unnamed; tract needs a symbol for each, taken
/// from the model's own symbol scope so it is the one the rest of the graph refers to. With
/// `share_first`, every unnamed first dimension gets one symbol, the batch.
fn close_open_input_dims(model: &mut InferenceModel, share_first: bool) -> Result<(), String> {
    let batch: TDim = model.symbols.new_with_prefix("batch").into();
    for ix in 0..model.inputs.len() {
        let outlet = model.inputs[ix];
        let name = model.node(outlet.node).name.clone();
        let fact = model
            .outlet_fact(outlet)
            .map_err(|e| e.to_string())?
            .clone();
        if fact.datum_type.concretize().is_none() {
            return Err(format!("input '{name}' has no declared element type"));
        }
        if fact.shape.is_open() {
            return Err(format!(
                "input '{name}' has no declared rank (number of dimensions)"
            ));
        }
        if fact.shape.dims().all(|d| d.concretize().is_some()) {
            continue;
        }
        let dims: TVec<TDim> = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, d)| {
                d.concretize().unwrap_or_else(|| match axis {
                    0 if share_first => batch.clone(),
                    _ => model.symbols.new_with_prefix("dim").into(),
                })
            })
            .collect();
        let closed =
            InferenceFact::dt_shape(fact.datum_type.concretize().expect("checked above"), dims);
        model
            .set_input_fact(ix, closed)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The signature of the optimised model; `map_keys` gives, per output, the class labels of the
/// ZipMap that makes it.
fn signature_of(
    model: &TypedModel,
    output_names: &[String],
    map_keys: Vec<Option<ClassLabels>>,
) -> Result<Signature, String> {
    let spec = |outlet: OutletId, name: String| -> Result<TensorSpec, String> {
        let fact = model.outlet_fact(outlet).map_err(|e| e.to_string())?;
        let datatype = datatype_of(fact.datum_type).ok_or_else(|| {
            format!(
                "'{name}' has element type {:?}, which cannot travel over HTTP",
                fact.datum_type
            )
        })?;
        let shape = fact
            .shape
            .iter()
            .map(|d| match d.to_usize() {
                Ok(n) => Dim::Fixed(n),
                Err(_) => Dim::Symbolic(d.to_string()),
            })
            .collect();
        Ok(TensorSpec {
            name,
            datatype,
            shape,
            map_keys: None,
        })
    };
    let inputs = model
        .inputs
        .iter()
        .map(|&o| spec(o, model.node(o.node).name.clone()))
        .collect::<Result<_, _>>()?;
    // Named as the graph names them: tract keeps the model's outputs in the graph's order.
    if output_names.len() != model.outputs.len() {
        return Err(format!(
            "the graph declares {} outputs but tract computes {}",
            output_names.len(),
            model.outputs.len()
        ));
    }
    let mut outputs = (model.outputs.iter().zip(output_names))
        .map(|(&o, name)| spec(o, name.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    for (output, keys) in outputs.iter_mut().zip(map_keys) {
        output.map_keys = keys;
    }
    Ok(Signature { inputs, outputs })
}

/// The signature as the model declares it, for a model that is optimised per input shape:
/// the inputs as parsed (free dimensions stay free), the outputs as the ONNX graph declares
/// them, undeclared dimensions free.
fn declared_signature(
    model: &InferenceModel,
    outputs: Result<Vec<TensorSpec>, String>,
    map_keys: Vec<Option<ClassLabels>>,
) -> Result<Signature, String> {
    let inputs = model
        .inputs
        .iter()
        .map(|&outlet| {
            let name = model.node(outlet.node).name.clone();
            let fact = model.outlet_fact(outlet).map_err(|e| e.to_string())?;
            let datum_type = fact
                .datum_type
                .concretize()
                .ok_or_else(|| format!("input '{name}' has no declared element type"))?;
            let datatype = datatype_of(datum_type).ok_or_else(|| {
                format!(
                    "input '{name}' has element type {datum_type:?}, which cannot travel over HTTP"
                )
            })?;
            let shape = fact
                .shape
                .dims()
                .map(|dim| match dim.concretize().map(|d| (d.to_usize(), d)) {
                    Some((Ok(n), _)) => Dim::Fixed(n),
                    Some((Err(_), d)) => Dim::Symbolic(d.to_string()),
                    None => Dim::Symbolic("?".into()),
                })
                .collect();
            Ok(TensorSpec {
                name,
                datatype,
                shape,
                map_keys: None,
            })
        })
        .collect::<Result<_, String>>()?;
    let mut outputs = outputs?;
    for (output, keys) in outputs.iter_mut().zip(map_keys) {
        output.map_keys = keys;
    }
    Ok(Signature { inputs, outputs })
}

/// The outputs as the graph declares them: free dimensions by their names, undeclared ones
/// free too.
fn declared_outputs(outputs: &[ValueInfoProto]) -> Result<Vec<TensorSpec>, String> {
    outputs
        .iter()
        .map(|output| {
            let name = output.name.clone();
            let Some(TypeProto {
                value: Some(type_proto::Value::TensorType(tensor)),
                ..
            }) = &output.r#type
            else {
                return Err(format!(
                    "output '{name}' declares no tensor type, and its input sizes are free"
                ));
            };
            let datatype = onnx_datatype(tensor.elem_type).ok_or_else(|| {
                format!(
                    "output '{name}' declares element type {}, which cannot travel over HTTP",
                    tensor.elem_type
                )
            })?;
            let dims = tensor.shape.as_ref().ok_or_else(|| {
                format!("output '{name}' declares no shape, and its input sizes are free")
            })?;
            let shape = dims
                .dim
                .iter()
                .enumerate()
                .map(|(axis, dim)| match &dim.value {
                    Some(DimValue::DimValue(n)) if *n > 0 => Dim::Fixed(*n as usize),
                    Some(DimValue::DimParam(param)) if !param.is_empty() => {
                        Dim::Symbolic(param.clone())
                    }
                    _ => Dim::Symbolic(format!("{name}_{axis}")),
                })
                .collect();
            Ok(TensorSpec {
                name,
                datatype,
                shape,
                map_keys: None,
            })
        })
        .collect()
}

/// The datatype of an ONNX `TensorProto.DataType` number.
fn onnx_datatype(elem_type: i32) -> Option<DataType> {
    Some(match elem_type {
        1 => DataType::Fp32,
        2 => DataType::Uint8,
        3 => DataType::Int8,
        4 => DataType::Uint16,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        8 => DataType::Bytes,
        9 => DataType::Bool,
        10 => DataType::Fp16,
        11 => DataType::Fp64,
        12 => DataType::Uint32,
        13 => DataType::Uint64,
        _ => return None,
    })
}

fn datatype_of(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        // tract's symbolic integers, which it uses for some int64 values (labels too).
        DatumType::TDim => DataType::Int64,
        _ => return None,
    })
}

fn to_tract(tensor: Tensor) -> TractResult<TValue> {
    let shape = tract_ndarray::IxDyn(&tensor.shape);
    let tract = crate::with_tensor_data!(tensor.data, values => {
        tract_ndarray::ArrayD::from_shape_vec(shape, values)?.into_tensor()
    });
    Ok(tract.into_tvalue())
}

fn from_tract(value: TValue) -> TractResult<Tensor> {
    let tensor = value.into_tensor();
    let shape = tensor.shape().to_vec();
    fn values<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    let data = match tensor.datum_type() {
        DatumType::Bool => TensorData::Bool(values(&tensor)?),
        DatumType::U8 => TensorData::Uint8(values(&tensor)?),
        DatumType::U16 => TensorData::Uint16(values(&tensor)?),
        DatumType::U32 => TensorData::Uint32(values(&tensor)?),
        DatumType::U64 => TensorData::Uint64(values(&tensor)?),
        DatumType::I8 => TensorData::Int8(values(&tensor)?),
        DatumType::I16 => TensorData::Int16(values(&tensor)?),
        DatumType::I32 => TensorData::Int32(values(&tensor)?),
        DatumType::I64 => TensorData::Int64(values(&tensor)?),
        DatumType::F16 => TensorData::Fp16(values(&tensor)?),
        DatumType::F32 => TensorData::Fp32(values(&tensor)?),
        DatumType::F64 => TensorData::Fp64(values(&tensor)?),
        DatumType::String => TensorData::Bytes(values(&tensor)?),
        DatumType::TDim => TensorData::Int64(values(&*tensor.cast_to::<i64>()?)?),
        other => bail!("the model produced a {other:?} tensor, which cannot travel over HTTP"),
    };
    Tensor::new(shape, data).map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_mentioned_only_as_a_word_of_its_own() {
        let why = "Impossible to unify Div(Add([Sym(height), Val(15)]), 16) with 2";
        assert!(mentions(why, "height"));
        assert!(!mentions(why, "eight"));
        assert!(!mentions(why, "heigh"));
        assert!(!mentions("the input has 30 features", "N"));
        assert!(mentions("shape [N, 3]", "N"));
    }

    #[test]
    fn a_model_loads_the_same_from_bytes_as_from_its_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("model.onnx");
        let from_file = load(&path, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = load_bytes(&bytes, "the bytes", &[]).unwrap();
        assert_eq!(from_file.signature, from_bytes.signature);
        assert_eq!(from_file.carried, from_bytes.carried);

        let error = load_bytes(b"not a model", "the junk", &[]).err().unwrap();
        assert!(
            error.0.starts_with("cannot read the ONNX model the junk: "),
            "{error}"
        );
    }

    #[test]
    fn metadata_and_classifier_labels_are_read_from_the_file() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = load(&fixtures.join("images/classifier_nchw.onnx"), &[]).unwrap();
        let keys: Vec<&str> = (read.carried.metadata.iter())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["names", "task", "imgsz"]);
        assert_eq!(read.carried.metadata[1].1, "classify");
        assert_eq!(read.carried.classifier_labels, None);

        let read = load(&fixtures.join("tabular/logreg_multi_nozipmap.onnx"), &[]).unwrap();
        assert_eq!(
            read.carried.classifier_labels,
            Some(ClassLabels::Int64(vec![0, 1, 2]))
        );
    }
}
