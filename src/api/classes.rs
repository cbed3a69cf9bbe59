//! The model's classes, as the answers name them: class labels and the output they label,
//! decided once at start-up.
//!
//! Labels come from `--labels FILE` (one per line) or else from the model itself, tried in
//! this order: a ZipMap output's class labels, the labels of its ONNX-ML classifier
//! (LinearClassifier, SVMClassifier, TreeEnsembleClassifier), labels in its
//! `metadata_props` (`tensor::labels::METADATA_KEYS`). The labelled output is the one whose
//! last dimension is the number of labels; `--labels-output NAME` picks one when several
//! are. A labels file that fits no output stops start-up; labels a model carries that fit
//! none (a detector's 80 names beside a [1, 84, 8400] output) are left unused, with a
//! warning.

use crate::engine::Model;
use crate::tensor::ClassLabels;
use crate::tensor::labels::{Labels, classification_output, labels_from_metadata};
use log::warn;

/// Labels, and the output whose last dimension they name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classes {
    /// The output's index in the signature.
    pub output: usize,
    pub labels: Labels,
    /// Where the labels came from, for the start-up log: "labels file 'x.txt'",
    /// "the model's metadata 'names'"...
    pub origin: String,
}

/// A labels file given with `--labels`, and where it was read from.
pub struct LabelsFile {
    pub labels: Labels,
    pub path: String,
}

/// The classes of `model`: from `file` if given (an error when it fits no output), else
/// from what the model carries (`None` when it carries no usable labels). `output` is
/// `--labels-output`.
pub fn resolve(
    model: &Model,
    file: Option<LabelsFile>,
    output: Option<&str>,
) -> Result<Option<Classes>, String> {
    let outputs = &model.signature().outputs;
    if let Some(LabelsFile { labels, path }) = file {
        let index = classification_output(outputs, labels.len(), output)
            .map_err(|e| format!("--labels {path}: {} labels, but {e}", labels.len()))?;
        return Ok(Some(Classes {
            output: index,
            labels,
            origin: format!("labels file '{path}'"),
        }));
    }
    for (origin, labels) in carried(model) {
        let labels = match labels {
            Ok(labels) => labels,
            Err(e) => {
                warn!("{origin} are not used: {e}");
                continue;
            }
        };
        match classification_output(outputs, labels.len(), output) {
            Ok(index) => {
                return Ok(Some(Classes {
                    output: index,
                    labels,
                    origin,
                }));
            }
            Err(e) => warn!("{origin} ({} labels) are not used: {e}", labels.len()),
        }
    }
    match output {
        Some(name) => Err(format!(
            "--labels-output {name}: no labels to name its classes with; give them with \
             --labels FILE (one label per line)"
        )),
        None => Ok(None),
    }
}

/// The labels the model carries, where they come from, in the order they are tried.
fn carried(model: &Model) -> Vec<(String, Result<Labels, String>)> {
    let mut found = Vec::new();
    for spec in &model.signature().outputs {
        if let Some(keys) = &spec.map_keys {
            found.push((
                format!("the class labels of ZipMap output '{}'", spec.name),
                from_class_labels(keys),
            ));
        }
    }
    if let Some(keys) = model.classifier_labels() {
        found.push((
            "the class labels of the model's classifier".to_owned(),
            from_class_labels(keys),
        ));
    }
    let metadata = model
        .metadata()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    match labels_from_metadata(metadata) {
        Ok(Some((key, labels))) => found.push((
            format!("the labels in the model's metadata '{key}'"),
            Ok(labels),
        )),
        Ok(None) => {}
        Err(e) => found.push(("the labels in the model's metadata".to_owned(), Err(e))),
    }
    found
}

/// ONNX-ML class labels as label text: strings as they are, integers written out.
fn from_class_labels(keys: &ClassLabels) -> Result<Labels, String> {
    let names = match keys {
        ClassLabels::Strings(names) => names.clone(),
        ClassLabels::Int64(ints) => ints.iter().map(i64::to_string).collect(),
    };
    Labels::new(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path)
    }

    fn model(path: &str) -> Model {
        Model::load(&fixture(path)).unwrap()
    }

    fn file(path: &str) -> LabelsFile {
        LabelsFile {
            labels: Labels::from_file(&fixture(path)).unwrap(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn the_model_carries_its_labels_in_metadata_zipmap_or_classifier() {
        let classes = resolve(&model("images/classifier_nchw.onnx"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!((classes.output, classes.labels.len()), (0, 10));
        assert_eq!(classes.labels.get(8), Some("猫"));
        assert_eq!(classes.origin, "the labels in the model's metadata 'names'");

        let classes = resolve(&model("tabular/logreg_multi_nozipmap.onnx"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(classes.labels.names(), ["0", "1", "2"]);
        assert_eq!(classes.origin, "the class labels of the model's classifier");
        assert_eq!(classes.output, 1);

        let classes = resolve(&model("tabular/logreg_strings.onnx"), None, None)
            .unwrap()
            .unwrap();
        assert!(
            classes
                .origin
                .starts_with("the class labels of ZipMap output")
        );

        assert_eq!(
            resolve(&model("images/classifier_nhwc.onnx"), None, None),
            Ok(None)
        );
    }

    #[test]
    fn a_labels_file_must_fit_an_output() {
        let nhwc = model("images/classifier_nhwc.onnx");
        let classes = resolve(&nhwc, Some(file("images/labels.txt")), None)
            .unwrap()
            .unwrap();
        assert_eq!(classes.origin, "labels file 'images/labels.txt'");
        let digits =
            Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("model.onnx")).unwrap();
        let short = LabelsFile {
            labels: Labels::new(vec!["a".into(), "b".into()]).unwrap(),
            path: "two.txt".into(),
        };
        let err = resolve(&digits, Some(short), None).unwrap_err();
        assert!(
            err.starts_with("--labels two.txt: 2 labels, but no output ends in a dimension of 2"),
            "{err}"
        );
        let err = resolve(&nhwc, None, Some("probabilities")).unwrap_err();
        assert!(
            err.starts_with("--labels-output probabilities: no labels"),
            "{err}"
        );
        let err = resolve(&nhwc, Some(file("images/labels.txt")), Some("nope")).unwrap_err();
        assert!(err.contains("no output 'nope'"), "{err}");
    }
}
