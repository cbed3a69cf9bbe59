//! One file per protocol. Each handler is a plain function from the app and the request to
//! a response; `routes.rs` says which handler serves which method and path. What the
//! protocols share lives here.

pub mod ops;
pub mod simple;
pub mod v1;
pub mod v2;

use crate::app::App;
use crate::client_gone;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::model::Model;
use crate::routes::Params;
use crate::tensor::Tensor;
use serde::de::DeserializeSeed;
use std::net::SocketAddr;

/// Checks that a `/v1` or `/v2` path names the model this server serves, and its version
/// when the path names one: 404 otherwise. Any version-less path reaches the one model.
pub fn check_model(app: &App, params: &Params) -> Result<(), ApiError> {
    if let Some(name) = &params.model
        && *name != app.model_name
    {
        return Err(ApiError::not_found(format!(
            "unknown model '{}'; this server serves '{}'",
            clip(name, 64),
            app.model_name
        )));
    }
    if let Some(version) = &params.version
        && *version != app.model_version
    {
        return Err(ApiError::not_found(format!(
            "model '{}' has no version '{}'; it serves version '{}'",
            app.model_name,
            clip(version, 64),
            app.model_version
        )));
    }
    Ok(())
}

/// The shape every prediction handler has: check the path's model, read the body, take a
/// worker slot and run `work` on the loaded model, the body and the client's address (for
/// `run_checked`). With batching the batch runners are the workers: a request waiting for
/// its batch must not hold a slot, or batches could never be larger than the number of
/// slots.
pub fn predict_with(
    app: &App,
    req: &mut Request,
    work: impl FnOnce(&Model, &[u8], Option<SocketAddr>) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    check_model(app, &req.params)?;
    let model = app.model()?;
    let client = req.peer();
    let body = req.body()?;
    let _worker = if model.batches() {
        None
    } else {
        let (slot, waited) = app.worker(client)?;
        if client_gone::left_while_waiting(waited, client) {
            return Err(ApiError::client_closed());
        }
        Some(slot)
    };
    work(model, body, client)
}

/// Checks the inputs against the model's signature and runs it: a 400 for inputs that do
/// not fit, a 500 when the model fails. `client`, for a request over HTTP, lets a batch
/// leave out a request whose client has gone (`client_gone`).
pub fn run_checked(
    model: &Model,
    inputs: Vec<Tensor>,
    client: Option<SocketAddr>,
) -> Result<Vec<Tensor>, ApiError> {
    model
        .signature()
        .check_inputs(&inputs)
        .map_err(ApiError::bad_request)?;
    model.run_for(inputs, client).map_err(simple::run_error)
}

/// Decodes a whole JSON body with `seed`; errors are 400s.
pub fn decode_json<'b, S: DeserializeSeed<'b>>(
    seed: S,
    body: &'b [u8],
) -> Result<S::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    seed.deserialize(&mut de)
        .and_then(|value| de.end().map(|_| value))
        .map_err(json_error)
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

/// Text from a client, clipped for a message: names are echoed, payloads are not.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
