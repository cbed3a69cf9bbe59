//! The one error type of request handling: it knows its HTTP status, its message and the
//! headers that go with it, and becomes a `{"error": "..."}` JSON response.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Extra headers the status calls for: `Allow` on 405, `Retry-After` on 503...
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    /// 405, with the `Allow` header listing what the path does accept.
    pub fn method_not_allowed(method: &str, path: &str, allow: &str) -> ApiError {
        ApiError::new(
            405,
            format!("{method} is not allowed on {path}; use {allow}"),
        )
        .with_header("Allow", allow)
    }

    pub fn payload_too_large(declared: usize, limit: usize) -> ApiError {
        ApiError::new(
            413,
            format!(
                "request body of {declared} bytes is over the limit of {limit} bytes (--max-body)"
            ),
        )
    }

    /// 503 with `Retry-After`: overloaded, draining or not ready. Clients should retry.
    pub fn unavailable(message: impl Into<String>, retry_after_seconds: u32) -> ApiError {
        ApiError::new(503, message).with_header("Retry-After", retry_after_seconds.to_string())
    }

    /// 499, nginx's "client closed request": the client left before its request ran, so
    /// it was not run. Seen in the access log and metrics; a client that only half-closed
    /// reads it, then the connection closes.
    pub fn client_closed() -> ApiError {
        ApiError::new(
            499,
            "the client closed the connection while the request waited to run; not run",
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body: `{"error": "..."}`.
    pub fn body(&self) -> Vec<u8> {
        self.body_with_id(None)
    }

    /// `{"error": "...", "request_id": "..."}`: the body of an HTTP answer.
    pub fn body_with_id(&self, request_id: Option<&str>) -> Vec<u8> {
        use crate::tensor::json::write_json_string;
        let mut out = Vec::with_capacity(self.message.len() + 64);
        out.extend_from_slice(b"{\"error\":");
        write_json_string(&mut out, &self.message);
        if let Some(id) = request_id {
            out.extend_from_slice(b",\"request_id\":");
            write_json_string(&mut out, id);
        }
        out.push(b'}');
        out
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_json_with_the_message_escaped() {
        let e = ApiError::bad_request("input 'x': \"quoted\"\n");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"], "input 'x': \"quoted\"\n");
    }
}
