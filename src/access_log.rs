//! The access line: one per request, on the `onnx_serve::access` target, after the
//! response is written. As text, `POST /predict 200 146B 1305us <request id>`; the same
//! values also go as fields (`method`, `path`, `status`, `bytes`, `duration_us`,
//! `request_id`), which `--log-format json` writes as members of the line's object.
//! Headers are never logged, so neither is an API key.

use crate::http::Request;
use log::{Level, info, log_enabled};
use std::io;
use std::time::Duration;

pub const TARGET: &str = "onnx_serve::access";

/// What the line needs from a request, taken before `respond` consumes it; `None` when
/// access lines are filtered out, so that they then cost nothing.
pub struct Pending {
    method: String,
    path: String,
    id: String,
}

pub fn start(req: &Request) -> Option<Pending> {
    log_enabled!(target: TARGET, Level::Info).then(|| Pending {
        method: req.method_text().to_owned(),
        path: clip(req.path()).to_owned(),
        id: req.id.clone(),
    })
}

impl Pending {
    /// Logs the line: `sent` is what writing the response gave (body bytes, or the error).
    pub fn finish(self, status: u16, sent: &io::Result<usize>, elapsed: Duration) {
        let Pending { method, path, id } = self;
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let (method, path, id) = (method.as_str(), path.as_str(), id.as_str());
        match sent {
            Ok(bytes) => info!(
                target: TARGET,
                method = method, path = path, status = status, bytes = *bytes as u64,
                duration_us = micros, request_id = id;
                "{method} {path} {status} {bytes}B {micros}us {id}"
            ),
            Err(e) => {
                let error = e.to_string();
                info!(
                    target: TARGET,
                    method = method, path = path, status = status, error = error.as_str(),
                    duration_us = micros, request_id = id;
                    "{method} {path} {status} write failed ({error}) {micros}us {id}"
                )
            }
        }
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
