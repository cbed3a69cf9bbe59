//! What operators and API users read: `GET /metrics`, `GET /openapi.json`, `GET /docs`.

use super::app::App;
use crate::engine::TRACT_VERSION;
use crate::http::{ApiError, Body, JSON, Request, Response};
use crate::ops::metrics::{self, Exposition, Histogram, ROWS, escape};

/// `GET /metrics`: Prometheus text format.
pub fn metrics(app: &App, _req: &mut Request) -> Result<Response, ApiError> {
    let text = exposition(app);
    Ok(Response::new(
        200,
        metrics::CONTENT_TYPE,
        Body::Owned(text.into_bytes()),
    ))
}

/// Everything: the requests, the model's runs and queue, build info. While the model
/// loads, its series are written empty so that they exist from the start.
fn exposition(app: &App) -> String {
    let mut out = Exposition::new();
    app.metrics.write(&mut out);

    let model = app.model().ok();
    let (empty_seconds, empty_rows) = (Histogram::seconds(), Histogram::new(&ROWS));
    out.histogram(
        "onnx_serve_inference_duration_seconds",
        "Time the model took for one run (with batching, one batch).",
        model.map_or(&empty_seconds, |m| m.run_seconds()),
    );
    out.histogram(
        "onnx_serve_queue_wait_seconds",
        "Time predictions waited for a worker slot (--workers, --queue).",
        model.map_or(&empty_seconds, |m| m.queue_wait()),
    );
    // Only for a model with a batch dimension: for any other, a row means nothing.
    if let Some(rows) = model.map_or(Some(&empty_rows), |m| m.batch_sizes()) {
        out.histogram(
            "onnx_serve_batch_size",
            "Rows (items along the batch dimension) in one run of the model; with \
             --max-batch-size, the rows of every request stacked into it.",
            rows,
        );
    }
    // Only for a model optimised per input shape.
    if let Some(plans) = model.and_then(|m| m.plan_stats()) {
        out.header(
            "onnx_serve_plans_built_total",
            "counter",
            "Plans built for new input shapes (a model tract cannot analyse with free sizes).",
        );
        out.line(format_args!("onnx_serve_plans_built_total {}", plans.built));
        out.header(
            "onnx_serve_plan_build_seconds_total",
            "counter",
            "Time spent building plans for new input shapes.",
        );
        out.line(format_args!(
            "onnx_serve_plan_build_seconds_total {}",
            plans.building.as_secs_f64()
        ));
        out.gauge(
            "onnx_serve_plans_cached",
            "Plans kept for input shapes now (--plan-cache).",
            plans.cached,
        );
    }
    let (busy, waiting) = model.map_or((0, 0), |m| m.occupancy());
    out.gauge(
        "onnx_serve_workers_busy",
        "Worker slots computing now.",
        busy,
    );
    out.gauge(
        "onnx_serve_queue_waiting",
        "Predictions waiting for a worker slot now.",
        waiting,
    );
    out.header(
        "onnx_serve_panics_caught_total",
        "counter",
        "Panics caught while handling requests or running the model (each one is a bug).",
    );
    let model_panics = model.map_or(0, |m| m.panics_caught());
    out.line(format_args!(
        "onnx_serve_panics_caught_total {}",
        app.metrics.panics() + model_panics
    ));
    if let Some(model) = model {
        out.gauge(
            "onnx_serve_model_load_seconds",
            "Time it took to load and optimize the model.",
            model.load_time().as_secs_f64(),
        );
    }
    out.header(
        "onnx_serve_build_info",
        "gauge",
        "Always 1; the labels say what is running.",
    );
    out.line(format_args!(
        "onnx_serve_build_info{{version=\"{}\",model=\"{}\",tract_version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        escape(&app.model_name),
        TRACT_VERSION,
    ));
    out.into_text()
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
