//! What every handler can see: the model (once loaded) with its classes and how it takes
//! images, its name and version, whether the server is draining, the request metrics and
//! prediction statistics, and the API documents made from the model.

use super::classes::{self, Classes};
use super::image_body::{ImageSettings, Images};
use crate::engine::Model;
use crate::http::{Allow, ApiError, Draining, Route};
use crate::ops::metrics::RequestMetrics;
use crate::ops::openapi::{self, ApiDocs, Described, ImageDoc};
use crate::ops::prediction_stats::PredictionStats;
use std::sync::{Arc, OnceLock};

/// The version a model has when its source names none.
pub const DEFAULT_VERSION: &str = "1";

pub struct App {
    /// The name clients use in `/v2/models/{name}` and `/v1/models/{name}`.
    pub model_name: String,
    /// The one version served, for `/versions/{version}` paths.
    pub model_version: String,
    serving: OnceLock<Serving>,
    draining: Draining,
    /// Requests by route and status; the server records them, `/metrics` shows them.
    pub metrics: Arc<RequestMetrics>,
    /// Predictions by outcome and step, for Triton's statistics (`/v2/models/{m}/stats`).
    pub stats: PredictionStats,
    /// An API key is required: the documents say so.
    auth_required: bool,
    /// The OpenAPI document and the /docs page, made once when the model is installed.
    docs: OnceLock<ApiDocs>,
    /// The route table: what the metrics count and the documents describe.
    routes: &'static [Route<App>],
}

impl App {
    /// An app serving `routes` (the route table, `api::ROUTES`).
    pub(super) fn with_routes(model_name: String, routes: &'static [Route<App>]) -> App {
        App {
            model_name,
            model_version: DEFAULT_VERSION.to_owned(),
            serving: OnceLock::new(),
            draining: Draining::default(),
            metrics: Arc::new(RequestMetrics::new(
                routes.iter().map(|r| r.template).collect(),
            )),
            stats: PredictionStats::new(),
            auth_required: false,
            docs: OnceLock::new(),
            routes,
        }
    }

    /// The version `/versions/{version}` paths must name (Triton's `NAME/VERSION` layout).
    pub fn with_version(mut self, version: impl Into<String>) -> App {
        self.model_version = version.into();
        self
    }

    /// Every route but the health routes requires the API key: the documents say so.
    pub fn with_auth_required(mut self, required: bool) -> App {
        self.auth_required = required;
        self
    }

    /// An app whose model is already loaded (the `predict` command, tests).
    pub fn with_model(model_name: String, model: Model) -> App {
        let app = App::new(model_name);
        app.set_model(model);
        app
    }

    /// The flag the server sets when it starts draining.
    pub fn draining(&self) -> Draining {
        self.draining.clone()
    }

    /// Installs the loaded model with what it carries (its own labels, images with the
    /// default preprocessing): from now on the server is ready.
    pub fn set_model(&self, model: Model) {
        self.install(Serving::with_defaults(model));
    }

    /// Installs the loaded model and what start-up made of it: from now on the server is
    /// ready.
    pub fn install(&self, serving: Serving) {
        // The documents describe the model: made now, once, rather than per request.
        let _ = self.docs.set(ApiDocs::new(&self.described(&serving)));
        // Called once, by start-up; a second call would be a bug, and keeps the first model.
        let _ = self.serving.set(serving);
    }

    fn described<'a>(&'a self, serving: &'a Serving) -> Described<'a> {
        let model = &serving.model;
        let routes = self
            .routes
            .iter()
            .map(|route| openapi::Route {
                method: match route.allow {
                    Allow::Get => "get",
                    Allow::Post => "post",
                },
                template: route.template,
                open: route.open,
                doc: &route.doc,
            })
            .collect();
        Described {
            name: &self.model_name,
            version: &self.model_version,
            signature: model.signature(),
            classes: serving.classes.as_ref().map(|c| (c.output, c.labels.len())),
            image: serving.images.pipeline().map(|p| ImageDoc {
                input: &p.input().name,
            }),
            auth: self.auth_required,
            routes,
            tract_version: crate::engine::TRACT_VERSION,
        }
    }

    /// The OpenAPI document and the /docs page, or 503 while the model is loading.
    pub fn docs(&self) -> Result<&ApiDocs, ApiError> {
        self.model()?;
        self.docs.get().ok_or_else(loading)
    }

    /// The model, or 503 while it is still loading.
    pub fn model(&self) -> Result<&Model, ApiError> {
        self.serving().map(|s| &s.model)
    }

    /// The model and what start-up made of it, or 503 while it is still loading.
    pub fn serving(&self) -> Result<&Serving, ApiError> {
        self.serving.get().ok_or_else(loading)
    }

    pub fn is_loaded(&self) -> bool {
        self.serving.get().is_some()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_draining()
    }

    /// Ready to take predictions: loaded and not shutting down.
    pub fn readiness(&self) -> Result<(), ApiError> {
        if self.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down", 5));
        }
        self.model().map(|_| ())
    }
}

fn loading() -> ApiError {
    ApiError::unavailable("the model is still loading", 1)
}

/// The loaded model, and what start-up made of it for the answers: the classes its labels
/// name, and whether (and how) it takes image bodies.
pub struct Serving {
    pub model: Model,
    pub classes: Option<Classes>,
    pub images: Images,
}

impl Serving {
    /// The labels the model carries, if any, and images with the default preprocessing.
    pub fn with_defaults(model: Model) -> Serving {
        let classes = classes::resolve(&model, None, None).unwrap_or(None);
        let images = Images::for_model(model.signature(), &ImageSettings::default())
            .unwrap_or_else(Images::NotTaken);
        Serving {
            model,
            classes,
            images,
        }
    }
}
