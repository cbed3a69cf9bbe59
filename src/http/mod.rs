//! HTTP: the request loop (`server`), the request and its answer, the router, and the
//! work wrapped around every handler (`wrap`: request id, CORS, API key, metrics, the
//! connection-close decision, the access line).
//!
//! This layer knows the API only through the route table it is given (`Router`), and the
//! HTTP library only through `tiny/`, the one door to tiny_http.

mod access_log;
mod auth;
mod cors;
mod error;
pub mod multipart;
mod request;
mod request_id;
mod response;
mod rotation;
mod router;
mod server;
mod tiny;
mod wrap;

pub use auth::{ApiKey, Auth};
pub use cors::Cors;
pub use error::ApiError;
pub use request::{BodyLimits, Method, Params, Request};
pub use response::{Body, JSON, Response};
pub use router::{Allow, Handler, Route, Router};
pub use server::{Draining, Event, Server, Service, Settings, bind};
pub use tiny::{OpenFiles, client_left, raise_open_files_limit};

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
