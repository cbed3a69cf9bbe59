//! The Flask-style API: `POST /predict`, `GET /`, `GET /healthz`, `GET /readyz`.
//!
//! `POST /predict` takes `{"inputs": X}` and answers `{"outputs": Y}`. X is a nested list
//! when the model has one input, else an object `{"name": nested list, ...}`; Y likewise for
//! the outputs.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::model::{Model, RunError};
use crate::signature::{Signature, TensorDescription};
use crate::tensor::Tensor;
use crate::tensor::json::{
    Scalar, TensorSeed, tensor_from_scalar, tensor_from_seq, write_json_string, write_tensor,
};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// `POST /predict`.
pub fn predict(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let model = app.model()?;
    let body = req.body()?;
    let _worker = app.worker()?;
    predict_json(model, body).map(Response::json_bytes)
}

/// Decodes a `/predict` body, runs the model and encodes its answer. The HTTP handler and
/// the `predict` command share it.
pub fn predict_json(model: &Model, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let signature = model.signature();
    let inputs = decode_request(signature, body)?;
    signature
        .check_inputs(&inputs)
        .map_err(ApiError::bad_request)?;
    let outputs = model.run(inputs).map_err(run_error)?;
    Ok(encode_response(signature, &outputs))
}

/// How a failed run is reported: the model failed, not the request.
pub fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Failed(message) => ApiError::internal(format!("the model failed: {message}")),
        RunError::Panicked(message) => ApiError::internal(format!("the model panicked: {message}")),
    }
}

/// `GET /`: what this server serves and where.
pub fn summary(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let model = app.model()?;
    let signature = model.signature();
    let name = &app.model_name;
    Ok(Response::json(&Summary {
        name,
        ready: app.readiness().is_ok(),
        inputs: signature.inputs.iter().map(|s| s.describe()).collect(),
        outputs: signature.outputs.iter().map(|s| s.describe()).collect(),
        request_example: request_example(signature),
        links: Links {
            predict: "/predict",
            health: "/healthz",
            ready: "/readyz",
        },
    }))
}

#[derive(Serialize)]
struct Summary<'a> {
    name: &'a str,
    ready: bool,
    inputs: Vec<TensorDescription<'a>>,
    outputs: Vec<TensorDescription<'a>>,
    /// How a `/predict` body for this model is shaped.
    request_example: String,
    links: Links,
}

#[derive(Serialize)]
struct Links {
    predict: &'static str,
    health: &'static str,
    ready: &'static str,
}

fn request_example(signature: &Signature) -> String {
    match signature.inputs.as_slice() {
        [one] => format!("{{\"inputs\": <{} {}>}}", one.datatype, one.shape_text()),
        many => {
            let fields: Vec<String> = many
                .iter()
                .map(|s| format!("\"{}\": <{} {}>", s.name, s.datatype, s.shape_text()))
                .collect();
            format!("{{\"inputs\": {{{}}}}}", fields.join(", "))
        }
    }
}

/// `GET /healthz`: the process is alive. Always 200, even while loading or draining.
pub fn healthz(_app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    Ok(Response::json(&Status { status: "ok" }))
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// `GET /readyz`: 200 when predictions can be served, 503 while loading or draining.
pub fn readyz(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    app.readiness()?;
    Ok(Response::json(&Ready { ready: true }))
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
}

/// Decodes `{"inputs": ...}` into tensors in the model's input order.
pub fn decode_request(signature: &Signature, body: &[u8]) -> Result<Vec<Tensor>, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let inputs = RequestSeed { signature }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v));
    inputs.map_err(json_error)
}

/// A serde_json error as a 400: syntax errors are "malformed JSON", the others carry our
/// own messages (which name the input) with the position serde_json adds.
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => ApiError::bad_request(format!("malformed JSON: {e}")),
        Category::Data | Category::Io => ApiError::bad_request(e.to_string()),
    }
}

struct RequestSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Vec<Tensor>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Vec<Tensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"inputs\": ...}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Tensor>, A::Error> {
        let mut inputs = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "inputs" && inputs.is_none() {
                inputs = Some(map.next_value_seed(InputsSeed {
                    signature: self.signature,
                })?);
            } else if key == "inputs" {
                return Err(de::Error::custom("\"inputs\" is given twice"));
            } else {
                // Unknown fields are ignored, as most JSON APIs do.
                map.next_value::<IgnoredAny>()?;
            }
        }
        inputs.ok_or_else(|| {
            de::Error::custom(format!(
                "the body has no \"inputs\"; expected {}",
                request_example(self.signature)
            ))
        })
    }
}

/// The value of `"inputs"`: a nested list for a single-input model, or an object by name.
struct InputsSeed<'s> {
    signature: &'s Signature,
}

impl<'s> InputsSeed<'s> {
    fn only_input<E: de::Error>(&self) -> Result<&'s crate::signature::TensorSpec, E> {
        match self.signature.inputs.as_slice() {
            [one] => Ok(one),
            many => Err(E::custom(format!(
                "the model has {} inputs ({}): send them by name, {}",
                many.len(),
                self.signature.input_names(),
                request_example(self.signature)
            ))),
        }
    }

    fn scalar<E: de::Error>(self, value: Scalar<'_>) -> Result<Vec<Tensor>, E> {
        Ok(vec![tensor_from_scalar(self.only_input()?, value)?])
    }
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_> {
    type Value = Vec<Tensor>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = Vec<Tensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a nested list, or an object of nested lists by input name")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<Tensor>, A::Error> {
        Ok(vec![tensor_from_seq(self.only_input()?, seq)?])
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Tensor>, A::Error> {
        let signature = self.signature;
        let mut tensors: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
        while let Some(name) = map.next_key::<String>()? {
            let Some(ix) = signature.input_index(&name) else {
                return Err(de::Error::custom(format!(
                    "the model has no input '{}'; its inputs are {}",
                    shorten(&name),
                    signature.input_names()
                )));
            };
            if tensors[ix].is_some() {
                return Err(de::Error::custom(format!("input '{name}' is given twice")));
            }
            tensors[ix] = Some(map.next_value_seed(TensorSeed {
                spec: &signature.inputs[ix],
            })?);
        }
        let missing: Vec<&str> = signature
            .inputs
            .iter()
            .zip(&tensors)
            .filter(|(_, t)| t.is_none())
            .map(|(s, _)| s.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(de::Error::custom(format!(
                "missing input(s): {}",
                missing.join(", ")
            )));
        }
        Ok(tensors.into_iter().flatten().collect())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<Tensor>, E> {
        self.scalar(Scalar::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<Tensor>, E> {
        self.scalar(Scalar::Signed(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<Tensor>, E> {
        self.scalar(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<Tensor>, E> {
        self.scalar(Scalar::Str(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<Tensor>, E> {
        self.scalar(Scalar::Bool(v))
    }
}

fn shorten(name: &str) -> String {
    if name.len() <= 64 {
        return name.to_owned();
    }
    let mut end = 64;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

/// `{"outputs": Y}`: a nested list for a single-output model, else an object by name.
pub fn encode_response(signature: &Signature, outputs: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + outputs.iter().map(|t| t.data.len() * 12).sum::<usize>());
    out.extend_from_slice(b"{\"outputs\":");
    if let [only] = outputs {
        write_tensor(&mut out, only);
    } else {
        out.push(b'{');
        for (i, (spec, tensor)) in signature.outputs.iter().zip(outputs).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(&mut out, &spec.name);
            out.push(b':');
            write_tensor(&mut out, tensor);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}
