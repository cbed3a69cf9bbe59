//! The ONNX-ML (`ai.onnx.ml`) operators tract lacks or gets wrong, implemented here after the
//! ONNX-ML operator specification, with onnxruntime's answers as the reference (where the two
//! differ, onnxruntime's behaviour is what users get today, so that is what we compute).
//! `register` puts them into tract-onnx's operator registry, replacing tract's own where it
//! has one. Configurations onnxruntime leaves undefined are refused when the model loads.

mod array_feature_extractor;
mod binarizer;
mod classifier_labels;
mod feature_vectorizer;
mod imputer;
mod label_encoder;
mod linear;
mod normalizer;
mod one_hot_encoder;
mod post_transform;
mod scaler;
mod support;
mod svm;
mod trees;
mod unservable;
mod zip_map;

use tract_onnx::model::OnnxOpRegister;

pub use classifier_labels::classifier_labels;
pub use unservable::refusal;
pub use zip_map::output_map_keys;

/// Adds our operators to `registry` (replacing tract's of the same name).
pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert(
        "ArrayFeatureExtractor",
        array_feature_extractor::array_feature_extractor,
    );
    registry.insert("Binarizer", binarizer::binarizer);
    registry.insert("CategoryMapper", label_encoder::category_mapper);
    registry.insert("FeatureVectorizer", feature_vectorizer::feature_vectorizer);
    registry.insert("Imputer", imputer::imputer);
    registry.insert("LabelEncoder", label_encoder::label_encoder);
    registry.insert("LinearClassifier", linear::linear_classifier);
    registry.insert("LinearRegressor", linear::linear_regressor);
    registry.insert("Normalizer", normalizer::normalizer);
    registry.insert("OneHotEncoder", one_hot_encoder::one_hot_encoder);
    registry.insert("Scaler", scaler::scaler);
    registry.insert("SVMClassifier", svm::svm_classifier);
    registry.insert("SVMRegressor", svm::svm_regressor);
    registry.insert("ZipMap", zip_map::zip_map);
    trees::register(registry);
}
