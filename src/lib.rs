//! onnx-serve: one ONNX model served over HTTP.
//!
//! Layers, each a folder, each importing only from the ones below it:
//!
//! - `cli`: the command line, and the commands (serve, `inspect`, `predict`, `healthcheck`);
//! - `api`: the protocols' handlers and the route table, and what they share (`App`);
//! - `http`: the request loop, the router, and what wraps every handler; `http/tiny` is the
//!   one door to the HTTP library;
//! - `engine`: the model, its admission line and its runs; the only layer that knows tract;
//! - `ops`: metrics, the API documents, logging, memory;
//! - `tensor`: datatypes, tensors, the signature, and their wire formats.
//!
//! A request's path through them is drawn in docs/architecture.md.

pub mod api;
pub mod cli;
pub mod engine;
pub mod http;
pub mod ops;
pub mod tensor;

#[cfg(test)]
mod test_rng;

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
