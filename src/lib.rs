//! onnx-serve: one ONNX model served over HTTP.
//!
//! `tensor` holds request data, `signature` checks it against the model's inputs, `model`
//! runs it with tract.

pub mod error;
pub mod model;
pub mod model_path;
pub mod signature;
pub mod tensor;

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}
