//! The route table: which handler serves which method and path. Unknown paths get 404;
//! a known path with the wrong method gets 405 and an `Allow` header.
//!
//! `resolve` is a pure function of method and path, so it can be tested and fuzzed without
//! a server; handlers are plain `fn(&App, &mut Request) -> Result<Response, ApiError>`.

use crate::api::simple;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Method, Request, Response};

pub type Handler = fn(&App, &mut Request) -> Result<Response, ApiError>;

/// The methods a path accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// GET, and HEAD (the same without the body).
    Get,
    Post,
}

impl Allow {
    fn permits(self, method: Method) -> bool {
        match self {
            Allow::Get => matches!(method, Method::Get | Method::Head),
            Allow::Post => method == Method::Post,
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Allow::Get => "GET, HEAD",
            Allow::Post => "POST",
        }
    }
}

/// Values taken from the path: `/v2/models/{model}/versions/{version}/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub model: Option<String>,
    pub version: Option<String>,
}

pub struct Route {
    pub handler: Handler,
    pub allow: Allow,
    pub params: Params,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("allow", &self.allow)
            .field("params", &self.params)
            .finish()
    }
}

/// The table.
pub fn resolve(method: Method, method_text: &str, path: &str) -> Result<Route, ApiError> {
    let segments = segments(path)?;
    let none = Params::default;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (allow, handler, params): (Allow, Handler, Params) = match segments.as_slice() {
        [] => (Allow::Get, simple::summary, none()),
        ["predict"] => (Allow::Post, simple::predict, none()),
        ["healthz"] => (Allow::Get, simple::healthz, none()),
        ["readyz"] => (Allow::Get, simple::readyz, none()),
        _ => {
            return Err(ApiError::not_found(format!(
                "no route for {}; see GET / for the API",
                shorten(path)
            )));
        }
    };
    if !allow.permits(method) {
        return Err(ApiError::method_not_allowed(
            method_text,
            &shorten(path),
            allow.header(),
        ));
    }
    Ok(Route {
        handler,
        allow,
        params,
    })
}

/// The path's segments, percent-decoded; empty segments (`//`, a trailing `/`) are skipped.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| ApiError::bad_request("the path has an invalid percent-encoding"))
        })
        .collect()
}

fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Paths are echoed in messages; a scanner's 8 KiB path is not.
fn shorten(path: &str) -> String {
    const MAX: usize = 100;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, path: &str) -> u16 {
        match resolve(Method::parse(method), method, path) {
            Ok(_) => 200,
            Err(e) => e.status,
        }
    }

    #[test]
    fn known_paths_and_methods() {
        assert_eq!(status("POST", "/predict"), 200);
        assert_eq!(status("GET", "/"), 200);
        assert_eq!(status("HEAD", "/healthz"), 200);
        assert_eq!(status("GET", "/readyz/"), 200);
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let err = resolve(Method::Get, "GET", "/predict").unwrap_err();
        assert_eq!(err.status, 405);
        assert_eq!(err.headers, vec![("Allow", "POST".to_string())]);
        assert_eq!(status("DELETE", "/healthz"), 405);
        assert_eq!(status("BREW", "/"), 405);
    }

    #[test]
    fn unknown_paths_are_404_and_bad_encodings_400() {
        assert_eq!(status("GET", "/nope"), 404);
        assert_eq!(status("POST", "/predict/extra"), 404);
        assert_eq!(status("GET", "/%zz"), 400);
        assert_eq!(status("GET", "/%ff"), 400);
        let long = format!("/{}", "é".repeat(5000));
        let err = resolve(Method::Get, "GET", &long).unwrap_err();
        assert!(err.message.len() < 300);
    }
}
