//! One request as tiny_http parsed it, and the two ways its answer can go out.
//!
//! Answers are written by us, head and body in one buffer and one `write` (`send`), rather
//! than by tiny_http's `respond`: that saves a second packet per response (tiny_http writes
//! the head through a 1 KiB buffer of its own), lets us say `Connection: close` when we
//! mean it (tiny_http drops that header), and keeps tiny_http's `Server` banner out. Only
//! when part of the body is still unread must tiny_http write the answer
//! (`send_and_discard_body`): it has to read past the body before the next request on the
//! connection can be parsed, and its `respond` does that after writing.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

pub struct Exchange {
    inner: tiny_http::Request,
}

impl Exchange {
    pub(super) fn new(inner: tiny_http::Request) -> Exchange {
        Exchange { inner }
    }

    /// The method as sent.
    pub fn method(&self) -> &str {
        self.inner.method().as_str()
    }

    /// The request target as sent: path and query.
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// The value of the first header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn http_version(&self) -> (u8, u8) {
        let v = self.inner.http_version();
        (v.0, v.1)
    }

    /// The client's address, when it came over TCP.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.inner.remote_addr().copied()
    }

    /// The body's declared `Content-Length`; None for a chunked body.
    pub fn body_length(&self) -> Option<usize> {
        self.inner.body_length()
    }

    /// The body, as far as the client sends it (de-chunked).
    pub fn body(&mut self) -> &mut dyn Read {
        self.inner.as_reader()
    }

    /// Writes a whole answer, head and body, and flushes it.
    pub fn send(self, answer: &[u8]) -> io::Result<()> {
        let mut writer = self.inner.into_writer();
        writer.write_all(answer).and_then(|_| writer.flush())
    }

    /// Has tiny_http write the answer and then read past the rest of the body. It writes
    /// its own head, with these headers besides its own (it drops a `Connection` header).
    pub fn send_and_discard_body(
        self,
        status: u16,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> io::Result<()> {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                // Only our own header names and values reach here; they are ASCII.
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(
                    |_| tiny_http::Header::from_bytes("X-Invalid-Header", "1").expect("ascii"),
                )
            })
            .collect();
        let len = body.len();
        let answer = tiny_http::Response::new(
            tiny_http::StatusCode(status),
            headers,
            io::Cursor::new(body),
            Some(len),
            None,
        )
        .with_chunked_threshold(usize::MAX);
        self.inner.respond(answer)
    }
}
