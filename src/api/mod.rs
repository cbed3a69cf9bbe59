//! The protocols: one file per protocol (`simple`, `v1`, `v2`, and `ops` for what
//! operators read), each handler a plain function from the app and the request to a
//! response; `routes.rs` says which handler serves which method and path. What the
//! protocols share lives here, with the model's classes (`classes.rs`) and image bodies
//! (`image_body.rs`), decided once at start-up.

mod app;
mod classes;
mod image_body;
mod ops;
mod routes;
pub mod simple;
mod v1;
pub mod v2;

pub use app::{App, DEFAULT_VERSION, Serving};
pub use classes::{Classes, LabelsFile, resolve as resolve_classes};
pub use image_body::{ImageSettings, Images};
pub use routes::ROUTES;

use crate::engine::{Caller, Model, Refused, RunError};
use crate::http::{self, ApiError, Auth, Cors, Params, Request, Response, Router, Service, clip};
use crate::ops::prediction_stats::Timeline;
use crate::tensor::Tensor;
use serde::de::DeserializeSeed;
use std::sync::Arc;
use std::time::Instant;

impl App {
    /// An app serving the route table, its model not loaded yet.
    pub fn new(model_name: String) -> App {
        App::with_routes(model_name, &ROUTES)
    }
}

/// What the HTTP server serves: `app`'s routes, open to whom `auth` and `cors` say.
pub fn service(app: Arc<App>, auth: Auth, cors: Cors) -> Service<App> {
    Service {
        metrics: app.metrics.clone(),
        state: app,
        router: Router::new(&ROUTES),
        auth,
        cors,
    }
}

/// Checks that a `/v1` or `/v2` path names the model this server serves, and its version
/// when the path names one: 404 otherwise. Any version-less path reaches the one model.
fn check_model(app: &App, params: &Params) -> Result<(), ApiError> {
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

/// The shape every prediction handler has: check the path's model, read the body, be
/// admitted to run (a worker slot, or with batching a place in a batch), and run `work` on
/// the prediction (the loaded model and the request's caller) and the body. Its outcome and
/// the time each step took are counted (`App::stats`).
fn predict_with(
    app: &App,
    req: &mut Request,
    work: impl FnOnce(&mut Prediction, &[u8]) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    check_model(app, &req.params)?;
    let model = app.model()?;
    let caller = req.peer().map(|peer| Caller::new(peer, http::client_left));
    let received = req.received;
    let mut steps = None;
    let answer = (|| {
        let body = req.body()?;
        let queued = Instant::now();
        let _admitted = model.admit(caller).map_err(refused)?;
        let admitted = Instant::now();
        let mut prediction = Prediction::new(model, caller);
        let answer = work(&mut prediction, body);
        steps = prediction.ran.map(|ran| (queued, admitted, ran));
        answer
    })();
    match (&answer, steps) {
        (Ok(_), Some((queued, admitted, ran))) => app.stats.success(&Timeline {
            received,
            queued,
            admitted,
            run_started: ran.started,
            run_ended: ran.ended,
            done: Instant::now(),
            rows: ran.rows,
        }),
        _ => app.stats.failure(received.elapsed()),
    }
    answer
}

/// A prediction under way: the model, the client it runs for, and when its run happened.
pub struct Prediction<'a> {
    pub model: &'a Model,
    caller: Option<Caller>,
    ran: Option<Ran>,
}

#[derive(Clone, Copy)]
struct Ran {
    started: Instant,
    ended: Instant,
    /// Rows of the batch dimension; 1 for a model without one.
    rows: u64,
}

impl<'a> Prediction<'a> {
    /// A prediction for `caller` (None outside HTTP: the `predict` command).
    pub fn new(model: &'a Model, caller: Option<Caller>) -> Prediction<'a> {
        Prediction {
            model,
            caller,
            ran: None,
        }
    }

    /// Checks the inputs against the model's signature and runs it: a 400 for inputs that
    /// do not fit, a 500 when the model fails.
    pub fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        let signature = self.model.signature();
        signature
            .check_inputs(&inputs)
            .map_err(ApiError::bad_request)?;
        let rows = match signature.batch_dim() {
            Some(_) => inputs.first().and_then(|t| t.shape.first()).copied(),
            None => None,
        };
        let started = Instant::now();
        let outputs = self.model.run(inputs, self.caller).map_err(run_error)?;
        self.ran = Some(Ran {
            started,
            ended: Instant::now(),
            rows: rows.map_or(1, |n| n as u64),
        });
        Ok(outputs)
    }
}

/// How a failed run is reported: the model failed, not the request.
pub fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Failed(message) => ApiError::internal(format!("the model failed: {message}")),
        RunError::Panicked(message) => ApiError::internal(format!("the model panicked: {message}")),
        RunError::Busy(busy) => refused(Refused::Busy(busy)),
        RunError::CallerLeft => refused(Refused::CallerLeft),
    }
}

/// A request the engine would not admit: 503 when the line is full, 499 when its client
/// left while it waited.
fn refused(refused: Refused) -> ApiError {
    match refused {
        Refused::Busy(busy) => ApiError::unavailable(busy.to_string(), 1),
        Refused::CallerLeft => ApiError::client_closed(),
    }
}

/// Decodes a whole JSON body with `seed`; errors are 400s.
fn decode_json<'b, S: DeserializeSeed<'b>>(seed: S, body: &'b [u8]) -> Result<S::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    seed.deserialize(&mut de)
        .and_then(|value| de.end().map(|_| value))
        .map_err(json_error)
}

/// A serde_json error as a 400: syntax errors are "malformed JSON", the others carry our
/// own messages (which name the input) with the position serde_json adds.
fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => ApiError::bad_request(format!("malformed JSON: {e}")),
        Category::Data | Category::Io => ApiError::bad_request(e.to_string()),
    }
}
