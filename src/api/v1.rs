//! TF-Serving's REST API, which KServe's v1 protocol follows: model status, signature
//! metadata, and `:predict` with `instances` (row format) or `inputs` (columnar format).
//!
//! Row format: `{"instances": [row, ...]}`, each row one item of the batch: its value for a
//! single-input model, else `{"input name": value, ...}`. The rows are stacked along a new
//! first dimension, and the answer is `{"predictions": [...]}`, one entry per row.
//! Columnar format: `{"inputs": ...}` as `POST /predict` takes it, answered with
//! `{"outputs": ...}`. BYTES values may be sent as `{"b64": "..."}`.

use super::app::App;
use super::simple::{InputsSeed, NamedInputsSeed, encode_response, write_output};
use super::{Prediction, check_model, decode_json, predict_with};
use crate::http::{ApiError, Request, Response};
use crate::tensor::json::{write_class_map, write_json_string, write_row};
use crate::tensor::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec, format_shape};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

/// `GET /v1/models/{m}`: TF-Serving's `model_version_status` and KServe's `name`/`ready`.
pub fn status(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    check_model(app, &req.params)?;
    let state = if app.is_draining() {
        "UNLOADING"
    } else if app.is_loaded() {
        "AVAILABLE"
    } else {
        "LOADING"
    };
    Ok(Response::json(&Status {
        name: &app.model_name,
        ready: app.readiness().is_ok(),
        model_version_status: [VersionStatus {
            version: &app.model_version,
            state,
            status: ErrorStatus {
                error_code: "OK",
                error_message: "",
            },
        }],
    }))
}

#[derive(Serialize)]
struct Status<'a> {
    name: &'a str,
    ready: bool,
    model_version_status: [VersionStatus<'a>; 1],
}

#[derive(Serialize)]
struct VersionStatus<'a> {
    version: &'a str,
    state: &'static str,
    status: ErrorStatus,
}

#[derive(Serialize)]
struct ErrorStatus {
    error_code: &'static str,
    error_message: &'static str,
}

/// `GET /v1/models/{m}/metadata`: the signature as TF-Serving's `serving_default`.
pub fn metadata(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    check_model(app, &req.params)?;
    let signature = app.model()?.signature();
    Ok(Response::json(&json!({
        "model_spec": {
            "name": app.model_name,
            "signature_name": "",
            "version": app.model_version,
        },
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": tensor_infos(&signature.inputs),
            "outputs": tensor_infos(&signature.outputs),
            "method_name": "tensorflow/serving/predict",
        }}}},
    })))
}

/// TF-Serving's `TensorInfo`s by name. Protobuf's JSON writes 64-bit sizes as strings.
fn tensor_infos(specs: &[TensorSpec]) -> Value {
    let infos: serde_json::Map<String, Value> = specs
        .iter()
        .map(|spec| {
            let dims: Vec<Value> = spec
                .shape
                .iter()
                .map(|d| {
                    let name = match d {
                        Dim::Fixed(_) => "",
                        Dim::Symbolic(symbol) => symbol,
                    };
                    json!({"size": d.as_i64().to_string(), "name": name})
                })
                .collect();
            let mut info = json!({
                "name": spec.name,
                "dtype": tf_dtype(spec.datatype),
                "tensor_shape": {"dim": dims, "unknown_rank": false},
            });
            // A ZipMap output's rows are answered as objects, class label to probability.
            if let Some(labels) = &spec.map_keys {
                info["class_labels"] = json!(labels);
            }
            (spec.name.clone(), info)
        })
        .collect();
    Value::Object(infos)
}

/// TensorFlow's names for the datatypes.
fn tf_dtype(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "DT_BOOL",
        DataType::Uint8 => "DT_UINT8",
        DataType::Uint16 => "DT_UINT16",
        DataType::Uint32 => "DT_UINT32",
        DataType::Uint64 => "DT_UINT64",
        DataType::Int8 => "DT_INT8",
        DataType::Int16 => "DT_INT16",
        DataType::Int32 => "DT_INT32",
        DataType::Int64 => "DT_INT64",
        DataType::Fp16 => "DT_HALF",
        DataType::Fp32 => "DT_FLOAT",
        DataType::Fp64 => "DT_DOUBLE",
        DataType::Bytes => "DT_STRING",
    }
}

/// `POST /v1/models/{m}:predict`.
pub fn predict(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    predict_with(app, req, predict_body)
}

fn predict_body(prediction: &mut Prediction, body: &[u8]) -> Result<Response, ApiError> {
    let signature = prediction.model.signature();
    let (format, inputs) = decode_request(signature, body)?;
    let outputs = prediction.run(inputs)?;
    match format {
        Format::Rows => encode_predictions(signature, &outputs).map(Response::json_bytes),
        Format::Columns => Ok(Response::json_bytes(encode_response(signature, &outputs))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `instances`, answered with `predictions`.
    Rows,
    /// `inputs`, answered with `outputs`.
    Columns,
}

fn decode_request(signature: &Signature, body: &[u8]) -> Result<(Format, Vec<Tensor>), ApiError> {
    decode_json(RequestSeed { signature }, body)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Instances,
    Inputs,
    #[serde(other)]
    Other,
}

struct RequestSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = (Format, Vec<Tensor>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = (Format, Vec<Tensor>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"instances\": [...]} or {\"inputs\": ...}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let signature = self.signature;
        let mut decoded = None;
        while let Some(field) = map.next_key()? {
            let (format, tensors) = match field {
                Field::Instances => (
                    Format::Rows,
                    map.next_value_seed(InstancesSeed { signature })?,
                ),
                Field::Inputs => (
                    Format::Columns,
                    map.next_value_seed(InputsSeed { signature })?,
                ),
                // "signature_name" and other fields are ignored: the model has one signature.
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if decoded.replace((format, tensors)).is_some() {
                return Err(de::Error::custom(
                    "send either \"instances\" or \"inputs\", once",
                ));
            }
        }
        decoded.ok_or_else(|| {
            de::Error::custom(format!(
                "the body has neither \"instances\" nor \"inputs\"; the model's inputs are {}",
                signature.input_names()
            ))
        })
    }
}

/// The `instances` list: rows stacked into one tensor per input.
struct InstancesSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for InstancesSeed<'_> {
    type Value = Vec<Tensor>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InstancesSeed<'_> {
    type Value = Vec<Tensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Tensor>, A::Error> {
        let signature = self.signature;
        let mut stacks: Vec<Stack> = signature.inputs.iter().map(|_| Stack::default()).collect();
        let mut instance = 0;
        loop {
            let row = NamedInputsSeed {
                signature,
                sink: |ix: usize, tensor: Tensor| {
                    stacks[ix].push(tensor, &signature.inputs[ix].name, instance)
                },
            };
            if seq.next_element_seed(row)?.is_none() {
                break;
            }
            instance += 1;
        }
        if instance == 0 {
            return Err(de::Error::custom("\"instances\" is empty"));
        }
        Ok(stacks.into_iter().map(Stack::into_tensor).collect())
    }
}

/// One input's rows, stacked along a new first dimension as they arrive.
#[derive(Default)]
struct Stack {
    data: Option<TensorData>,
    row_shape: Vec<usize>,
    rows: usize,
}

impl Stack {
    fn push(&mut self, row: Tensor, input: &str, instance: usize) -> Result<(), String> {
        match &mut self.data {
            None => {
                self.row_shape = row.shape;
                self.data = Some(row.data);
            }
            Some(_) if row.shape != self.row_shape => {
                return Err(format!(
                    "instance {instance}: input '{input}' has shape {}, but the instances \
                     before it have {}; every instance must have the same shape",
                    format_shape(&row.shape),
                    format_shape(&self.row_shape)
                ));
            }
            Some(data) => data
                .append(row.data)
                .map_err(|_| format!("instance {instance}: input '{input}' changed datatype"))?,
        }
        self.rows += 1;
        Ok(())
    }

    fn into_tensor(self) -> Tensor {
        let mut shape = Vec::with_capacity(self.row_shape.len() + 1);
        shape.push(self.rows);
        shape.extend(self.row_shape);
        Tensor {
            shape,
            // Every input of every instance was pushed (NamedInputsSeed checks), so this
            // is only empty for an empty batch, which is refused before.
            data: self.data.unwrap_or(TensorData::Fp32(Vec::new())),
        }
    }
}

/// `{"predictions": [...]}`: one entry per row; with several outputs, an object by name per
/// row, which needs every output to have the rows as its first dimension.
fn encode_predictions(signature: &Signature, outputs: &[Tensor]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(64 + outputs.iter().map(|t| t.data.len() * 12).sum::<usize>());
    out.extend_from_slice(b"{\"predictions\":");
    if let ([spec], [only]) = (signature.outputs.as_slice(), outputs) {
        write_output(&mut out, spec, only);
    } else {
        let rows = outputs
            .first()
            .and_then(|t| t.shape.first())
            .copied()
            .unwrap_or(0);
        for (spec, tensor) in signature.outputs.iter().zip(outputs) {
            if tensor.shape.first() != Some(&rows) {
                return Err(ApiError::bad_request(format!(
                    "output '{}' has shape {}, which does not have the {rows} rows of the \
                     batch first; send the columnar {{\"inputs\": ...}} form instead",
                    spec.name,
                    format_shape(&tensor.shape)
                )));
            }
        }
        out.push(b'[');
        for row in 0..rows {
            if row > 0 {
                out.push(b',');
            }
            out.push(b'{');
            for (i, (spec, tensor)) in signature.outputs.iter().zip(outputs).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(&mut out, &spec.name);
                out.push(b':');
                match &spec.map_keys {
                    Some(labels) => write_class_map(&mut out, tensor, labels, row),
                    None => write_row(&mut out, tensor, row),
                }
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_bytes_input_takes_b64_instances() {
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: "text".into(),
                datatype: DataType::Bytes,
                shape: vec![Dim::Symbolic("batch".into())],
                map_keys: None,
            }],
            outputs: vec![],
        };
        let body = br#"{"instances": [{"b64": "aGk="}, "there"]}"#;
        let (format, tensors) = decode_request(&signature, body).unwrap();
        assert_eq!(format, Format::Rows);
        assert_eq!(tensors[0].shape, vec![2]);
        assert_eq!(
            tensors[0].data,
            TensorData::Bytes(vec!["hi".into(), "there".into()])
        );
        let body = br#"{"instances": [{"text": {"b64": "aGk="}}]}"#;
        let (_, tensors) = decode_request(&signature, body).unwrap();
        assert_eq!(tensors[0].data, TensorData::Bytes(vec!["hi".into()]));
    }
}
