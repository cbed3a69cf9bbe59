//! One HTTP exchange as handlers see it: the request (method, path, headers, and a body read
//! on demand within the size limit and the read deadline) and the response they return.
//!
//! Responses are written by us, head and body in one buffer and one `write`, rather than by
//! tiny_http's `respond`: that saves a second packet per response, lets us say
//! `Connection: close` when we mean it (tiny_http drops that header), and keeps tiny_http's
//! `Server` banner out.

use crate::error::ApiError;
use crate::routes::{Params, RouteId};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    pub fn parse(method: &str) -> Method {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// How much body a request may send and how long it may take.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

enum BodyState {
    Unread,
    Read(Vec<u8>),
    /// Reading failed part-way: the rest of the body is unknown.
    Broken,
}

/// A request: what tiny_http parsed, plus our bookkeeping.
pub struct Request {
    inner: tiny_http::Request,
    method: Method,
    method_text: String,
    path: String,
    query: String,
    pub id: String,
    pub received: Instant,
    /// Values the route table took from the path.
    pub params: Params,
    /// The route the path matched, once dispatch has looked (metrics, auth).
    pub route: Option<RouteId>,
    limits: BodyLimits,
    body: BodyState,
}

impl Request {
    pub fn new(
        inner: tiny_http::Request,
        limits: BodyLimits,
        id: String,
        received: Instant,
    ) -> Request {
        let method_text = inner.method().as_str().to_owned();
        let (path, query) = match inner.url().split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (inner.url().to_owned(), String::new()),
        };
        Request {
            method: Method::parse(&method_text),
            method_text,
            path,
            query,
            id,
            received,
            params: Params::default(),
            route: None,
            limits,
            inner,
            body: BodyState::Unread,
        }
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// The method as sent, for messages and logs.
    pub fn method_text(&self) -> &str {
        &self.method_text
    }

    /// The path, without the query string, as sent (still percent-encoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn query(&self) -> &str {
        &self.query
    }

    /// The value of the first header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.inner.headers(), name)
    }

    pub fn http_version(&self) -> (u8, u8) {
        let v = self.inner.http_version();
        (v.0, v.1)
    }

    /// The client's address, when it came over TCP.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.inner.remote_addr().copied()
    }

    /// The client asked to close the connection after this exchange.
    pub fn wants_close(&self) -> bool {
        let connection = self.header("Connection").map(str::to_ascii_lowercase);
        match self.http_version() {
            (1, 0) => !connection.is_some_and(|c| c.contains("keep-alive")),
            _ => connection.is_some_and(|c| c.contains("close")),
        }
    }

    /// The answer can carry `Connection: close`: not when part of the body is still unread,
    /// as tiny_http then writes the answer (and drops that header).
    pub fn can_say_close(&self) -> bool {
        !self.body_pending()
    }

    /// The whole body, read once: refused with 413 when its declared length is over the
    /// limit (before reading any of it), and with 408 when it does not arrive in time.
    pub fn body(&mut self) -> Result<&[u8], ApiError> {
        if let BodyState::Unread = self.body {
            self.body = match self.read_body() {
                Ok(bytes) => BodyState::Read(bytes),
                Err(e) => {
                    self.body = BodyState::Broken;
                    return Err(e);
                }
            };
        }
        match &self.body {
            BodyState::Read(bytes) => Ok(bytes),
            _ => Err(ApiError::bad_request("the request body could not be read")),
        }
    }

    fn read_body(&mut self) -> Result<Vec<u8>, ApiError> {
        let limits = self.limits;
        let declared = self.inner.body_length();
        if let Some(n) = declared
            && n > limits.max_bytes
        {
            return Err(ApiError::payload_too_large(n, limits.max_bytes));
        }
        let chunked = declared.is_none() && self.header("Transfer-Encoding").is_some();
        let deadline = self.received + limits.read_timeout;
        let mut body = Vec::with_capacity(declared.unwrap_or(0));
        let reader = self.inner.as_reader();
        loop {
            // Read straight into the body, zeroing only the part a read may fill: a fixed
            // stack buffer cost more to clear than a small request costs to answer.
            let start = body.len();
            let wanted = declared.map_or(READ_CHUNK, |n| n.saturating_sub(start).min(READ_CHUNK));
            if wanted == 0 {
                break;
            }
            body.resize(start + wanted, 0);
            let read = reader.read(&mut body[start..]);
            body.truncate(start + read.as_ref().map_or(0, |n| *n));
            match read {
                Ok(0) => break,
                Ok(_) => {
                    if body.len() > limits.max_bytes {
                        return Err(ApiError::payload_too_large(body.len(), limits.max_bytes));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The socket's receive timeout fired. A Content-Length body can be read on
                // where it stopped; a chunked decoder may have lost its place, so give up.
                Err(e) if is_timeout(&e) && !chunked && Instant::now() < deadline => {}
                Err(e) if is_timeout(&e) => {
                    return Err(ApiError::new(
                        408,
                        format!(
                            "the request body did not arrive within {:?} (--read-timeout)",
                            limits.read_timeout
                        ),
                    ));
                }
                Err(e) if chunked => {
                    return Err(ApiError::bad_request(format!(
                        "malformed chunked body: {e}"
                    )));
                }
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "could not read the body: {e}"
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(ApiError::new(
                    408,
                    format!(
                        "the request body took longer than {:?} (--read-timeout)",
                        limits.read_timeout
                    ),
                ));
            }
        }
        if let Some(n) = declared
            && body.len() < n
        {
            return Err(ApiError::bad_request(format!(
                "the body ended after {} of the {n} bytes its Content-Length declared",
                body.len()
            )));
        }
        Ok(body)
    }

    /// True when part of the body may still be unread on the socket.
    fn body_pending(&self) -> bool {
        match self.body {
            BodyState::Read(_) => false,
            BodyState::Broken => true,
            BodyState::Unread => {
                self.inner.body_length().is_some_and(|n| n > 0)
                    || self.header("Transfer-Encoding").is_some()
            }
        }
    }

    /// Sends the response and ends the exchange. `close` asks the client to close the
    /// connection after it. A client that has gone away is no news; any other failure to
    /// write is logged as a warning, with the request's id.
    pub fn respond(mut self, response: Response, close: bool) {
        // Taken out rather than cloned: it is still needed once `send` has consumed `self`.
        let id = std::mem::take(&mut self.id);
        match self.send(response, &id, close) {
            Ok(()) => {}
            Err(e) if is_client_gone(&e) => {}
            Err(e) => log::warn!("request {id}: writing the answer failed: {e}"),
        }
    }

    fn send(self, response: Response, id: &str, close: bool) -> io::Result<()> {
        if self.body_pending() {
            // tiny_http must first read and discard the rest of the body before the next
            // request on this connection can be parsed; its `respond` writes the answer
            // before doing so (ours would run after it).
            return self.respond_through_tiny_http(response, id);
        }
        let head_only = self.method == Method::Head;
        let close = close || self.wants_close();
        let keep_alive_1_0 = !close && self.http_version() == (1, 0);
        let body_len = response.body.len();
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { body_len });
        write_head(&mut out, &response, id, close, keep_alive_1_0);
        if !head_only {
            out.extend_from_slice(response.body.as_bytes());
        }
        let mut writer = self.inner.into_writer();
        writer.write_all(&out).and_then(|_| writer.flush())
    }

    fn respond_through_tiny_http(self, response: Response, id: &str) -> io::Result<()> {
        let mut headers = vec![
            tiny_header("Content-Type", response.content_type),
            tiny_header("Server", SERVER),
            tiny_header("X-Request-Id", id),
        ];
        for (name, value) in &response.headers {
            headers.push(tiny_header(name, value));
        }
        let body = response.body.as_bytes().to_vec();
        let len = body.len();
        let tiny = tiny_http::Response::new(
            tiny_http::StatusCode(response.status),
            headers,
            io::Cursor::new(body),
            Some(len),
            None,
        )
        .with_chunked_threshold(usize::MAX);
        self.inner.respond(tiny)
    }
}

/// The most a body read asks for at once when the length is not declared (chunked).
const READ_CHUNK: usize = 64 * 1024;

fn tiny_header(name: &str, value: &str) -> tiny_http::Header {
    // Only our own header names and values reach here; they are ASCII.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes("X-Invalid-Header", "1").expect("ascii"))
}

/// The first header with that name (case-insensitive).
pub fn header<'a>(headers: &'a [tiny_http::Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

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

fn write_head(
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
