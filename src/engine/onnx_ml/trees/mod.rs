//! Tree ensembles: `TreeEnsembleClassifier`, `TreeEnsembleRegressor` and `TreeEnsemble`.

use tract_onnx::model::OnnxOpRegister;

pub fn register(_registry: &mut OnnxOpRegister) {}
