//! A response as handlers build it, and the bytes of its head as we write them.

use super::error::ApiError;
use std::sync::Arc;
use std::time::SystemTime;

pub const SERVER: &str = concat!("onnx-serve/", env!("CARGO_PKG_VERSION"));

/// A response body: built per request, or prepared once at start-up and shared.
#[derive(Clone, Debug)]
pub enum Body {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
    Static(&'static [u8]),
}

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Owned(v) => v,
            Body::Shared(v) => v,
            Body::Static(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Body) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// 200 with a JSON body already encoded.
    pub fn json_bytes(body: Vec<u8>) -> Response {
        Response::new(200, JSON, Body::Owned(body))
    }

    /// 200 with any serializable value as the JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response {
        // Our response types serialize infallibly (string keys, no foreign maps).
        Response::json_bytes(serde_json::to_vec(value).expect("response values serialize"))
    }

    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

impl Response {
    /// An error's answer, its body naming the request's id so that a client can quote it.
    pub fn error(e: ApiError, request_id: &str) -> Response {
        Response {
            status: e.status,
            content_type: JSON,
            body: Body::Owned(e.body_with_id(Some(request_id))),
            headers: e.headers,
        }
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        let body = e.body();
        Response {
            status: e.status,
            content_type: JSON,
            headers: e.headers,
            body: Body::Owned(body),
        }
    }
}

pub(super) fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    request_id: &str,
    close: bool,
    keep_alive_1_0: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(response.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(response.status).as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    with_http_date(|date| out.extend_from_slice(date.as_bytes()));
    // A 204 has no body, and so neither its type nor its length (RFC 9110 8.6).
    if response.status != 204 {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(response.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(response.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\nX-Request-Id: ");
    out.extend_from_slice(request_id.as_bytes());
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if keep_alive_1_0 {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    for (name, value) in &response.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// The `Date` header value, formatted once per second per thread.
fn with_http_date(f: impl FnOnce(&str)) {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        f(text)
    })
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        // nginx's: the client left before its request ran (`client_gone`).
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
