//! What every handler can see: the model (once loaded), its name, the worker slots, the
//! server's state (loading, ready, draining), its metrics, who may call it (API key, CORS)
//! and the API documents made from the model.

use crate::auth::Auth;
use crate::cors::Cors;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::openapi::ApiDocs;
use crate::workers::{NoSlot, Slot, Workers};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct App {
    /// The name clients use in `/v2/models/{name}` and `/v1/models/{name}`.
    pub model_name: String,
    /// The one version served, for `/versions/{version}` paths.
    pub model_version: String,
    model: OnceLock<Model>,
    pub workers: Workers,
    draining: AtomicBool,
    pub metrics: Metrics,
    pub auth: Auth,
    pub cors: Cors,
    /// The OpenAPI document and the /docs page, made once when the model is installed.
    docs: OnceLock<ApiDocs>,
}

impl App {
    pub fn new(model_name: String, workers: Workers) -> App {
        App {
            model_name,
            model_version: crate::model_path::DEFAULT_VERSION.to_owned(),
            model: OnceLock::new(),
            workers,
            draining: AtomicBool::new(false),
            metrics: Metrics::new(),
            auth: Auth::open(),
            cors: Cors::Off,
            docs: OnceLock::new(),
        }
    }

    /// Requires the API key on every route but the health routes.
    pub fn with_auth(mut self, auth: Auth) -> App {
        self.auth = auth;
        self
    }

    pub fn with_cors(mut self, cors: Cors) -> App {
        self.cors = cors;
        self
    }

    /// The version `/versions/{version}` paths must name (Triton's `NAME/VERSION` layout).
    pub fn with_version(mut self, version: impl Into<String>) -> App {
        self.model_version = version.into();
        self
    }

    /// An app whose model is already loaded (the `predict` command, tests).
    pub fn with_model(model_name: String, workers: Workers, model: Model) -> App {
        let app = App::new(model_name, workers);
        app.set_model(model);
        app
    }

    /// Installs the loaded model: from now on the server is ready.
    pub fn set_model(&self, model: Model) {
        // The documents describe the model: made now, once, rather than per request.
        let _ = self.docs.set(ApiDocs::new(self, &model));
        // Called once, by start-up; a second call would be a bug, and keeps the first model.
        let _ = self.model.set(model);
    }

    /// The OpenAPI document and the /docs page, or 503 while the model is loading.
    pub fn docs(&self) -> Result<&ApiDocs, ApiError> {
        self.model()?;
        self.docs
            .get()
            .ok_or_else(|| ApiError::unavailable("the model is still loading", 1))
    }

    /// The model, or 503 while it is still loading.
    pub fn model(&self) -> Result<&Model, ApiError> {
        self.model
            .get()
            .ok_or_else(|| ApiError::unavailable("the model is still loading", 1))
    }

    pub fn is_loaded(&self) -> bool {
        self.model.get().is_some()
    }

    /// Ready to take predictions: loaded and not shutting down.
    pub fn readiness(&self) -> Result<(), ApiError> {
        if self.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down", 5));
        }
        self.model().map(|_| ())
    }

    /// A worker slot for the CPU work of one request and how long the request waited for
    /// it; 503 when the queue is full, 499 when the request's client (at `client`) left
    /// while it waited in a full queue.
    pub fn worker(&self, client: Option<SocketAddr>) -> Result<(Slot<'_>, Duration), ApiError> {
        match self.workers.acquire(client) {
            Ok((slot, waited)) => {
                self.metrics.queue_wait.observe(waited);
                Ok((slot, waited))
            }
            Err(NoSlot::QueueFull { waiting }) => Err(ApiError::unavailable(
                format!("the server is busy: {waiting} requests are already waiting (--queue)"),
                1,
            )),
            Err(NoSlot::ClientLeft) => Err(ApiError::client_closed()),
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
