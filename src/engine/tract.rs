//! The one file that drives tract: read an ONNX model with our operators registered
//! (`onnx_ml`), check it, optimise it into a runnable plan, read its signature, and run the
//! plan on our tensors, converting them to and from tract's.
//!
//! The plan is immutable and tract's `run` takes `&self`, so one plan is shared (`Arc`) by
//! every request and runs side by side with no lock.

use super::error::LoadError;
use crate::tensor::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};
use std::path::Path;
use tract_linalg::multithread::{self, Executor};
use tract_onnx::prelude::tract_data::internal::{DimLike, anyhow, bail};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// The version of tract-onnx this binary was built with (build.rs reads it from Cargo.lock).
pub const TRACT_VERSION: &str = env!("ONNX_SERVE_TRACT_VERSION");

/// An optimised, runnable model.
pub(super) struct Plan {
    plan: Arc<TypedRunnableModel>,
}

/// A pool of threads for tract's kernels, which one run may use (`--intra-op-threads`).
pub(super) struct IntraOpPool(Executor);

impl IntraOpPool {
    pub(super) fn new(threads: usize) -> IntraOpPool {
        IntraOpPool(Executor::multithread_with_name(threads, "intra-op"))
    }
}

impl Plan {
    /// Reads, checks and optimises the ONNX file, and reads its signature.
    pub(super) fn load(path: &Path) -> Result<(Plan, Signature), LoadError> {
        let model = onnx().model_for_path(path);
        Plan::prepare(model, &path.display().to_string())
    }

    /// Like `load`, from the bytes of an ONNX file; `origin` names it in messages.
    pub(super) fn load_bytes(bytes: &[u8], origin: &str) -> Result<(Plan, Signature), LoadError> {
        let model = onnx().model_for_read(&mut &*bytes);
        Plan::prepare(model, origin)
    }

    /// Unsupported operators are reported by node name and operator before tract's own,
    /// longer, message.
    fn prepare(
        model: TractResult<InferenceModel>,
        origin: &str,
    ) -> Result<(Plan, Signature), LoadError> {
        let fail = |what: &str, e: TractError| LoadError(format!("{what} {origin}: {}", brief(&e)));
        let mut model = model.map_err(|e| fail("cannot read the ONNX model", e))?;

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
        if !unsupported.is_empty() {
            return Err(LoadError(format!(
                "cannot load {}: tract does not support {}",
                origin,
                unsupported.join(", ")
            )));
        }

        close_open_input_dims(&mut model)
            .map_err(|e| LoadError(format!("cannot load {origin}: {e}")))?;
        let optimized = model
            .into_optimized()
            .map_err(|e| fail("tract cannot optimize", e))?;
        let signature = signature_of(&optimized)
            .map_err(|e| LoadError(format!("cannot serve {origin}: {e}")))?;
        let plan = optimized
            .into_runnable()
            .map_err(|e| fail("tract cannot plan", e))?;
        Ok((Plan { plan }, signature))
    }

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

/// tract-onnx with our own operators registered (`engine::onnx_ml`).
fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    super::onnx_ml::register(&mut onnx.op_register);
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

/// ONNX lets an input leave some dimensions unnamed; tract needs a symbol for each, taken
/// from the model's own symbol scope so it is the one the rest of the graph refers to.
fn close_open_input_dims(model: &mut InferenceModel) -> Result<(), String> {
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
            .map(|d| {
                d.concretize()
                    .unwrap_or_else(|| model.symbols.new_with_prefix("dim").into())
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

fn signature_of(model: &TypedModel) -> Result<Signature, String> {
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
        })
    };
    let inputs = model
        .inputs
        .iter()
        .map(|&o| spec(o, model.node(o.node).name.clone()))
        .collect::<Result<_, _>>()?;
    let outputs = model
        .outputs
        .iter()
        .map(|&o| {
            let name = model
                .outlet_label(o)
                .map(str::to_owned)
                .unwrap_or_else(|| model.node(o.node).name.clone());
            spec(o, name)
        })
        .collect::<Result<_, _>>()?;
    Ok(Signature { inputs, outputs })
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
        other => bail!("the model produced a {other:?} tensor, which cannot travel over HTTP"),
    };
    Tensor::new(shape, data).map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_loads_the_same_from_bytes_as_from_its_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("model.onnx");
        let (_, from_file) = Plan::load(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, from_bytes) = Plan::load_bytes(&bytes, "the bytes").unwrap();
        assert_eq!(from_file, from_bytes);

        let error = Plan::load_bytes(b"not a model", "the junk").err().unwrap();
        assert!(
            error.0.starts_with("cannot read the ONNX model the junk: "),
            "{error}"
        );
    }
}
