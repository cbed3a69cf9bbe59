//! Matching a request's method and path to a route of the table (the table itself is
//! the API's: `api/routes.rs`). Unknown paths get 404; a known path with the wrong method
//! gets 405 and an `Allow` header.
//!
//! A template is a path whose `{model}` segment matches any name: the route's handler finds
//! it in `Request::params`. Routes are tried in the table's order, so a fixed path listed
//! before a template (`/v2/models/stats` before `/v2/models/{model}`) takes its path. Every route with `{model}` also answers under
//! `/versions/{version}` after the model's name, and TF-Serving's `:predict` verb after the
//! last segment counts as a segment of its own (`/v1/models/{model}:predict`).

use super::error::ApiError;
use super::request::{Method, Params, Request};
use super::response::Response;
use crate::ops::openapi::RouteDoc;

/// What serves a route: a plain function of the shared state and the request.
pub type Handler<S> = fn(&S, &mut Request) -> Result<Response, ApiError>;

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

/// One line of the route table.
pub struct Route<S: 'static> {
    pub allow: Allow,
    /// The path, with `{model}` for the model's name. Also the `route` label of the
    /// metrics: never the raw path, whose values are unbounded.
    pub template: &'static str,
    pub handler: Handler<S>,
    /// Answers without the API key: health probes carry none.
    pub open: bool,
    pub doc: RouteDoc,
}

impl<S> Route<S> {
    pub const fn get(template: &'static str, handler: Handler<S>, doc: RouteDoc) -> Route<S> {
        Route {
            allow: Allow::Get,
            template,
            handler,
            open: false,
            doc,
        }
    }

    pub const fn post(template: &'static str, handler: Handler<S>, doc: RouteDoc) -> Route<S> {
        Route {
            allow: Allow::Post,
            ..Route::get(template, handler, doc)
        }
    }

    /// The route answers without the API key.
    pub const fn open(self) -> Route<S> {
        Route { open: true, ..self }
    }
}

/// The route table, its templates cut into segments once.
pub struct Router<S: 'static> {
    routes: &'static [Route<S>],
    patterns: Vec<Vec<String>>,
}

/// A path matched to a route.
#[derive(Debug)]
pub struct Found {
    /// The route's index in the table.
    pub index: usize,
    pub params: Params,
}

/// The segment of a template that matches any model name.
const MODEL: &str = "{model}";

impl<S> Router<S> {
    pub fn new(routes: &'static [Route<S>]) -> Router<S> {
        let patterns = routes
            .iter()
            .map(|route| {
                let mut segments: Vec<String> = route
                    .template
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                split_verb(&mut segments);
                segments
            })
            .collect();
        Router { routes, patterns }
    }

    pub fn routes(&self) -> &'static [Route<S>] {
        self.routes
    }

    /// The route of a path, or 404 (400 for a path that is not validly percent-encoded).
    pub fn find(&self, path: &str) -> Result<Found, ApiError> {
        let mut segments = segments(path)?;
        split_verb(&mut segments);
        let version = take_version(&mut segments);
        for (index, pattern) in self.patterns.iter().enumerate() {
            if pattern.len() != segments.len() {
                continue;
            }
            let mut model = None;
            let matches = pattern.iter().zip(&segments).all(|(want, got)| {
                if want == MODEL {
                    model = Some(got);
                    true
                } else {
                    want == got
                }
            });
            // Only model routes have versions.
            if matches && (model.is_some() || version.is_none()) {
                let params = Params {
                    model: model.cloned(),
                    version: version.clone(),
                };
                return Ok(Found { index, params });
            }
        }
        Err(ApiError::not_found(format!(
            "no route for {}; see GET / for the API",
            shorten(path)
        )))
    }

    pub fn route(&self, index: usize) -> &'static Route<S> {
        &self.routes[index]
    }

    /// The handler of a found route, or 405 with `Allow` when the route does not take this
    /// method.
    pub fn handler(
        &self,
        found: &Found,
        method: Method,
        method_text: &str,
        path: &str,
    ) -> Result<Handler<S>, ApiError> {
        let route = self.route(found.index);
        if !route.allow.permits(method) {
            return Err(ApiError::method_not_allowed(
                &shorten(method_text),
                &shorten(path),
                route.allow.header(),
            ));
        }
        Ok(route.handler)
    }
}

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
    super::clip(text, 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::openapi::RouteDoc;

    fn nothing(_: &(), _: &mut Request) -> Result<Response, ApiError> {
        Err(ApiError::internal("not called"))
    }

    const DOC: RouteDoc = RouteDoc::new("x", "x", "x", "X", "x");

    static ROUTES: [Route<()>; 10] = [
        Route::get("/", nothing, DOC),
        Route::post("/predict", nothing, DOC),
        Route::get("/readyz", nothing, DOC),
        Route::get("/v2", nothing, DOC),
        Route::get("/v2/health/ready", nothing, DOC),
        Route::get("/v2/models/stats", nothing, DOC),
        Route::get("/v2/models/{model}", nothing, DOC),
        Route::post("/v2/models/{model}/infer", nothing, DOC),
        Route::get("/v1/models/{model}/metadata", nothing, DOC),
        Route::post("/v1/models/{model}:predict", nothing, DOC),
    ];

    fn router() -> Router<()> {
        Router::new(&ROUTES)
    }

    fn status(method: &str, path: &str) -> u16 {
        let router = router();
        let found = router.find(path);
        match found.and_then(|found| router.handler(&found, Method::parse(method), method, path)) {
            Ok(_) => 200,
            Err(e) => e.status,
        }
    }

    fn params(path: &str) -> Params {
        router().find(path).unwrap().params
    }

    fn template(path: &str) -> &'static str {
        let router = router();
        router.route(router.find(path).unwrap().index).template
    }

    fn model(name: &str, version: Option<&str>) -> Params {
        Params {
            model: Some(name.into()),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn known_paths_and_methods() {
        assert_eq!(status("POST", "/predict"), 200);
        assert_eq!(status("GET", "/"), 200);
        assert_eq!(status("HEAD", "/readyz"), 200);
        assert_eq!(status("GET", "/readyz/"), 200);
        assert_eq!(status("GET", "//readyz"), 200);
    }

    #[test]
    fn protocol_paths_with_and_without_versions() {
        for path in ["/v2", "/v2/health/ready/"] {
            assert_eq!(status("GET", path), 200, "{path}");
            assert_eq!(params(path), Params::default());
        }
        assert_eq!(params("/v2/models/digits"), model("digits", None));
        assert_eq!(
            params("/v2/models/digits/versions/3/infer"),
            model("digits", Some("3"))
        );
        assert_eq!(
            template("/v2/models/digits/versions/3/infer"),
            "/v2/models/{model}/infer"
        );
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
        assert_eq!(template("/v2/models/a:b"), "/v2/models/{model}");
        assert_eq!(params("/v2/models/a:b"), model("a:b", None));
        assert_eq!(params("/v1/models/a:b:predict"), model("a:b", None));
        assert_eq!(params("/v2/models/a%20b"), model("a b", None));
    }

    #[test]
    fn a_fixed_path_before_a_template_takes_its_paths_first() {
        // The table's order decides: `/v2/models/stats` is listed before `{model}`.
        assert_eq!(template("/v2/models/stats"), "/v2/models/stats");
        assert_eq!(params("/v2/models/stats"), Params::default());
        assert_eq!(template("/v2/models/statz"), "/v2/models/{model}");
        // Fixed paths have no versions: the versioned form is the template's.
        assert_eq!(
            params("/v2/models/stats/versions/2"),
            model("stats", Some("2"))
        );
    }

    #[test]
    fn protocol_paths_that_are_not_routes() {
        assert_eq!(status("POST", "/v1/models/digits:classify"), 404);
        assert_eq!(status("GET", "/v2/models/digits/versions"), 404);
        assert_eq!(status("GET", "/v2/models/digits/versions/1/extra"), 404);
        assert_eq!(status("GET", "/v2/models"), 404);
        assert_eq!(status("POST", "/v1/models/digits/versions:predict"), 404);
        assert_eq!(status("GET", "/v3/models/digits"), 404);
        assert_eq!(status("GET", "/v2/versions/1"), 404);
        assert_eq!(status("GET", "/v2/models/digits/infer"), 405);
        assert_eq!(status("GET", "/v1/models/digits:predict"), 405);
        assert_eq!(status("POST", "/v2/health/ready"), 405);
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let router = router();
        let found = router.find("/predict").unwrap();
        let err = router
            .handler(&found, Method::Get, "GET", "/predict")
            .err()
            .unwrap();
        assert_eq!(err.status, 405);
        assert_eq!(err.headers, vec![("Allow", "POST".to_string())]);
        assert_eq!(status("DELETE", "/readyz"), 405);
        assert_eq!(status("BREW", "/"), 405);
        // A scanner's long method is not echoed whole (found by fuzz/routes).
        let long = "#".repeat(1000);
        let found = router.find("/").unwrap();
        let err = router
            .handler(&found, Method::parse(&long), &long, "/")
            .err()
            .unwrap();
        assert_eq!(err.status, 405);
        assert!(err.message.len() < 400, "{}", err.message);
    }

    #[test]
    fn every_template_resolves_to_its_route() {
        let router = router();
        for (ix, route) in ROUTES.iter().enumerate() {
            let path = route.template.replace("{model}", "digits");
            assert_eq!(router.find(&path).unwrap().index, ix, "{path}");
        }
    }

    #[test]
    fn unknown_paths_are_404_and_bad_encodings_400() {
        assert_eq!(status("GET", "/nope"), 404);
        assert_eq!(status("POST", "/predict/extra"), 404);
        assert_eq!(status("GET", "/%zz"), 400);
        assert_eq!(status("GET", "/%ff"), 400);
        let long = format!("/{}", "é".repeat(5000));
        let err = router().find(&long).unwrap_err();
        assert!(err.message.len() < 300);
    }
}
