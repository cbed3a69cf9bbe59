//! The route table: every method and path this server answers, the handler that serves it,
//! and how the API documents describe it. The server matches requests against this list
//! (`http::Router`); the metrics count by its templates; `/openapi.json` and `/docs` are
//! made from it.

use super::app::App;
use super::{ops, simple, v1, v2};
use crate::http::Route;
use crate::ops::openapi::RouteDoc as Doc;

// Laid out by hand, one route to a few lines, so that it reads as a table.
#[rustfmt::skip]
pub static ROUTES: [Route<App>; 19] = [
    // The simple API, Flask-style.
    Route::get("/", simple::summary, Doc::new("summary", "simple",
        "The model's name, readiness, inputs and outputs", "Summary", "What this server serves")),
    Route::post("/predict", simple::predict, Doc::new("predict", "simple",
        "Predict: {\"inputs\": X} (or an image) -> {\"outputs\": Y}", "PredictResponse",
        "The model's outputs").takes("PredictRequest")),
    Route::get("/healthz", simple::healthz, Doc::new("healthz", "health",
        "Liveness: 200 while the process is up", "Healthz", "The process is up")
        .without_model()).open(),
    Route::get("/readyz", simple::readyz, Doc::new("readyz", "health",
        "Readiness: 200 once the model is loaded, 503 while loading or draining", "Readyz",
        "The model is loaded and the server is not draining")).open(),
    // Operations.
    Route::get("/metrics", ops::metrics, Doc::text("metrics", "operations",
        "Prometheus metrics (text exposition format)", "text/plain",
        "Prometheus text exposition format 0.0.4").without_model()),
    Route::get("/openapi.json", ops::openapi, Doc::new("openapi", "operations",
        "This document", "Document", "This document")),
    Route::get("/docs", ops::docs, Doc::text("docs", "operations",
        "An HTML page that shows the API and sends predictions", "text/html",
        "The documentation page")),
    // The Open Inference Protocol (KServe V2, Triton).
    Route::get("/v2", v2::server_metadata, Doc::new("v2_server_metadata", "v2",
        "Open Inference Protocol: server metadata", "V2ServerMetadata", "Server metadata")
        .without_model()),
    Route::get("/v2/health/live", v2::live, Doc::new("v2_live", "health",
        "Open Inference Protocol: server liveness", "V2Live", "The process is up")
        .without_model()).open(),
    Route::get("/v2/health/ready", v2::ready, Doc::new("v2_ready", "health",
        "Open Inference Protocol: server readiness", "V2Ready", "Ready")).open(),
    // Before `/v2/models/{model}`, which would take "stats" for a model's name.
    Route::get("/v2/models/stats", v2::all_stats, Doc::new("v2_all_stats", "v2",
        "Triton's statistics of every model served (one)", "V2ModelStats", "Statistics")),
    Route::get("/v2/models/{model}", v2::model_metadata, Doc::new("v2_model_metadata", "v2",
        "Open Inference Protocol: model metadata", "V2ModelMetadata", "Model metadata")),
    Route::get("/v2/models/{model}/ready", v2::model_ready, Doc::new("v2_model_ready", "health",
        "Open Inference Protocol: model readiness", "V2Ready", "Ready")).open(),
    Route::get("/v2/models/{model}/config", v2::model_config, Doc::new("v2_model_config", "v2",
        "Triton's model configuration (the part its tools read)", "V2ModelConfig",
        "Triton's model configuration")),
    Route::post("/v2/models/{model}/infer", v2::infer, Doc::new("v2_infer", "v2",
        "Open Inference Protocol: inference (JSON, or the binary tensor data extension)",
        "InferResponse", "The model's outputs").takes("InferRequest")),
    Route::get("/v2/models/{model}/stats", v2::model_stats, Doc::new("v2_model_stats", "v2",
        "Triton's statistics of the model: predictions by outcome and step", "V2ModelStats",
        "Statistics")),
    // TF-Serving and KServe v1.
    Route::get("/v1/models/{model}", v1::status, Doc::new("v1_status", "v1",
        "TF-Serving / KServe v1: model status", "V1Status", "Model status").without_model()),
    Route::get("/v1/models/{model}/metadata", v1::metadata, Doc::new("v1_metadata", "v1",
        "TF-Serving: the signature as serving_default", "V1Metadata", "The signature")),
    Route::post("/v1/models/{model}:predict", v1::predict, Doc::new("v1_predict", "v1",
        "TF-Serving / KServe v1: predict with instances (rows) or inputs (columns)",
        "V1PredictResponse", "The model's outputs").takes("V1PredictRequest")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Params, Router};

    fn found(path: &str) -> (&'static str, Params) {
        let router = Router::new(&ROUTES);
        let found = router.find(path).unwrap();
        (router.route(found.index).template, found.params)
    }

    fn model(name: &str, version: Option<&str>) -> Params {
        Params {
            model: Some(name.into()),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn stats_of_every_model_is_not_a_model_named_stats() {
        assert_eq!(
            found("/v2/models/stats"),
            ("/v2/models/stats", Params::default())
        );
        assert_eq!(
            found("/v2/models/digits/stats"),
            ("/v2/models/{model}/stats", model("digits", None))
        );
        assert_eq!(
            found("/v2/models/digits/versions/1/stats"),
            ("/v2/models/{model}/stats", model("digits", Some("1")))
        );
        // A model that is named "stats" is still reached, by its routes with a suffix or a
        // version.
        assert_eq!(
            found("/v2/models/stats/stats"),
            ("/v2/models/{model}/stats", model("stats", None))
        );
        assert_eq!(
            found("/v2/models/stats/versions/1"),
            ("/v2/models/{model}", model("stats", Some("1")))
        );
        assert_eq!(found("/v2/models/digits").0, "/v2/models/{model}");
    }

    #[test]
    fn every_template_is_reached_by_its_own_path() {
        let router = Router::new(&ROUTES);
        for (index, route) in ROUTES.iter().enumerate() {
            let path = route.template.replace("{model}", "m");
            assert_eq!(router.find(&path).unwrap().index, index, "{path}");
        }
    }
}
