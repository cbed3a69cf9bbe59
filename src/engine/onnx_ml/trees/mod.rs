//! Tree ensembles: `TreeEnsembleClassifier`, `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3)
//! and `TreeEnsemble` (ai.onnx.ml 5), answering as onnxruntime does, quirks included; the
//! configurations onnxruntime answers with garbage are refused at load.
//!
//! Reading: `attributes` (one node's attributes, refusals naming node, operator and
//! attribute), `v3` and `v5` (the two encodings into one `ensemble` description). Running:
//! `forest` (the flat evaluation layout and the walk through it, in the `real` number type),
//! then `regression` or `classification` (base values, labels, onnxruntime's binary rules)
//! and `transform` (the post transforms). `op` ties them to tract.

mod attributes;
mod classification;
mod ensemble;
mod forest;
#[cfg(test)]
mod node_builder;
mod op;
mod real;
mod regression;
mod transform;
mod v3;
mod v5;

use tract_onnx::model::OnnxOpRegister;

/// Registers the three operators, replacing tract's `TreeEnsembleClassifier`.
pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("TreeEnsembleClassifier", op::classifier);
    registry.insert("TreeEnsembleRegressor", op::regressor);
    registry.insert("TreeEnsemble", op::tree_ensemble);
}
