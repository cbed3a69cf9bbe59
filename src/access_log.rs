//! The access line: one per request, on the `onnx_serve::access` target, after the
//! response is written. As text, `POST /predict 200 146B 1305us <request id>`; the same
//! values also go as fields (`method`, `path`, `status`, `bytes`, `duration_us`,
//! `request_id`), which `--log-format json` writes as members of the line's object.
//! Headers are never logged, so neither is an API key.
//!
//! It is written for every request, so it is made without allocating: the request's
//! method, path and id are copied into a buffer of the request thread before the request
//! is consumed by `respond`, and the line is assembled in another.

use crate::http::Request;
use log::{Level, info, log_enabled};
use std::cell::RefCell;
use std::io;
use std::time::Duration;

pub const TARGET: &str = "onnx_serve::access";

thread_local! {
    /// The request's method, path and id, one after the other.
    static FIELDS: RefCell<String> = const { RefCell::new(String::new()) };
    /// The text of the line.
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Where the method and the path end in `FIELDS` (the id follows them). `None` from
/// `start` when access lines are filtered out, so that they then cost nothing.
pub struct Pending {
    method_end: usize,
    path_end: usize,
}

pub fn start(req: &Request) -> Option<Pending> {
    if !log_enabled!(target: TARGET, Level::Info) {
        return None;
    }
    FIELDS.with_borrow_mut(|fields| {
        fields.clear();
        fields.push_str(req.method_text());
        let method_end = fields.len();
        fields.push_str(clip(req.path()));
        let path_end = fields.len();
        fields.push_str(&req.id);
        Some(Pending {
            method_end,
            path_end,
        })
    })
}

impl Pending {
    /// Logs the line: `sent` is what writing the response gave (body bytes, or the error).
    pub fn finish(self, status: u16, sent: &io::Result<usize>, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        FIELDS.with_borrow(|fields| {
            let method = &fields[..self.method_end];
            let path = &fields[self.method_end..self.path_end];
            let id = &fields[self.path_end..];
            MESSAGE.with_borrow_mut(|message| {
                message.clear();
                let mut number = itoa::Buffer::new();
                for part in [method, " ", path, " ", number.format(status), " "] {
                    message.push_str(part);
                }
                match sent {
                    Ok(bytes) => {
                        message.push_str(number.format(*bytes));
                        message.push('B');
                    }
                    Err(e) => {
                        use std::fmt::Write;
                        let _ = write!(message, "write failed ({e})");
                    }
                }
                for part in [" ", number.format(micros), "us ", id] {
                    message.push_str(part);
                }
                let message = message.as_str();
                match sent {
                    Ok(bytes) => info!(
                        target: TARGET,
                        method = method, path = path, status = status, bytes = *bytes as u64,
                        duration_us = micros, request_id = id;
                        "{message}"
                    ),
                    Err(e) => info!(
                        target: TARGET,
                        method = method, path = path, status = status,
                        error:% = e, duration_us = micros, request_id = id;
                        "{message}"
                    ),
                }
            })
        })
    }
}

/// Paths are logged up to 200 bytes: a scanner's 8 KiB path is not.
fn clip(path: &str) -> &str {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}
