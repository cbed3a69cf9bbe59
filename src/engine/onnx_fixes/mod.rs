//! Standard ONNX operators whose tract version cannot serve a model that onnxruntime
//! serves, replaced by ours, registered with tract-onnx's operator registry at load.

mod if_on_shapes;

use tract_onnx::model::OnnxOpRegister;

/// Adds our operators to `registry` (replacing tract's of the same name).
pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("If", if_on_shapes::parse);
}
