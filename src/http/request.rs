//! A request as handlers see it: method, path, headers, the values the route took from
//! the path, and a body read on demand within the size limit and the read deadline; and
//! how its answer is sent.

use super::error::ApiError;
use super::response::{Response, SERVER, write_head};
use super::tiny::Exchange;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// Values taken from the path: `/v2/models/{model}/versions/{version}/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub model: Option<String>,
    pub version: Option<String>,
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

/// A request: what the HTTP layer parsed, plus our bookkeeping.
pub struct Request {
    inner: Exchange,
    method: Method,
    method_text: String,
    path: String,
    query: String,
    pub id: String,
    pub received: Instant,
    /// Values the route table took from the path.
    pub params: Params,
    /// The index in the route table of the route the path matched, once dispatch has
    /// looked (metrics, auth).
    pub(super) route: Option<usize>,
    limits: BodyLimits,
    body: BodyState,
}

impl Request {
    pub(super) fn new(
        inner: Exchange,
        limits: BodyLimits,
        id: String,
        received: Instant,
    ) -> Request {
        let method_text = inner.method().to_owned();
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
        self.inner.header(name)
    }

    pub fn http_version(&self) -> (u8, u8) {
        self.inner.http_version()
    }

    /// The client's address, when it came over TCP.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.inner.peer()
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
    /// as the HTTP layer then writes the answer (and drops that header).
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
        let reader = self.inner.body();
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
    pub(super) fn respond(mut self, response: Response, close: bool) {
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
            // The rest of the body must be read and discarded before the next request on
            // this connection can be parsed (`Exchange::send_and_discard_body`).
            return self.send_then_discard_body(response, id);
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
        self.inner.send(&out)
    }

    fn send_then_discard_body(self, response: Response, id: &str) -> io::Result<()> {
        let mut headers = vec![
            ("Content-Type", response.content_type),
            ("Server", SERVER),
            ("X-Request-Id", id),
        ];
        for (name, value) in &response.headers {
            headers.push((*name, value.as_str()));
        }
        let body = response.body.as_bytes().to_vec();
        self.inner
            .send_and_discard_body(response.status, &headers, body)
    }
}

/// The most a body read asks for at once when the length is not declared (chunked).
const READ_CHUNK: usize = 64 * 1024;

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
