//! The engine: everything that knows tract. For now it holds our own ONNX operators,
//! registered with tract-onnx's operator registry when a model is loaded, the parsing that
//! keeps the graph's own output names, and the vetting that refuses what tract would get
//! wrong.

pub mod onnx_fixes;
pub mod onnx_ml;
pub mod parse;
pub mod vet;
