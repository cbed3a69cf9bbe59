//! The access line: one per request, on the `onnx_serve::access` target, written when the
//! answer is ready, just before it is sent. As text, `POST /predict 200 146B 1305us <request
//! id>`; the same values also go as fields (`method`, `path`, `status`, `bytes`,
//! `duration_us`, `request_id`), which `--log-format json` writes as members of the line's
//! object. Headers are never logged, so neither is an API key.
//!
//! It is written for every request, so the text is assembled in a buffer of the request
//! thread rather than in a new string each time.

use super::request::Request;
use log::{Level, info, log_enabled};
use std::cell::RefCell;
use std::time::Duration;

pub const TARGET: &str = "onnx_serve::access";

/// Logs the line for `req`, answered with `status` and a body of `bytes`, ready `elapsed`
/// after the request arrived. Nothing is done when access lines are filtered out.
pub fn log(req: &Request, status: u16, bytes: usize, elapsed: Duration) {
    if !log_enabled!(target: TARGET, Level::Info) {
        return;
    }
    thread_local! {
        static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let (method, path, id) = (req.method_text(), clip(req.path()), req.id.as_str());
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    MESSAGE.with_borrow_mut(|message| {
        message.clear();
        let mut number = itoa::Buffer::new();
        for part in [method, " ", path, " ", number.format(status), " "] {
            message.push_str(part);
        }
        message.push_str(number.format(bytes));
        for part in ["B ", number.format(micros), "us ", id] {
            message.push_str(part);
        }
        let message = message.as_str();
        info!(
            target: TARGET,
            method = method, path = path, status = status, bytes = bytes as u64,
            duration_us = micros, request_id = id;
            "{message}"
        );
    })
}

/// Paths are logged up to 200 bytes: a scanner's 8 KiB path is not.
fn clip(path: &str) -> &str {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}
