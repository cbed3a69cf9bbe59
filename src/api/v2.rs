//! The Open Inference Protocol (KServe V2 / Triton HTTP): server and model metadata, health,
//! Triton's model configuration, `infer` with JSON or binary tensors (`v2/infer.rs`) and
//! Triton's classification extension, and Triton's statistics extension (`v2/stats.rs`).
//!
//! Every model route also answers under `/versions/{v}`; a path without a version reaches
//! the one model, a path with another version than the served one is 404.

pub mod infer;
pub mod stats;

use super::app::App;
use super::{check_model, predict_with};
use crate::engine::Model;
use crate::http::{ApiError, Request, Response};
use crate::ops::prediction_stats::Total;
use crate::tensor::{DataType, Dim, TensorDescription, TensorSpec};
use serde::Serialize;
use stats::{Duration, InferStatistics, ModelStatistics, ModelStatsResponse};

/// How Triton names an ONNX model's platform; its tools (perf_analyzer, model_analyzer)
/// recognise it.
const PLATFORM: &str = "onnxruntime_onnx";

/// The extensions of the protocol this server implements.
const EXTENSIONS: [&str; 4] = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "statistics",
];

/// The `max_batch_size` a batchable model advertises. The server itself has no batch limit
/// but `--max-body`; a large number lets tools try whatever batch size they like.
const MAX_BATCH_SIZE: u32 = 1 << 16;

/// `GET /v2`.
pub fn server_metadata(_app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    Ok(Response::json(&ServerMetadata {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS,
    }))
}

#[derive(Serialize)]
struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; 4],
}

/// `GET /v2/health/live`: always 200 while the process runs.
pub fn live(_app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    Ok(Response::json(&Live { live: true }))
}

#[derive(Serialize)]
struct Live {
    live: bool,
}

/// `GET /v2/health/ready`: 200 once the model is loaded, 503 while loading or draining.
pub fn ready(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    app.readiness()?;
    Ok(Response::json(&Ready {
        name: None,
        ready: true,
    }))
}

#[derive(Serialize)]
struct Ready<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    ready: bool,
}

/// `GET /v2/models/{m}/ready`.
pub fn model_ready(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    check_model(app, &req.params)?;
    app.readiness()?;
    Ok(Response::json(&Ready {
        name: Some(&app.model_name),
        ready: true,
    }))
}

/// `GET /v2/models/{m}`: names, datatypes and shapes (-1 for a variable dimension).
pub fn model_metadata(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let model = loaded_model(app, req)?;
    let signature = model.signature();
    Ok(Response::json(&ModelMetadata {
        name: &app.model_name,
        versions: [&app.model_version],
        platform: PLATFORM,
        inputs: signature.inputs.iter().map(TensorSpec::describe).collect(),
        outputs: signature.outputs.iter().map(TensorSpec::describe).collect(),
    }))
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: [&'a str; 1],
    platform: &'static str,
    inputs: Vec<TensorDescription<'a>>,
    outputs: Vec<TensorDescription<'a>>,
}

/// `GET /v2/models/{m}/config`: the part of Triton's model configuration its clients and
/// perf_analyzer read.
pub fn model_config(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let model = loaded_model(app, req)?;
    let signature = model.signature();
    let batched = signature.batch_dim().is_some();
    Ok(Response::json(&ModelConfig {
        name: &app.model_name,
        platform: PLATFORM,
        backend: "tract",
        max_batch_size: if batched { MAX_BATCH_SIZE } else { 0 },
        input: ConfigTensor::all(&signature.inputs, batched),
        output: ConfigTensor::all(&signature.outputs, batched),
    }))
}

#[derive(Serialize)]
struct ModelConfig<'a> {
    name: &'a str,
    platform: &'static str,
    backend: &'static str,
    max_batch_size: u32,
    input: Vec<ConfigTensor<'a>>,
    output: Vec<ConfigTensor<'a>>,
}

#[derive(Serialize)]
struct ConfigTensor<'a> {
    name: &'a str,
    data_type: &'static str,
    /// Without the batch dimension when the model is batched, as Triton writes them.
    dims: Vec<i64>,
}

impl<'a> ConfigTensor<'a> {
    fn all(specs: &'a [TensorSpec], batched: bool) -> Vec<ConfigTensor<'a>> {
        specs
            .iter()
            .map(|s| ConfigTensor::new(s, batched))
            .collect()
    }

    fn new(spec: &'a TensorSpec, batched: bool) -> ConfigTensor<'a> {
        let dims = if batched {
            &spec.shape[1..]
        } else {
            &spec.shape
        };
        ConfigTensor {
            name: &spec.name,
            data_type: config_type(spec.datatype),
            dims: dims.iter().map(Dim::as_i64).collect(),
        }
    }
}

/// Triton's configuration names for the datatypes.
fn config_type(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    }
}

fn loaded_model<'a>(app: &'a App, req: &Request) -> Result<&'a Model, ApiError> {
    check_model(app, &req.params)?;
    app.model()
}

/// `POST /v2/models/{m}/infer`: JSON, or a JSON header followed by binary tensors.
pub fn infer(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let header_length = infer::header_length(req)?;
    predict_with(app, req, |prediction, body| {
        let model = prediction.model;
        let classes = app.serving()?.classes.as_ref();
        let request = infer::decode(model.signature(), body, header_length)?;
        let mut outputs = prediction.run(request.inputs)?;
        let labels = |output| classes.filter(|c| c.output == output).map(|c| &c.labels);
        let batched = model.signature().batch_dim().is_some();
        infer::classify(&mut outputs, &request.outputs, labels, batched)?;
        let served = infer::Served {
            model_name: &app.model_name,
            model_version: &app.model_version,
            id: request.id.as_deref(),
        };
        Ok(infer::encode(
            &served,
            model.signature(),
            &outputs,
            &request.outputs,
        ))
    })
}

/// `GET /v2/models/stats`: the statistics of every model this server serves (one).
pub fn all_stats(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let model = app.model()?;
    Ok(Response::json(&ModelStatsResponse {
        model_stats: vec![statistics(app, model)],
    }))
}

/// `GET /v2/models/{m}[/versions/{v}]/stats`: Triton's statistics of the model.
pub fn model_stats(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let model = loaded_model(app, req)?;
    Ok(Response::json(&ModelStatsResponse {
        model_stats: vec![statistics(app, model)],
    }))
}

/// The model's statistics, read from the counters kept as predictions are answered
/// (`App::stats`) and from the model's own run count. No cache, no decoupled responses, no
/// per-batch-size counters: `cache_*`, `response_stats` and `batch_stats` stay empty.
fn statistics(app: &App, model: &Model) -> ModelStatistics {
    let counted = app.stats.snapshot();
    let duration = |t: Total| Duration {
        count: t.count,
        ns: t.ns,
    };
    ModelStatistics {
        name: app.model_name.clone(),
        version: app.model_version.clone(),
        last_inference: counted.last_ms,
        inference_count: counted.rows,
        execution_count: model.run_seconds().count(),
        inference_stats: InferStatistics {
            success: duration(counted.success),
            fail: duration(counted.fail),
            queue: duration(counted.queue),
            compute_input: duration(counted.compute_input),
            compute_infer: duration(counted.compute_infer),
            compute_output: duration(counted.compute_output),
            ..InferStatistics::default()
        },
        ..ModelStatistics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Signature;
    use crate::tensor::test_spec as spec;

    #[test]
    fn a_model_is_batched_when_every_tensor_starts_with_the_same_variable_dim() {
        let batch = || Dim::Symbolic("batch".into());
        let mut signature = Signature {
            inputs: vec![spec("x", vec![batch(), Dim::Fixed(3)])],
            outputs: vec![spec("y", vec![batch()])],
        };
        assert_eq!(signature.batch_dim(), Some("batch"));
        let config = ConfigTensor::new(&signature.inputs[0], true);
        assert_eq!(config.dims, vec![3]);
        signature.outputs[0].shape = vec![Dim::Symbolic("n".into())];
        assert_eq!(signature.batch_dim(), None);
        signature.outputs[0].shape = vec![Dim::Fixed(1)];
        assert_eq!(signature.batch_dim(), None);
        signature.outputs[0].shape = vec![];
        assert_eq!(signature.batch_dim(), None);
    }
}
