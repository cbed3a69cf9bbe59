//! The only file that knows tract: load and optimise the model, read its signature, run it.
//!
//! The optimised plan is built once and shared (`Arc`) by every request; tract's `run` takes
//! `&self`, so requests run side by side with no lock. Two options change how runs happen
//! (`Model::with_execution`): a pool of threads one run may use when it is the only one
//! (`--intra-op-threads`), and dynamic batching (`batcher.rs`). Once runs are seen to take
//! milliseconds, they move to a thread per worker (`run_threads.rs`), which reuses its memory.

use crate::batcher::{BatchConfig, Batcher};
use crate::metrics::{self, Histogram};
use crate::run_threads::{RunThreads, RunTimes};
use crate::signature::{Dim, Signature, TensorSpec, describe_all};
use crate::tensor::{DataType, Tensor, TensorData};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tract_linalg::multithread::{self, Executor};
use tract_onnx::prelude::tract_data::internal::{DimLike, anyhow, bail};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

pub struct Model {
    runner: Arc<Runner>,
    signature: Signature,
    load_time: Duration,
    batcher: Option<Batcher>,
    /// Where long runs go when there is no batcher (whose runners are such threads).
    run_threads: Option<RunThreads>,
    /// The machine's cores, read once (it reads cgroup files).
    cores: usize,
}

/// The optimised plan and the threads it may use; shared with the batch runners.
struct Runner {
    plan: Arc<TypedRunnableModel>,
    /// `--intra-op-threads`: a thread pool for tract's kernels, used by a run that starts
    /// while no other is running (a busy server is better off with one thread per run).
    intra_op: Option<Executor>,
    running: AtomicUsize,
    /// How long each run took, and the panics it caught: the model's metrics.
    run_seconds: Histogram,
    /// How long runs typically take: long ones go to the run threads.
    run_times: RunTimes,
    /// Rows per run, for a model with a batch dimension.
    batch_sizes: Option<Histogram>,
    panics: AtomicU64,
}

/// How runs are executed (the defaults: one thread per run, no batching, every run on the
/// caller's thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct Execution {
    pub intra_op_threads: usize,
    pub batching: Option<BatchConfig>,
    /// Threads for long runs (one per worker slot); 0 runs every run on the caller's thread.
    pub run_threads: usize,
}

/// The version of tract-onnx this binary was built with (build.rs reads it from Cargo.lock).
pub const TRACT_VERSION: &str = env!("ONNX_SERVE_TRACT_VERSION");

/// Why a model could not be loaded: one message meant for the person starting the server.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a run failed.
#[derive(Clone, Debug)]
pub enum RunError {
    /// tract returned an error.
    Failed(String),
    /// tract panicked; the panic was caught and the plan is unharmed (it is immutable).
    Panicked(String),
    /// Too many requests are already waiting for the batcher.
    Busy(String),
    /// The request's client left while it waited for its batch; it was not run.
    ClientGone,
}

impl Model {
    /// Loads, checks and optimises the ONNX file. Unsupported operators are reported by
    /// node name and operator before tract's own, longer, message.
    pub fn load(path: &Path) -> Result<Model, LoadError> {
        let started = Instant::now();
        let onnx = onnx();
        let proto = onnx.proto_model_for_path(path);
        Model::prepare(
            &onnx,
            proto,
            path.parent(),
            &path.display().to_string(),
            started,
        )
    }

    /// Like `load`, from the bytes of an ONNX file (the model built into the binary);
    /// `origin` names it in messages.
    pub fn load_bytes(bytes: &[u8], origin: &str) -> Result<Model, LoadError> {
        let started = Instant::now();
        let onnx = onnx();
        let proto = onnx.proto_model_for_read(&mut &*bytes);
        Model::prepare(&onnx, proto, None, origin, started)
    }

    fn prepare(
        onnx: &tract_onnx::Onnx,
        proto: TractResult<tract_onnx::pb::ModelProto>,
        dir: Option<&Path>,
        origin: &str,
        started: Instant,
    ) -> Result<Model, LoadError> {
        let fail = |what: &str, e: TractError| LoadError(format!("{what} {origin}: {}", brief(&e)));
        let proto = proto.map_err(|e| fail("cannot read the ONNX model", e))?;
        let parsed = crate::engine::parse::parse(onnx, &proto, dir)
            .map_err(|e| fail("cannot read the ONNX model", e))?;
        let (mut model, output_names) = (parsed.model, parsed.output_names);

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
        crate::engine::vet::vet(&proto)
            .map_err(|why| LoadError(format!("cannot serve {origin}: {why}")))?;
        // The protobuf holds a copy of every weight: free it before optimising.
        drop(proto);

        close_open_input_dims(&mut model)
            .map_err(|e| LoadError(format!("cannot load {origin}: {e}")))?;
        let optimized = model
            .into_optimized()
            .map_err(|e| fail("tract cannot optimize", e))?;
        let signature = signature_of(&optimized, &output_names)
            .map_err(|e| LoadError(format!("cannot serve {origin}: {e}")))?;
        let plan = optimized
            .into_runnable()
            .map_err(|e| fail("tract cannot plan", e))?;
        Ok(Model {
            runner: Arc::new(Runner {
                plan,
                intra_op: None,
                running: AtomicUsize::new(0),
                run_seconds: Histogram::seconds(),
                run_times: RunTimes::default(),
                batch_sizes: signature
                    .batch_dim()
                    .map(|_| Histogram::new(&metrics::ROWS)),
                panics: AtomicU64::new(0),
            }),
            signature,
            load_time: started.elapsed(),
            batcher: None,
            run_threads: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// Sets how runs are executed; called once, after loading. Batching needs every input
    /// and output to start with the same variable dimension (`batch_dim`).
    pub fn with_execution(mut self, execution: Execution) -> Result<Model, String> {
        let runner = Arc::get_mut(&mut self.runner)
            .ok_or("the execution of a model is set once, before it is shared")?;
        if execution.intra_op_threads > 1 {
            let pool = Executor::multithread_with_name(execution.intra_op_threads, "intra-op");
            runner.intra_op = Some(pool);
        }
        if let Some(config) = execution.batching {
            if self.signature.batch_dim().is_none() {
                return Err(format!(
                    "--max-batch-size needs a model whose inputs and outputs all start with \
                     the same variable (batch) dimension; this one has inputs {} and outputs {}",
                    describe_all(&self.signature.inputs),
                    describe_all(&self.signature.outputs),
                ));
            }
            let runner = self.runner.clone();
            let batcher = Batcher::start(config, Box::new(move |inputs| runner.run(inputs)))
                .map_err(|e| format!("cannot start the batch runners: {e}"))?;
            self.batcher = Some(batcher);
        } else if execution.run_threads > 0 {
            let threads = RunThreads::start(execution.run_threads)
                .map_err(|e| format!("cannot start the run threads: {e}"))?;
            self.run_threads = Some(threads);
        }
        Ok(self)
    }

    /// True when runs go through the batcher.
    pub fn batches(&self) -> bool {
        self.batcher.is_some()
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The durations of the runs so far (tract's own time, without the conversions).
    pub fn run_seconds(&self) -> &Histogram {
        &self.runner.run_seconds
    }

    /// The rows in each run so far, for a model with a batch dimension.
    pub fn batch_sizes(&self) -> Option<&Histogram> {
        self.runner.batch_sizes.as_ref()
    }

    /// Panics caught in tract so far.
    pub fn panics_caught(&self) -> u64 {
        self.runner.panics.load(Ordering::Relaxed)
    }

    /// How many threads a request may use to decode its body now: every core while no run
    /// is in flight, else one (a busy server is better off with one thread per request, as
    /// with `--intra-op-threads`).
    pub fn spare_threads(&self) -> usize {
        match self.runner.running.load(Ordering::Relaxed) {
            0 => self.cores,
            _ => 1,
        }
    }

    /// Runs the model on tensors given in the model's input order, already checked against
    /// the signature. Returns the outputs in the model's output order.
    /// With batching on, the run is part of a batch and these are this request's rows.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        self.run_for(inputs, None)
    }

    /// `run` for a request from `client`: with batching on, a request whose client leaves
    /// while it waits for its batch is left out of it (`RunError::ClientGone`).
    pub fn run_for(
        &self,
        inputs: Vec<Tensor>,
        client: Option<SocketAddr>,
    ) -> Result<Vec<Tensor>, RunError> {
        match &self.batcher {
            Some(batcher) => batcher.run(inputs, client),
            None => match &self.run_threads {
                Some(threads) if self.runner.run_times.are_long() => {
                    let runner = self.runner.clone();
                    threads.run(move || runner.run(inputs)).unwrap_or_else(|| {
                        Err(RunError::Panicked("outside tract, on a run thread".into()))
                    })
                }
                _ => self.runner.run(inputs),
            },
        }
    }
}

impl Runner {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        let inputs: TVec<TValue> = inputs
            .into_iter()
            .map(to_tract)
            .collect::<TractResult<_>>()
            .map_err(|e| RunError::Failed(brief(&e)))?;
        if let (Some(histogram), Some(rows)) = (&self.batch_sizes, batch_rows(&inputs)) {
            histogram.observe_value(rows as u64);
        }
        let alone = self.running.fetch_add(1, Ordering::SeqCst) == 0;
        let started = Instant::now();
        let run = catch_unwind(AssertUnwindSafe(|| match &self.intra_op {
            Some(pool) if alone => {
                multithread::multithread_tract_scope(pool.clone(), || self.plan.run(inputs))
            }
            _ => self.plan.run(inputs),
        }));
        let took = started.elapsed();
        self.run_seconds.observe(took);
        self.run_times.record(took);
        self.running.fetch_sub(1, Ordering::SeqCst);
        let outputs = run
            .map_err(|panic| {
                self.panics.fetch_add(1, Ordering::Relaxed);
                RunError::Panicked(crate::panic_message(&panic))
            })?
            .map_err(|e| RunError::Failed(brief(&e)))?;
        outputs
            .into_iter()
            .map(from_tract)
            .collect::<TractResult<_>>()
            .map_err(|e| RunError::Failed(brief(&e)))
    }
}

/// The rows of a run: the first dimension of its first input (the batch dimension, for a
/// model that has one).
fn batch_rows(inputs: &[TValue]) -> Option<usize> {
    inputs.first()?.shape().first().copied()
}

/// tract-onnx with our own operators registered (`engine::onnx_ml`, `engine::onnx_fixes`).
fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    crate::engine::onnx_ml::register(&mut onnx.op_register);
    crate::engine::onnx_fixes::register(&mut onnx.op_register);
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

/// The signature, outputs named as the ONNX graph names them (`output_names`, in order).
fn signature_of(model: &TypedModel, output_names: &[String]) -> Result<Signature, String> {
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
    if output_names.len() != model.outputs.len() {
        return Err(format!(
            "the graph declares {} outputs but tract computes {}",
            output_names.len(),
            model.outputs.len()
        ));
    }
    let outputs = (model.outputs.iter().zip(output_names))
        .map(|(&o, name)| spec(o, name.clone()))
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
        let from_file = Model::load(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = Model::load_bytes(&bytes, "the bytes").unwrap();
        let describe = |m: &Model| {
            let s = m.signature();
            (s.inputs.iter().chain(&s.outputs))
                .map(|t| serde_json::to_string(&t.describe()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(describe(&from_file), describe(&from_bytes));

        let error = Model::load_bytes(b"not a model", "the junk").err().unwrap();
        assert!(
            error.0.starts_with("cannot read the ONNX model the junk: "),
            "{error}"
        );
    }
}
