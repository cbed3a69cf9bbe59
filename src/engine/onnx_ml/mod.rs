//! The ONNX-ML (`ai.onnx.ml`) operators tract lacks or gets wrong, implemented here after the
//! ONNX-ML operator specification, with onnxruntime's answers as the reference. `register`
//! puts them into tract-onnx's operator registry, replacing tract's own where it has one.

mod trees;

use tract_onnx::model::OnnxOpRegister;

/// Adds our operators to `registry` (replacing tract's of the same name).
pub fn register(registry: &mut OnnxOpRegister) {
    trees::register(registry);
}
