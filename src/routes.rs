//! The route table: which handler serves which method and path. Unknown paths get 404;
//! a known path with the wrong method gets 405 and an `Allow` header.
//!
//! `resolve` is a pure function of method and path, so it can be tested and fuzzed without
//! a server; handlers are plain `fn(&App, &mut Request) -> Result<Response, ApiError>`.

use crate::api::{simple, v1, v2};
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

/// The table. `/versions/{v}` after a model name is taken out before matching (so each
/// model route also serves its versioned path), and TF-Serving's `:predict` suffix becomes
/// a segment of its own.
pub fn resolve(method: Method, method_text: &str, path: &str) -> Result<Route, ApiError> {
    let mut segments = segments(path)?;
    split_verb(&mut segments);
    let version = take_version(&mut segments);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let none = Params::default;
    let model = |name: &str| Params {
        model: Some(name.to_owned()),
        version: version.clone(),
    };
    let (allow, handler, params): (Allow, Handler, Params) = match segments.as_slice() {
        [] => (Allow::Get, simple::summary, none()),
        ["predict"] => (Allow::Post, simple::predict, none()),
        ["healthz"] => (Allow::Get, simple::healthz, none()),
        ["readyz"] => (Allow::Get, simple::readyz, none()),

        ["v2"] => (Allow::Get, v2::server_metadata, none()),
        ["v2", "health", "live"] => (Allow::Get, v2::live, none()),
        ["v2", "health", "ready"] => (Allow::Get, v2::ready, none()),
        ["v2", "models", m] => (Allow::Get, v2::model_metadata, model(m)),
        ["v2", "models", m, "ready"] => (Allow::Get, v2::model_ready, model(m)),
        ["v2", "models", m, "config"] => (Allow::Get, v2::model_config, model(m)),
        ["v2", "models", m, "infer"] => (Allow::Post, v2::infer, model(m)),

        ["v1", "models", m] => (Allow::Get, v1::status, model(m)),
        ["v1", "models", m, "metadata"] => (Allow::Get, v1::metadata, model(m)),
        ["v1", "models", m, PREDICT] => (Allow::Post, v1::predict, model(m)),
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

/// TF-Serving's verb, as the segment `split_verb` makes of it.
const PREDICT: &str = ":predict";

/// `/v1/models/m:predict` -> `v1, models, m, :predict`: the verb after the last segment's
/// last colon becomes a segment of its own. Only under `/v1`, where the verbs live.
fn split_verb(segments: &mut Vec<String>) {
    if segments.first().is_none_or(|s| s != "v1") {
        return;
    }
    let Some(last) = segments.last_mut() else {
        return;
    };
    if let Some(colon) = last.rfind(':') {
        let verb = last.split_off(colon);
        segments.push(verb);
    }
}

/// Takes `versions/{v}` out of `v1|v2, models, {m}, versions, {v}, ...` and returns `v`.
fn take_version(segments: &mut Vec<String>) -> Option<String> {
    let versioned = segments.len() >= 5
        && matches!(segments[0].as_str(), "v1" | "v2")
        && segments[1] == "models"
        && segments[3] == "versions"
        && !segments[4].starts_with(':');
    if !versioned {
        return None;
    }
    let mut taken = segments.drain(3..5);
    taken.next();
    taken.next()
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
    crate::api::clip(path, 100)
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

    fn params(path: &str) -> Params {
        let method = if path.contains(":predict") || path.ends_with("/infer") {
            Method::Post
        } else {
            Method::Get
        };
        resolve(method, "", path).unwrap().params
    }

    fn model(name: &str, version: Option<&str>) -> Params {
        Params {
            model: Some(name.into()),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn protocol_paths_with_and_without_versions() {
        for path in ["/v2", "/v2/health/live", "/v2/health/ready/"] {
            assert_eq!(status("GET", path), 200, "{path}");
            assert_eq!(params(path), Params::default());
        }
        for tail in ["", "/ready", "/config", "/infer"] {
            let plain = format!("/v2/models/digits{tail}");
            assert_eq!(params(&plain), model("digits", None), "{plain}");
            let versioned = format!("/v2/models/digits/versions/3{tail}");
            assert_eq!(
                params(&versioned),
                model("digits", Some("3")),
                "{versioned}"
            );
        }
        for path in ["/v1/models/digits", "/v1/models/digits/metadata"] {
            assert_eq!(params(path), model("digits", None), "{path}");
        }
        assert_eq!(params("/v1/models/digits:predict"), model("digits", None));
        assert_eq!(
            params("/v1/models/digits/versions/1:predict"),
            model("digits", Some("1"))
        );
        assert_eq!(
            params("/v1/models/digits/versions/2/metadata"),
            model("digits", Some("2"))
        );
        // Colons are only verbs under /v1, and only the last one.
        assert_eq!(params("/v2/models/a:b/ready"), model("a:b", None));
        assert_eq!(params("/v1/models/a:b:predict"), model("a:b", None));
    }

    #[test]
    fn protocol_paths_that_are_not_routes() {
        assert_eq!(status("POST", "/v1/models/digits:classify"), 404);
        assert_eq!(status("GET", "/v2/models/digits/versions"), 404);
        assert_eq!(status("GET", "/v2/models/digits/versions/1/extra"), 404);
        assert_eq!(status("GET", "/v2/models"), 404);
        assert_eq!(status("POST", "/v1/models/digits/versions:predict"), 404);
        assert_eq!(status("GET", "/v3/models/digits"), 404);
        assert_eq!(status("GET", "/v2/models/digits/infer"), 405);
        assert_eq!(status("GET", "/v1/models/digits:predict"), 405);
        assert_eq!(status("POST", "/v2/health/ready"), 405);
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
