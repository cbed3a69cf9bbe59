//! The integration tests, one module per subject, built as one binary so that a cold
//! `cargo test` compiles and links them once. Each starts the real `onnx-serve` binary and
//! talks to it over real sockets (`common`).

mod common;

mod batching;
mod cli;
mod conformance;
mod conformance_http;
mod deploy;
mod free_sizes;
mod http;
mod images;
mod images_http;
mod memory;
mod ops;
mod overload;
mod predict;
mod proxy;
mod robustness;
mod tabular;
mod trees;
mod v1;
mod v2;
