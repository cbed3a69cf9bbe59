//! The engine: everything that knows tract. For now it holds our own ONNX operators,
//! registered with tract-onnx's operator registry when a model is loaded.

pub mod onnx_ml;
