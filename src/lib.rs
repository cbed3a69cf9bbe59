//! onnx-serve: one ONNX model served over HTTP.
//!
//! The request path, file by file: `server` takes requests from tiny_http and gives each a
//! thread; `routes` maps method and path to a handler in `api`; handlers decode tensors
//! (`tensor`), check them against the model's `signature`, take a `workers` slot and run the
//! `model`; `http` writes the response. `app` holds what they share.

pub mod access_log;
pub mod api;
pub mod app;
pub mod auth;
pub mod batcher;
pub mod client_gone;
pub mod config;
pub mod conn_pool;
pub mod cors;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod healthcheck;
pub mod http;
pub mod limits;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod model_path;
// New, not wired yet; its place is src/http/ once http.rs becomes a folder.
#[path = "http/multipart.rs"]
pub mod multipart;
pub mod openapi;
pub mod rotation;
pub mod routes;
pub mod run_threads;
pub mod server;
pub mod signature;
pub mod starved;
// New, not wired yet: the JSON of GET /v2/models/{m}/stats; its place is the lead's to pick.
pub mod stats_shape;
pub mod tensor;
pub mod workers;

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}
