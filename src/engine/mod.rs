//! The engine: the model and its signature, the one line requests wait in to run it
//! (`queue`, used by the worker slots and by dynamic batching), the threads that run it,
//! and our own ONNX operators. It knows nothing of HTTP.
//!
//! This folder is the only one that knows tract: `tract.rs` drives it (load, optimise,
//! run, convert tensors); `onnx_ml/` adds the operators tract lacks and `onnx_fixes/`
//! replaces some it answers wrong, both registered with tract-onnx's operator registry at
//! load; `vet.rs` refuses, before optimising, what tract would still answer wrong.

mod batcher;
mod error;
mod model;
mod onnx_fixes;
mod onnx_ml;
mod plan_cache;
mod queue;
mod run_threads;
mod slots;
mod tract;
mod vet;
mod warm_up;

pub use batcher::BatchConfig;
pub use error::{LoadError, RunError};
pub use model::{Admitted, Execution, Model};
pub use plan_cache::PlanStats;
pub use queue::{Busy, Caller, Refused};
pub use tract::{InputShape, TRACT_VERSION, onnx};
