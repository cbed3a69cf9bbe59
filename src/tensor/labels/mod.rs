//! Class labels for a classifier: read from a labels file (`--labels`) or from the labels a
//! model carries in its metadata, matched to the model output they name, and the top k
//! classes of each row (`top_k`), also in Triton's classification-extension strings.

mod metadata;
mod top_k;

pub use metadata::{METADATA_KEYS, labels_from_metadata};
pub use top_k::{Score, TopClass, top_k, triton_classification};

use crate::tensor::DataType;
use crate::tensor::{Dim, TensorSpec, describe_all};
use std::path::Path;

/// Class names in the model's class order: `get(i)` names class `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    names: Vec<String>,
}

impl Labels {
    /// Labels already in class order. At least one.
    pub fn new(names: Vec<String>) -> Result<Labels, String> {
        if names.is_empty() {
            return Err("no labels".into());
        }
        Ok(Labels { names })
    }

    /// Reads a labels file: UTF-8, one label per line in class order, each line trimmed.
    /// Trailing empty lines are ignored; an empty line before the last label is an error,
    /// since dropping it would shift every label after it.
    pub fn from_file(path: &Path) -> Result<Labels, String> {
        let shown = path.display();
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read labels file '{shown}': {e}"))?;
        Labels::from_bytes(&bytes).map_err(|e| format!("labels file '{shown}' {e}"))
    }

    /// The text of a labels file; errors read after "labels file 'PATH' ".
    pub fn from_bytes(bytes: &[u8]) -> Result<Labels, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            format!("is not UTF-8 text (line {line})")
        })?;
        Labels::from_lines(text)
    }

    /// One label per line (see `from_file`).
    pub(crate) fn from_lines(text: &str) -> Result<Labels, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut names: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
        while names.last().is_some_and(|l| l.is_empty()) {
            names.pop();
        }
        if names.is_empty() {
            return Err("has no labels (one label per line, in class order)".into());
        }
        if let Some(i) = names.iter().position(|l| l.is_empty()) {
            return Err(format!(
                "has an empty line {}: each line names one class in order, so an empty \
                 line would shift every label after it",
                i + 1
            ));
        }
        Ok(Labels { names })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The label of class `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Which output the labels name: the one whose last dimension is the number of classes,
/// or whose last dimension before trailing 1s is (`[1, 1000, 1, 1]`, as classifiers that
/// end in a convolution leave it: SqueezeNet). `name` picks one explicitly (and is
/// checked); otherwise exactly one output must fit.
pub fn classification_output(
    outputs: &[TensorSpec],
    classes: usize,
    name: Option<&str>,
) -> Result<usize, String> {
    let fits = |spec: &TensorSpec| {
        let class_dim = spec.shape.iter().rev().find(|d| **d != Dim::Fixed(1));
        !matches!(spec.datatype, DataType::Bytes | DataType::Bool)
            && (spec.shape.last() == Some(&Dim::Fixed(classes))
                || class_dim == Some(&Dim::Fixed(classes)))
    };
    if let Some(name) = name {
        let index = outputs.iter().position(|s| s.name == name).ok_or_else(|| {
            format!(
                "the model has no output '{name}' to label (outputs: {})",
                describe_all(outputs)
            )
        })?;
        let spec = &outputs[index];
        if !fits(spec) {
            return Err(format!(
                "output {} does not end in a dimension of {classes} numbers, one per label",
                describe_all(std::slice::from_ref(spec))
            ));
        }
        return Ok(index);
    }
    let fitting: Vec<usize> = (0..outputs.len()).filter(|&i| fits(&outputs[i])).collect();
    match fitting.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "no output ends in a dimension of {classes} numbers, one per label (outputs: {})",
            describe_all(outputs)
        )),
        [first, second, ..] => Err(format!(
            "outputs '{}' and '{}' both end in {classes} numbers: name the one the labels are for",
            outputs[*first].name, outputs[*second].name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_labels_file() {
        let labels =
            Labels::from_bytes(b"\xEF\xBB\xBFcat\r\n  dog  \ntench, Tinca tinca\n\n\n").unwrap();
        assert_eq!(labels.names(), ["cat", "dog", "tench, Tinca tinca"]);
        assert_eq!(labels.get(1), Some("dog"));
        assert_eq!(labels.get(3), None);
        assert_eq!(Labels::from_bytes(b"one").unwrap().len(), 1);
    }

    #[test]
    fn refuses_bad_labels_files() {
        assert_eq!(
            Labels::from_bytes(b"").unwrap_err(),
            "has no labels (one label per line, in class order)"
        );
        assert!(
            Labels::from_bytes(b" \n\n")
                .unwrap_err()
                .contains("no labels")
        );
        assert_eq!(
            Labels::from_bytes(b"a\n\nb\n").unwrap_err(),
            "has an empty line 2: each line names one class in order, so an empty line would \
             shift every label after it"
        );
        assert_eq!(
            Labels::from_bytes(b"a\nb\n\xFF\n").unwrap_err(),
            "is not UTF-8 text (line 3)"
        );
        let missing = Labels::from_file(Path::new("/nonexistent/labels.txt")).unwrap_err();
        assert!(missing.starts_with("cannot read labels file '/nonexistent/labels.txt'"));
    }

    #[test]
    fn reads_the_fixture_labels_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/labels.txt");
        let labels = Labels::from_file(&path).unwrap();
        assert_eq!(labels.len(), 10);
        assert_eq!(labels.get(2), Some("potter's wheel"));
        assert_eq!(labels.get(8), Some("猫"));
    }

    fn spec(name: &str, datatype: DataType, dims: &[Dim]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            shape: dims.to_vec(),
            map_keys: None,
        }
    }

    #[test]
    fn picks_the_output_that_ends_in_the_class_count() {
        let batch = Dim::Symbolic("batch".into());
        let outputs = [
            spec("label", DataType::Int64, std::slice::from_ref(&batch)),
            spec(
                "probabilities",
                DataType::Fp32,
                &[batch.clone(), Dim::Fixed(10)],
            ),
            spec("names", DataType::Bytes, &[batch.clone(), Dim::Fixed(10)]),
        ];
        assert_eq!(classification_output(&outputs, 10, None), Ok(1));
        assert_eq!(
            classification_output(&outputs, 10, Some("probabilities")),
            Ok(1)
        );
        assert_eq!(
            classification_output(&outputs, 7, None).unwrap_err(),
            "no output ends in a dimension of 7 numbers, one per label (outputs: label INT64 \
             [batch], probabilities FP32 [batch, 10], names BYTES [batch, 10])"
        );
        assert_eq!(
            classification_output(&outputs, 10, Some("label")).unwrap_err(),
            "output label INT64 [batch] does not end in a dimension of 10 numbers, one per label"
        );
        assert!(
            classification_output(&outputs, 10, Some("nope"))
                .unwrap_err()
                .starts_with("the model has no output 'nope' to label")
        );
        let two = [
            spec("a", DataType::Fp32, &[batch.clone(), Dim::Fixed(3)]),
            spec("b", DataType::Fp16, &[Dim::Fixed(3)]),
        ];
        assert_eq!(
            classification_output(&two, 3, None).unwrap_err(),
            "outputs 'a' and 'b' both end in 3 numbers: name the one the labels are for"
        );
        assert_eq!(classification_output(&two, 3, Some("b")), Ok(1));
    }

    #[test]
    fn trailing_ones_after_the_classes_are_looked_past() {
        let one = || Dim::Fixed(1);
        let squeezenet = [spec(
            "softmaxout_1",
            DataType::Fp32,
            &[one(), Dim::Fixed(1000), one(), one()],
        )];
        assert_eq!(classification_output(&squeezenet, 1000, None), Ok(0));
        assert!(classification_output(&squeezenet, 1, None).is_ok());
        let single_score = [spec(
            "p",
            DataType::Fp32,
            &[Dim::Symbolic("n".into()), one()],
        )];
        assert_eq!(classification_output(&single_score, 1, None), Ok(0));
    }
}
