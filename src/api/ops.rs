//! What operators and API users read: `GET /metrics`, `GET /openapi.json`, `GET /docs`.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Body, JSON, Request, Response};
use crate::metrics;

/// `GET /metrics`: Prometheus text format.
pub fn metrics(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let text = metrics::render(app);
    Ok(Response::new(
        200,
        metrics::CONTENT_TYPE,
        Body::Owned(text.into_bytes()),
    ))
}

/// `GET /openapi.json`: the OpenAPI 3.1 document made from the model's signature.
pub fn openapi(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let docs = app.docs()?;
    Ok(Response::new(200, JSON, Body::Shared(docs.openapi.clone())))
}

/// `GET /docs`: the HTML page. Its policy lets it run its own inline script and talk to
/// this server only, so nothing outside it is ever loaded.
pub fn docs(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let docs = app.docs()?;
    Ok(Response::new(
        200,
        "text/html; charset=utf-8",
        Body::Shared(docs.page.clone()),
    )
    .with_header(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
    ))
}
