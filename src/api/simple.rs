//! The Flask-style API: `POST /predict`, `GET /`, `GET /healthz`, `GET /readyz`.
//!
//! `POST /predict` takes `{"inputs": X}` and answers `{"outputs": Y}`. X is a nested list
//! when the model has one input, else an object `{"name": nested list, ...}`; Y likewise for
//! the outputs. For a model with one image input it also takes an image (`image_body.rs`).
//! When the model's classes have labels (`classes.rs`), the answer also carries
//! `"labels"`: for each row of the labelled output, its `?top_k=N` best classes (default 5),
//! best first, `{"label", "index", "score"}`.

use super::app::{App, Serving};
use super::classes::Classes;
use super::image_body::{self, BodyKind};
use super::{Prediction, decode_json, predict_with};
use crate::http::{ApiError, Request, Response, clip};
use crate::tensor::json::{
    Scalar, TensorSeed, b64_value, tensor_from_scalar, tensor_from_seq, write_class_maps,
    write_json_string, write_tensor,
};
use crate::tensor::labels::top_k;
use crate::tensor::{DataType, Signature, Tensor, TensorDescription, TensorSpec};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// How many classes per row `"labels"` lists when `?top_k` does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// `POST /predict`: JSON, or an image.
pub fn predict(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let serving = app.serving()?;
    let top_k = top_k_param(req.query(), serving.classes.as_ref())?;
    let content_type = req.header("Content-Type");
    let kind = image_body::body_kind(content_type)?;
    // Kept for a form, whose boundary it holds (the request is borrowed again below).
    let content_type = match kind {
        BodyKind::Form => content_type.unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    predict_with(app, req, |prediction, body| {
        let inputs = match kind {
            BodyKind::Json => decode_request(
                prediction.model.signature(),
                body,
                prediction.model.spare_threads(),
            )?,
            BodyKind::Image | BodyKind::Form => vec![image_body::image_tensor(
                &serving.images,
                kind,
                &content_type,
                body,
            )?],
        };
        answer(serving, prediction, inputs, top_k).map(Response::json_bytes)
    })
}

/// Decodes a `/predict` JSON body, runs the model and encodes its answer, for the `predict`
/// command (no HTTP, no caller): what `POST /predict` answers.
pub fn predict_json(serving: &Serving, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let model = &serving.model;
    let mut prediction = Prediction::new(model, None);
    let inputs = decode_request(model.signature(), body, model.spare_threads())?;
    answer(serving, &mut prediction, inputs, DEFAULT_TOP_K)
}

/// Runs the model and encodes `{"outputs": ...}`, with `"labels"` when there are labels.
fn answer(
    serving: &Serving,
    prediction: &mut Prediction,
    inputs: Vec<Tensor>,
    k: usize,
) -> Result<Vec<u8>, ApiError> {
    let signature = prediction.model.signature();
    let mut outputs = prediction.run(inputs)?;
    let mut out = encode_response(signature, &outputs);
    if let Some(classes) = &serving.classes {
        let mut scores = outputs.swap_remove(classes.output);
        // [1, 1000, 1, 1]: the classes are before the trailing 1s (`classification_output`).
        while scores.shape.len() > 1 && scores.shape.last() == Some(&1) && classes.labels.len() != 1
        {
            scores.shape.pop();
        }
        let best = top_k(&scores, k, Some(&classes.labels))
            .map_err(|e| ApiError::internal(format!("cannot rank the classes: {e}")))?;
        // `{"outputs":...}` becomes `{"outputs":...,"labels":[...]}`.
        out.pop();
        out.extend_from_slice(b",\"labels\":");
        serde_json::to_writer(&mut out, &best).expect("top classes serialize");
        out.push(b'}');
    }
    Ok(out)
}

/// `?top_k=N`: how many classes per row the answer's `"labels"` lists, 1 or more (capped at
/// the number of classes). Without labels there is no list to shorten: a 400 says so.
fn top_k_param(query: &str, classes: Option<&Classes>) -> Result<usize, ApiError> {
    let mut values = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(key, _)| *key == "top_k")
        .map(|(_, value)| value);
    let Some(value) = values.next() else {
        return Ok(DEFAULT_TOP_K);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request("top_k is given twice"));
    }
    let Some(classes) = classes else {
        return Err(ApiError::bad_request(
            "top_k: the model's classes have no labels on this server, so answers carry no \
             \"labels\" to choose the top classes of; start it with --labels FILE",
        ));
    };
    match value.parse::<usize>() {
        Ok(k) if k > 0 => Ok(k.min(classes.labels.len())),
        _ => Err(ApiError::bad_request(format!(
            "top_k must be a whole number, 1 or more (more than the {} classes means all of \
             them), not {:?}",
            classes.labels.len(),
            clip(value, 32)
        ))),
    }
}

/// `GET /`: what this server serves and where.
pub fn summary(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let model = app.model()?;
    let signature = model.signature();
    let name = &app.model_name;
    Ok(Response::json(&Summary {
        name,
        status: "alive",
        ready: app.readiness().is_ok(),
        inputs: signature.inputs.iter().map(|s| s.describe()).collect(),
        outputs: signature.outputs.iter().map(|s| s.describe()).collect(),
        request_example: request_example(signature),
        links: Links {
            predict: "/predict",
            health: "/healthz",
            ready: "/readyz",
            docs: "/docs",
            openapi: "/openapi.json",
            metrics: "/metrics",
        },
    }))
}

#[derive(Serialize)]
struct Summary<'a> {
    name: &'a str,
    /// What KServe's v1 liveness check reads at `GET /`.
    status: &'static str,
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
    docs: &'static str,
    openapi: &'static str,
    metrics: &'static str,
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

/// Decodes `{"inputs": ...}` into tensors in the model's input order, on up to `threads`
/// threads for a large body.
pub fn decode_request(
    signature: &Signature,
    body: &[u8],
    threads: usize,
) -> Result<Vec<Tensor>, ApiError> {
    if let [spec] = signature.inputs.as_slice()
        && let Some(tensor) = crate::tensor::fast_json::decode_predict_body(spec, body, threads)
    {
        return Ok(vec![tensor]);
    }
    decode_request_general(signature, body)
}

/// The general decoder alone, without the fast path: the reference the fast path must
/// agree with (its tests and the fuzzer compare them).
pub fn decode_request_general(signature: &Signature, body: &[u8]) -> Result<Vec<Tensor>, ApiError> {
    decode_json(RequestSeed { signature }, body)
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

/// The value of `"inputs"`: the tensors in the model's input order.
pub struct InputsSeed<'s> {
    pub signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_> {
    type Value = Vec<Tensor>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Tensor>, D::Error> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.signature.inputs.len()];
        NamedInputsSeed {
            signature: self.signature,
            sink: |ix: usize, tensor: Tensor| {
                slots[ix] = Some(tensor);
                Ok(())
            },
        }
        .deserialize(d)?;
        // NamedInputsSeed has checked that every input is there.
        Ok(slots.into_iter().flatten().collect())
    }
}

/// `X` for a single-input model, or `{"name": X, ...}` with every input by name: the form of
/// `/predict`'s `inputs`, of TF-Serving's columnar `inputs` and of each of its `instances`.
/// Each tensor goes to `sink` with its input's index, as soon as it is decoded.
pub struct NamedInputsSeed<'s, F> {
    pub signature: &'s Signature,
    pub sink: F,
}

impl<'s, F: FnMut(usize, Tensor) -> Result<(), String>> NamedInputsSeed<'s, F> {
    fn only_input<E: de::Error>(&self) -> Result<&'s TensorSpec, E> {
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

    fn scalar<E: de::Error>(mut self, value: Scalar<'_>) -> Result<(), E> {
        let tensor = tensor_from_scalar(self.only_input()?, value)?;
        (self.sink)(0, tensor).map_err(E::custom)
    }

    /// `{"b64": "..."}` is a value, not an input named "b64", when the model's only input
    /// is BYTES (and not named so).
    fn b64_is_a_value(&self) -> bool {
        matches!(self.signature.inputs.as_slice(),
            [one] if one.datatype == DataType::Bytes && one.name != "b64")
    }
}

impl<'de, F: FnMut(usize, Tensor) -> Result<(), String>> DeserializeSeed<'de>
    for NamedInputsSeed<'_, F>
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(usize, Tensor) -> Result<(), String>> Visitor<'de> for NamedInputsSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a nested list, or an object of nested lists by input name")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<(), A::Error> {
        let tensor = tensor_from_seq(self.only_input()?, seq)?;
        (self.sink)(0, tensor).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let signature = self.signature;
        let mut seen = vec![false; signature.inputs.len()];
        while let Some(name) = map.next_key::<String>()? {
            if name == "b64" && !seen.contains(&true) && self.b64_is_a_value() {
                let text = b64_value(&mut map).map_err(|m| {
                    de::Error::custom(format!("input '{}': {m}", signature.inputs[0].name))
                })?;
                return self.scalar(Scalar::Str(&text));
            }
            let Some(ix) = signature.input_index(&name) else {
                return Err(de::Error::custom(format!(
                    "the model has no input '{}'; its inputs are {}",
                    clip(&name, 64),
                    signature.input_names()
                )));
            };
            if std::mem::replace(&mut seen[ix], true) {
                return Err(de::Error::custom(format!("input '{name}' is given twice")));
            }
            let tensor = map.next_value_seed(TensorSeed {
                spec: &signature.inputs[ix],
            })?;
            (self.sink)(ix, tensor).map_err(de::Error::custom)?;
        }
        let missing: Vec<&str> = signature
            .inputs
            .iter()
            .zip(&seen)
            .filter(|(_, seen)| !**seen)
            .map(|(s, _)| s.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(de::Error::custom(format!(
                "missing input(s): {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::Signed(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }
}

/// An output as nested lists, or, for a ZipMap output, as onnxruntime's Python API gives
/// it: one object per row, class label to probability.
pub fn write_output(out: &mut Vec<u8>, spec: &TensorSpec, tensor: &Tensor) {
    match &spec.map_keys {
        Some(labels) => write_class_maps(out, tensor, labels),
        None => write_tensor(out, tensor),
    }
}

/// `{"outputs": Y}`: a nested list for a single-output model, else an object by name.
pub fn encode_response(signature: &Signature, outputs: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + outputs.iter().map(|t| t.data.len() * 12).sum::<usize>());
    out.extend_from_slice(b"{\"outputs\":");
    if let ([spec], [only]) = (signature.outputs.as_slice(), outputs) {
        write_output(&mut out, spec, only);
    } else {
        out.push(b'{');
        for (i, (spec, tensor)) in signature.outputs.iter().zip(outputs).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(&mut out, &spec.name);
            out.push(b':');
            write_output(&mut out, spec, tensor);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}
