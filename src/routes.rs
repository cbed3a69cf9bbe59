//! The route table: which handler serves which method and path. Unknown paths get 404;
//! a known path with the wrong method gets 405 and an `Allow` header.
//!
//! `resolve` is a pure function of method and path, so it can be tested and fuzzed without
//! a server; handlers are plain `fn(&App, &mut Request) -> Result<Response, ApiError>`.

use crate::api::{ops, simple, v1, v2};
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

/// Every route this server has. The id is the `route` label of the metrics and names the
/// operation in the OpenAPI document; `spec` says what serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteId {
    Summary,
    Predict,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Docs,
    V2Server,
    V2Live,
    V2Ready,
    V2Model,
    V2ModelReady,
    V2ModelConfig,
    V2Infer,
    V1Status,
    V1Metadata,
    V1Predict,
}

/// What serves a route.
pub struct RouteSpec {
    /// The path with its parameters as `{model}`: the metrics label (never the raw path,
    /// whose values are unbounded) and the OpenAPI path. Model routes also answer under
    /// `/versions/{version}` after the model name, counted under the same template.
    pub template: &'static str,
    pub allow: Allow,
    pub handler: Handler,
}

impl RouteId {
    pub const ALL: [RouteId; 17] = [
        RouteId::Summary,
        RouteId::Predict,
        RouteId::Healthz,
        RouteId::Readyz,
        RouteId::Metrics,
        RouteId::OpenApi,
        RouteId::Docs,
        RouteId::V2Server,
        RouteId::V2Live,
        RouteId::V2Ready,
        RouteId::V2Model,
        RouteId::V2ModelReady,
        RouteId::V2ModelConfig,
        RouteId::V2Infer,
        RouteId::V1Status,
        RouteId::V1Metadata,
        RouteId::V1Predict,
    ];

    pub fn spec(self) -> RouteSpec {
        use RouteId::*;
        let (template, allow, handler): (&str, Allow, Handler) = match self {
            Summary => ("/", Allow::Get, simple::summary),
            Predict => ("/predict", Allow::Post, simple::predict),
            Healthz => ("/healthz", Allow::Get, simple::healthz),
            Readyz => ("/readyz", Allow::Get, simple::readyz),
            Metrics => ("/metrics", Allow::Get, ops::metrics),
            OpenApi => ("/openapi.json", Allow::Get, ops::openapi),
            Docs => ("/docs", Allow::Get, ops::docs),

            V2Server => ("/v2", Allow::Get, v2::server_metadata),
            V2Live => ("/v2/health/live", Allow::Get, v2::live),
            V2Ready => ("/v2/health/ready", Allow::Get, v2::ready),
            V2Model => ("/v2/models/{model}", Allow::Get, v2::model_metadata),
            V2ModelReady => ("/v2/models/{model}/ready", Allow::Get, v2::model_ready),
            V2ModelConfig => ("/v2/models/{model}/config", Allow::Get, v2::model_config),
            V2Infer => ("/v2/models/{model}/infer", Allow::Post, v2::infer),

            V1Status => ("/v1/models/{model}", Allow::Get, v1::status),
            V1Metadata => ("/v1/models/{model}/metadata", Allow::Get, v1::metadata),
            V1Predict => ("/v1/models/{model}:predict", Allow::Post, v1::predict),
        };
        RouteSpec {
            template,
            allow,
            handler,
        }
    }

    /// Health routes answer without an API key: probes carry none. They are the liveness
    /// and readiness routes of the simple API and of the V2 protocol (whose "health" group
    /// includes the model's readiness).
    pub fn is_health(self) -> bool {
        matches!(
            self,
            RouteId::Healthz
                | RouteId::Readyz
                | RouteId::V2Live
                | RouteId::V2Ready
                | RouteId::V2ModelReady
        )
    }

    /// Routes under `/v1|v2/models/{model}`, which also answer under `/versions/{version}`.
    pub fn has_model(self) -> bool {
        self.spec().template.contains("{model}")
    }

    /// A dense index, for tables of per-route metrics.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A path matched to a route.
#[derive(Debug)]
pub struct Route {
    pub id: RouteId,
    pub params: Params,
}

impl Route {
    /// The handler, or 405 with `Allow` when the route does not take this method.
    pub fn handler_for(
        &self,
        method: Method,
        method_text: &str,
        path: &str,
    ) -> Result<Handler, ApiError> {
        let spec = self.id.spec();
        if !spec.allow.permits(method) {
            return Err(ApiError::method_not_allowed(
                &shorten(method_text),
                &shorten(path),
                spec.allow.header(),
            ));
        }
        Ok(spec.handler)
    }
}

/// Matches method and path: the route and its handler, 404 for an unknown path, 405 for a
/// method the route does not take.
pub fn resolve(
    method: Method,
    method_text: &str,
    path: &str,
) -> Result<(Route, Handler), ApiError> {
    let route = find(path)?;
    let handler = route.handler_for(method, method_text, path)?;
    Ok((route, handler))
}

/// The table. `/versions/{v}` after a model name is taken out before matching (so each
/// model route also serves its versioned path), and TF-Serving's `:predict` suffix becomes
/// a segment of its own. 404 for a path that is no route.
pub fn find(path: &str) -> Result<Route, ApiError> {
    use RouteId::*;
    let mut segments = segments(path)?;
    split_verb(&mut segments);
    let version = take_version(&mut segments);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let none = Params::default;
    let model = |name: &str| Params {
        model: Some(name.to_owned()),
        version: version.clone(),
    };
    let (id, params) = match segments.as_slice() {
        [] => (Summary, none()),
        ["predict"] => (Predict, none()),
        ["healthz"] => (Healthz, none()),
        ["readyz"] => (Readyz, none()),
        ["metrics"] => (Metrics, none()),
        ["openapi.json"] => (OpenApi, none()),
        ["docs"] => (Docs, none()),

        ["v2"] => (V2Server, none()),
        ["v2", "health", "live"] => (V2Live, none()),
        ["v2", "health", "ready"] => (V2Ready, none()),
        ["v2", "models", m] => (V2Model, model(m)),
        ["v2", "models", m, "ready"] => (V2ModelReady, model(m)),
        ["v2", "models", m, "config"] => (V2ModelConfig, model(m)),
        ["v2", "models", m, "infer"] => (V2Infer, model(m)),

        ["v1", "models", m] => (V1Status, model(m)),
        ["v1", "models", m, "metadata"] => (V1Metadata, model(m)),
        ["v1", "models", m, PREDICT] => (V1Predict, model(m)),
        _ => {
            return Err(ApiError::not_found(format!(
                "no route for {}; see GET / for the API",
                shorten(path)
            )));
        }
    };
    Ok(Route { id, params })
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

/// Paths and methods are echoed in messages; a scanner's 8 KiB path (or method) is not.
fn shorten(text: &str) -> String {
    crate::api::clip(text, 100)
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
        resolve(method, "", path).unwrap().0.params
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
        // A scanner's long method is not echoed whole (found by fuzz/routes).
        let long = "#".repeat(1000);
        let err = resolve(Method::parse(&long), &long, "/").unwrap_err();
        assert_eq!(err.status, 405);
        assert!(err.message.len() < 400, "{}", err.message);
    }

    #[test]
    fn every_template_resolves_to_its_route() {
        for (i, id) in RouteId::ALL.into_iter().enumerate() {
            assert_eq!(id.index(), i, "ALL is in declaration order");
            let path = id.spec().template.replace("{model}", "digits");
            assert_eq!(find(&path).unwrap().id, id, "{path}");
            if id.has_model() {
                let versioned = path.replacen("digits", "digits/versions/1", 1);
                assert_eq!(find(&versioned).unwrap().id, id, "{versioned}");
            }
        }
        assert!(RouteId::V2ModelReady.is_health() && !RouteId::Metrics.is_health());
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
