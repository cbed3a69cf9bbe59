//! What operators read: Prometheus metrics, the counters of Triton's statistics, the OpenAPI
//! document and the `/docs` page, the log lines, and keeping resident memory close to what
//! the model needs.
//!
//! Plain building blocks: nothing here knows HTTP, the route table or tract. The handlers
//! that serve them are in `api::ops`.

pub mod logging;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod prediction_stats;
