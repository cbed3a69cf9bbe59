//! The body of `POST /v2/models/{m}/infer`, both ways.
//!
//! A request is JSON, or — the binary tensor data extension — a JSON header of
//! `Inference-Header-Content-Length` bytes followed by the raw data of the inputs that have
//! a `binary_data_size`, in the order of `inputs`. A header length of 0 is the raw form:
//! the whole body is the data of the model's single input.
//!
//! The JSON is decoded in one pass: `data` goes straight into the typed element vector of
//! the input it belongs to (`TensorSeed`), which needs the input's `name` first. When a
//! client sends `data` before `name` (key order is free in JSON), the data is kept as a
//! borrowed slice of the body and decoded once the name is known.
//!
//! The response is JSON, or a JSON header followed by the raw data of the outputs asked
//! for in binary (`binary_data` per output, `binary_data_output` for all).
//!
//! Triton's classification extension: an output asked for with `"parameters":
//! {"classification": k}` is answered as BYTES, the k best classes of each batch row as
//! `"score:index:label"` (`"score:index"` without a label), best first: `[batch, k]` for a
//! model with a batch dimension, else `[k]` for the whole output, as Triton does.

use crate::api::decode_json;
use crate::http::{ApiError, Body, Request, Response, clip};
use crate::tensor::json::{TensorSeed, write_flat, write_json_string};
use crate::tensor::labels::{Labels, triton_classification};
use crate::tensor::{
    DataType, Dim, Signature, Tensor, TensorData, TensorSpec, binary, element_count, format_shape,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";
const BINARY: &str = "application/octet-stream";

/// The `Inference-Header-Content-Length` of a request, when it has one.
pub fn header_length(req: &Request) -> Result<Option<usize>, ApiError> {
    if let Some(encoding) = req.header("Content-Encoding")
        && !encoding.eq_ignore_ascii_case("identity")
    {
        return Err(ApiError::new(
            415,
            format!(
                "Content-Encoding {} is not supported; send the body uncompressed",
                clip(encoding, 32)
            ),
        ));
    }
    let Some(value) = req.header(HEADER_LENGTH) else {
        return Ok(None);
    };
    value.trim().parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "{HEADER_LENGTH} must be a byte count, got {:?}",
            clip(value, 32)
        ))
    })
}

/// A decoded request: the inputs in the model's order, and what to answer.
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<OutputChoice>,
}

/// One output to answer with, whether as binary data, and whether as its k best classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputChoice {
    pub index: usize,
    pub binary: bool,
    /// The classification extension's k; `None` for the output itself.
    pub classification: Option<usize>,
}

/// Decodes a request body; `header_length` is its `Inference-Header-Content-Length`.
pub fn decode(
    signature: &Signature,
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferRequest, ApiError> {
    let (json, binary) = match header_length {
        None => (body, &[][..]),
        Some(0) => return decode_raw(signature, body),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                body.len()
            )));
        }
    };
    let header = decode_header(signature, json)?;
    let outputs = choose_outputs(signature, &header)?;
    let inputs = assemble(signature, header.inputs, binary)?;
    Ok(InferRequest {
        id: header.id,
        inputs,
        outputs,
    })
}

/// The raw form: the body is the binary data of the model's only input. Its shape is the
/// model's, with at most one variable dimension, found from the element count.
fn decode_raw(signature: &Signature, body: &[u8]) -> Result<InferRequest, ApiError> {
    let [spec] = signature.inputs.as_slice() else {
        return Err(ApiError::bad_request(format!(
            "with {HEADER_LENGTH}: 0 the whole body is the one input, but the model has {} \
             inputs ({}); send a JSON header",
            signature.inputs.len(),
            signature.input_names()
        )));
    };
    let data = binary::decode(spec.datatype, body).map_err(|m| input_error(spec, m))?;
    let shape = infer_shape(spec, data.len()).map_err(|m| input_error(spec, m))?;
    let tensor = Tensor::new(shape, data).map_err(|m| input_error(spec, m))?;
    Ok(InferRequest {
        id: None,
        inputs: vec![tensor],
        outputs: all_outputs(signature, false),
    })
}

/// The shape of `count` elements of `spec`: its fixed dimensions, and the one variable
/// dimension (if any) takes what is left.
fn infer_shape(spec: &TensorSpec, count: usize) -> Result<Vec<usize>, String> {
    let variable = spec
        .shape
        .iter()
        .filter(|d| matches!(d, Dim::Symbolic(_)))
        .count();
    let fixed: usize = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) => 1,
        })
        .fold(1usize, usize::saturating_mul);
    let fits = match variable {
        0 => count == fixed,
        1 => fixed > 0 && count > 0 && count.is_multiple_of(fixed),
        _ => {
            return Err(format!(
                "its shape {} has {variable} variable dimensions, so {count} elements do not \
                 say its shape; send a JSON header with \"shape\"",
                spec.shape_text()
            ));
        }
    };
    if !fits {
        return Err(format!(
            "{count} elements do not fill shape {}",
            spec.shape_text()
        ));
    }
    let fill = count.checked_div(fixed).unwrap_or(0);
    Ok(spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) => fill,
        })
        .collect())
}

fn input_error(spec: &TensorSpec, message: impl fmt::Display) -> ApiError {
    ApiError::bad_request(format!("input '{}': {message}", spec.name))
}

/// The request's JSON, with the data of JSON inputs decoded.
#[derive(Default)]
struct Header<'b> {
    id: Option<String>,
    inputs: Vec<RequestInput<'b>>,
    outputs: Option<Vec<RequestedOutput>>,
    binary_output: bool,
}

/// One entry of `inputs`, as sent.
#[derive(Default)]
struct RequestInput<'b> {
    /// The model input it names.
    index: Option<usize>,
    /// Checked once the input's name is known, so that messages can name it.
    datatype: Option<String>,
    shape: Option<Vec<i64>>,
    binary_size: Option<usize>,
    data: Option<Data<'b>>,
}

enum Data<'b> {
    Decoded(TensorData),
    /// Sent before the input's name: decoded once the name is known.
    Deferred(&'b RawValue),
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<OutputParameters>,
}

#[derive(Deserialize, Default)]
struct OutputParameters {
    binary_data: Option<bool>,
    classification: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: bool,
}

#[derive(Deserialize, Default)]
struct InputParameters {
    binary_data_size: Option<u64>,
}

fn decode_header<'b>(signature: &Signature, json: &'b [u8]) -> Result<Header<'b>, ApiError> {
    let header = decode_json(HeaderSeed { signature }, json)?;
    if header.inputs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the request has no \"inputs\"; the model's inputs are {}",
            signature.input_names()
        )));
    }
    Ok(header)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum HeaderField {
    Id,
    Parameters,
    Inputs,
    Outputs,
    #[serde(other)]
    Other,
}

struct HeaderSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Header<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Header<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request object {\"inputs\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        let mut header = Header::default();
        while let Some(field) = map.next_key()? {
            match field {
                HeaderField::Id => header.id = Some(map.next_value()?),
                HeaderField::Parameters => {
                    let parameters: Option<RequestParameters> = map.next_value()?;
                    header.binary_output = parameters.unwrap_or_default().binary_data_output;
                }
                HeaderField::Inputs => {
                    header.inputs = map.next_value_seed(InputsSeed {
                        signature: self.signature,
                    })?
                }
                HeaderField::Outputs => header.outputs = map.next_value()?,
                // Unknown fields, such as a top-level "model_name", are ignored.
                HeaderField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(header)
    }
}

/// The `inputs` list.
struct InputsSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_> {
    type Value = Vec<RequestInput<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = Vec<RequestInput<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of input tensors")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        while let Some(input) = seq.next_element_seed(InputSeed {
            signature: self.signature,
        })? {
            inputs.push(input);
        }
        Ok(inputs)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum InputField {
    Name,
    Datatype,
    Shape,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

/// One input object: `{"name", "datatype", "shape", "parameters"?, "data"?}`.
struct InputSeed<'s> {
    signature: &'s Signature,
}

impl<'de> DeserializeSeed<'de> for InputSeed<'_> {
    type Value = RequestInput<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for InputSeed<'_> {
    type Value = RequestInput<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an input object {\"name\", \"datatype\", \"shape\", \"data\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let signature = self.signature;
        let mut input = RequestInput::default();
        while let Some(field) = map.next_key()? {
            match field {
                InputField::Name => {
                    let name: String = map.next_value()?;
                    input.index = Some(input_index(signature, &name).map_err(de::Error::custom)?);
                }
                InputField::Datatype => input.datatype = Some(map.next_value()?),
                InputField::Shape => input.shape = Some(map.next_value()?),
                InputField::Parameters => {
                    let parameters: Option<InputParameters> = map.next_value()?;
                    input.binary_size = parameters
                        .and_then(|p| p.binary_data_size)
                        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
                }
                InputField::Data => {
                    input.data = Some(match input.index {
                        Some(ix) => {
                            let spec = &signature.inputs[ix];
                            // Refuse a wrong datatype before decoding numbers as another.
                            if let Some(datatype) = &input.datatype {
                                check_datatype(spec, datatype).map_err(de::Error::custom)?;
                            }
                            Data::Decoded(map.next_value_seed(TensorSeed { spec })?.data)
                        }
                        None => Data::Deferred(map.next_value()?),
                    });
                }
                InputField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(input)
    }
}

fn input_index(signature: &Signature, name: &str) -> Result<usize, String> {
    signature.input_index(name).ok_or_else(|| {
        format!(
            "the model has no input '{}'; its inputs are {}",
            clip(name, 64),
            signature.input_names()
        )
    })
}

fn parse_shape(shape: &[i64]) -> Result<Vec<usize>, String> {
    shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("shape {shape:?} has a negative dimension"))
}

/// The declared datatype must be a datatype, and the model's.
fn check_datatype(spec: &TensorSpec, declared: &str) -> Result<(), String> {
    match DataType::from_name(declared) {
        Some(datatype) if datatype == spec.datatype => Ok(()),
        Some(datatype) => Err(format!(
            "input '{}' expects datatype {}, got {datatype}",
            spec.name, spec.datatype
        )),
        None => {
            let names: Vec<&str> = DataType::ALL.iter().map(|d| d.name()).collect();
            Err(format!(
                "input '{}': unknown datatype {:?}; the datatypes are {}",
                spec.name,
                clip(declared, 32),
                names.join(", ")
            ))
        }
    }
}

/// Which outputs to answer with, in the order asked (all, in the model's order, when the
/// request does not say), and in which form.
fn choose_outputs(signature: &Signature, header: &Header) -> Result<Vec<OutputChoice>, ApiError> {
    let Some(requested) = &header.outputs else {
        return Ok(all_outputs(signature, header.binary_output));
    };
    let mut chosen: Vec<OutputChoice> = Vec::with_capacity(requested.len());
    for output in requested {
        let index = signature.output_index(&output.name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "the model has no output '{}'; its outputs are {}",
                clip(&output.name, 64),
                signature.output_names()
            ))
        })?;
        if chosen.iter().any(|c| c.index == index) {
            return Err(ApiError::bad_request(format!(
                "output '{}' is asked for twice",
                output.name
            )));
        }
        let parameters = output.parameters.as_ref();
        // 0 asks for no classification, as in Triton.
        let classification = parameters
            .and_then(|p| p.classification)
            .filter(|&k| k > 0)
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX));
        let datatype = signature.outputs[index].datatype;
        if classification.is_some() && matches!(datatype, DataType::Bytes | DataType::Bool) {
            return Err(ApiError::bad_request(format!(
                "output '{}' is {datatype}: it has no scores to rank classes by \
                 (classification)",
                output.name
            )));
        }
        let binary = parameters.and_then(|p| p.binary_data);
        chosen.push(OutputChoice {
            index,
            binary: binary.unwrap_or(header.binary_output),
            classification,
        });
    }
    Ok(chosen)
}

fn all_outputs(signature: &Signature, binary: bool) -> Vec<OutputChoice> {
    (0..signature.outputs.len())
        .map(|index| OutputChoice {
            index,
            binary,
            classification: None,
        })
        .collect()
}

/// Replaces each output asked for with `classification` by its k best classes (Triton's
/// strings). `labels` gives the labels of an output, if it has any; `batched` says whether
/// the first dimension is the batch (Triton's `max_batch_size` > 0).
pub fn classify<'l>(
    outputs: &mut [Tensor],
    chosen: &[OutputChoice],
    labels: impl Fn(usize) -> Option<&'l Labels>,
    batched: bool,
) -> Result<(), ApiError> {
    for choice in chosen {
        let Some(k) = choice.classification else {
            continue;
        };
        // Each output is chosen at most once (`choose_outputs`).
        let output = &mut outputs[choice.index];
        *output = triton_classification(output, k, batched, labels(choice.index))
            .map_err(|e| ApiError::internal(format!("cannot classify an output: {e}")))?;
    }
    Ok(())
}

/// Turns the inputs as sent into tensors in the model's order: the data from JSON or from
/// the binary section, checked against the declared shape (the signature is checked by
/// `run_checked`).
fn assemble(
    signature: &Signature,
    inputs: Vec<RequestInput>,
    binary: &[u8],
) -> Result<Vec<Tensor>, ApiError> {
    let claimed = inputs
        .iter()
        .filter_map(|i| i.binary_size)
        .fold(0usize, usize::saturating_add);
    if claimed < binary.len() {
        return Err(ApiError::bad_request(format!(
            "the body has {} bytes after the binary data of the inputs (their \
             binary_data_size add up to {claimed})",
            binary.len() - claimed
        )));
    }
    let mut slots: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    let mut rest = binary;
    for input in inputs {
        let Some(index) = input.index else {
            return Err(ApiError::bad_request("an input has no \"name\""));
        };
        let spec = &signature.inputs[index];
        let tensor = input_tensor(spec, input, &mut rest)?;
        if slots[index].replace(tensor).is_some() {
            return Err(input_error(spec, "given twice"));
        }
    }
    let missing: Vec<&str> = signature
        .inputs
        .iter()
        .zip(&slots)
        .filter(|(_, slot)| slot.is_none())
        .map(|(spec, _)| spec.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "missing input(s): {}",
            missing.join(", ")
        )));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// One input's tensor; binary data is taken from the front of `binary`.
fn input_tensor(
    spec: &TensorSpec,
    input: RequestInput,
    binary: &mut &[u8],
) -> Result<Tensor, ApiError> {
    let datatype = input
        .datatype
        .ok_or_else(|| input_error(spec, "no \"datatype\""))?;
    check_datatype(spec, &datatype).map_err(ApiError::bad_request)?;
    let shape = input
        .shape
        .ok_or_else(|| input_error(spec, "no \"shape\""))?;
    let shape = parse_shape(&shape).map_err(|m| input_error(spec, m))?;
    let data = match (input.data, input.binary_size) {
        (Some(Data::Decoded(data)), None) => data,
        (Some(Data::Deferred(raw)), None) => decode_deferred(spec, raw)?,
        (None, Some(size)) => {
            let bytes = take_binary(spec, binary, size)?;
            binary::decode(spec.datatype, bytes).map_err(|m| input_error(spec, m))?
        }
        (Some(_), Some(_)) => {
            return Err(input_error(
                spec,
                "has both \"data\" and a binary_data_size; send one of them",
            ));
        }
        (None, None) => {
            return Err(input_error(
                spec,
                "has no \"data\" and no binary_data_size parameter",
            ));
        }
    };
    let expected = element_count(&shape)
        .ok_or_else(|| input_error(spec, format!("shape {shape:?} is too large")))?;
    if data.len() != expected {
        return Err(input_error(
            spec,
            format!(
                "shape {} needs {expected} elements but the data has {}",
                format_shape(&shape),
                data.len()
            ),
        ));
    }
    Ok(Tensor { shape, data })
}

fn decode_deferred(spec: &TensorSpec, raw: &RawValue) -> Result<TensorData, ApiError> {
    decode_json(TensorSeed { spec }, raw.get().as_bytes()).map(|t| t.data)
}

fn take_binary<'b>(
    spec: &TensorSpec,
    binary: &mut &'b [u8],
    size: usize,
) -> Result<&'b [u8], ApiError> {
    if size > binary.len() {
        return Err(input_error(
            spec,
            format!(
                "binary_data_size is {size} but only {} bytes of binary data are left in the body",
                binary.len()
            ),
        ));
    }
    let (bytes, rest) = binary.split_at(size);
    *binary = rest;
    Ok(bytes)
}

/// What every response names.
pub struct Served<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub id: Option<&'a str>,
}

/// The response: JSON, or a JSON header and the binary outputs after it.
pub fn encode(
    served: &Served,
    signature: &Signature,
    outputs: &[Tensor],
    chosen: &[OutputChoice],
) -> Response {
    let mut json = Vec::with_capacity(
        128 + chosen
            .iter()
            .filter(|c| !c.binary)
            .map(|c| outputs[c.index].data.len() * 12)
            .sum::<usize>(),
    );
    let mut raw = Vec::new();
    json.extend_from_slice(b"{\"model_name\":");
    write_json_string(&mut json, served.model_name);
    json.extend_from_slice(b",\"model_version\":");
    write_json_string(&mut json, served.model_version);
    if let Some(id) = served.id {
        json.extend_from_slice(b",\"id\":");
        write_json_string(&mut json, id);
    }
    json.extend_from_slice(b",\"outputs\":[");
    for (i, choice) in chosen.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        // `chosen` indexes the signature's outputs, which `run` returns one for one.
        let tensor = &outputs[choice.index];
        write_output_head(&mut json, &signature.outputs[choice.index].name, tensor);
        if choice.binary {
            let size = binary::encoded_len(&tensor.data);
            json.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            json.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
            json.push(b'}');
            binary::encode(&mut raw, &tensor.data);
        } else {
            json.extend_from_slice(b",\"data\":");
            write_flat(&mut json, tensor);
        }
        json.push(b'}');
    }
    json.extend_from_slice(b"]}");
    if !chosen.iter().any(|c| c.binary) {
        return Response::json_bytes(json);
    }
    let json_length = json.len();
    json.extend_from_slice(&raw);
    Response::new(200, BINARY, Body::Owned(json))
        .with_header(HEADER_LENGTH, json_length.to_string())
}

/// `{"name":..,"datatype":..,"shape":[..]`, left open for the data.
fn write_output_head(out: &mut Vec<u8>, name: &str, tensor: &Tensor) {
    out.extend_from_slice(b"{\"name\":");
    write_json_string(out, name);
    out.extend_from_slice(b",\"datatype\":\"");
    out.extend_from_slice(tensor.datatype().name().as_bytes());
    out.extend_from_slice(b"\",\"shape\":[");
    for (i, d) in tensor.shape.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(itoa::Buffer::new().format(*d).as_bytes());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Vec<Dim>) -> TensorSpec {
        crate::tensor::test_spec("x", shape)
    }

    #[test]
    fn the_raw_form_fills_one_variable_dimension() {
        let batch = || Dim::Symbolic("batch".into());
        let s = spec(vec![batch(), Dim::Fixed(4)]);
        assert_eq!(infer_shape(&s, 8).unwrap(), vec![2, 4]);
        assert!(infer_shape(&s, 6).unwrap_err().contains("do not fill"));
        assert!(infer_shape(&s, 0).unwrap_err().contains("do not fill"));
        let s = spec(vec![Dim::Fixed(1), Dim::Fixed(4)]);
        assert_eq!(infer_shape(&s, 4).unwrap(), vec![1, 4]);
        assert!(infer_shape(&s, 8).is_err());
        let s = spec(vec![batch(), Dim::Symbolic("seq".into())]);
        assert!(
            infer_shape(&s, 8)
                .unwrap_err()
                .contains("2 variable dimensions")
        );
        let s = spec(vec![batch(), Dim::Fixed(0)]);
        assert!(infer_shape(&s, 0).is_err());
    }
}
