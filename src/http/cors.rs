//! Cross-origin requests from browsers (`--cors-origin`): the answer to a preflight
//! `OPTIONS`, and the `Access-Control-*` headers on every response to an allowed origin.
//! With no `--cors-origin`, nothing here adds a header and `OPTIONS` is an ordinary 405.

use super::error::ApiError;
use super::request::{Method, Request};
use super::response::{Body, Response};
use super::router::Allow;

/// Request headers a page may send: the key, JSON, a request id, the V2 binary extension.
const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, X-Request-Id, Inference-Header-Content-Length";
/// Response headers a page may read besides the always-readable ones.
const EXPOSE_HEADERS: &str =
    "X-Request-Id, Retry-After, WWW-Authenticate, Allow, Inference-Header-Content-Length";
/// How long a browser may reuse a preflight answer, in seconds.
const MAX_AGE: &str = "600";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cors {
    /// No cross-origin access: no CORS headers at all.
    #[default]
    Off,
    /// `--cors-origin '*'`: any origin.
    AnyOrigin,
    /// These origins (`scheme://host[:port]`, lower case).
    Origins(Vec<String>),
}

impl Cors {
    /// From the `--cors-origin` values; `*` among them allows every origin.
    pub fn new(origins: &[String]) -> Result<Cors, String> {
        if origins.is_empty() {
            return Ok(Cors::Off);
        }
        if origins.iter().any(|o| o.trim() == "*") {
            return Ok(Cors::AnyOrigin);
        }
        origins
            .iter()
            .map(|o| check_origin(o.trim()))
            .collect::<Result<_, _>>()
            .map(Cors::Origins)
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Cors::Off => false,
            Cors::AnyOrigin => true,
            Cors::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) on a known route, before authentication: browsers
    /// send preflights without credentials. `None` when the request is no preflight, or
    /// CORS is off, and takes the ordinary way.
    pub(super) fn preflight(
        &self,
        req: &Request,
        route: Option<Allow>,
    ) -> Option<Result<Response, ApiError>> {
        if *self == Cors::Off
            || req.method() != Method::Options
            || req.header("Access-Control-Request-Method").is_none()
        {
            return None;
        }
        let (route, origin) = (route?, req.header("Origin")?);
        if !self.allows(origin) {
            return Some(Err(ApiError::new(
                403,
                format!(
                    "cross-origin requests from {} are not allowed (--cors-origin)",
                    super::clip(origin, 100)
                ),
            )));
        }
        // The methods of the route: the browser refuses the request itself when the one it
        // wants is not among them.
        Some(Ok(Response::new(204, "text/plain", Body::Static(b""))
            .with_header("Access-Control-Allow-Methods", route.header())
            .with_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            .with_header("Access-Control-Max-Age", MAX_AGE)
            .with_header(
                "Vary",
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            )))
    }

    /// Adds the headers that let a page from an allowed origin read the response.
    pub(super) fn decorate(&self, req: &Request, response: &mut Response) {
        if *self != Cors::Off {
            self.decorate_for(req.header("Origin"), response);
        }
    }

    fn decorate_for(&self, origin: Option<&str>, response: &mut Response) {
        let allow_origin = match self {
            Cors::Off => return,
            Cors::AnyOrigin => "*",
            Cors::Origins(_) => {
                // The answer depends on the Origin header: caches must keep them apart.
                response.headers.push(("Vary", "Origin".into()));
                match origin {
                    Some(origin) if self.allows(origin) => origin,
                    _ => return,
                }
            }
        };
        if origin.is_none() {
            return;
        }
        response
            .headers
            .push(("Access-Control-Allow-Origin", allow_origin.into()));
        response
            .headers
            .push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.into()));
    }
}

/// An origin is `scheme://host[:port]`, with nothing after.
fn check_origin(origin: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("--cors-origin {origin:?}: {why}"));
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad("expected scheme://host[:port], e.g. https://app.example.com, or *");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return bad("the scheme must be http or https");
    }
    if rest.is_empty() {
        return bad("the host is missing");
    }
    if rest.contains('/') {
        return bad("an origin has no path, not even a final '/'");
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return bad("the host may hold only letters, digits, '-', '.', and ':port'");
    }
    Ok(origin.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Result<Cors, String> {
        Cors::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_checked() {
        assert_eq!(origins(&[]), Ok(Cors::Off));
        assert_eq!(origins(&["https://a.example", "*"]), Ok(Cors::AnyOrigin));
        assert_eq!(
            origins(&["https://A.example:8443"]),
            Ok(Cors::Origins(vec!["https://a.example:8443".into()]))
        );
        assert!(origins(&["https://a.example/"]).is_err());
        assert!(origins(&["a.example"]).is_err());
        assert!(origins(&["ftp://a.example"]).is_err());
    }

    #[test]
    fn responses_get_headers_only_for_allowed_origins() {
        let cors = origins(&["https://a.example"]).unwrap();
        let headers = |origin: Option<&str>| {
            let mut r = Response::new(200, "text/plain", Body::Static(b""));
            cors.decorate_for(origin, &mut r);
            r.headers
        };
        let allowed = headers(Some("https://a.example"));
        assert!(allowed.contains(&("Access-Control-Allow-Origin", "https://a.example".into())));
        assert!(allowed.contains(&("Vary", "Origin".into())));
        let other = headers(Some("https://b.example"));
        assert_eq!(other, vec![("Vary", "Origin".into())]);

        let mut r = Response::new(200, "text/plain", Body::Static(b""));
        Cors::Off.decorate_for(Some("https://a.example"), &mut r);
        assert!(r.headers.is_empty());
    }
}
