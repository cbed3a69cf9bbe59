//! The class labels of a model's ONNX-ML classifier: a `LinearClassifier`, `SVMClassifier`
//! or `TreeEnsembleClassifier` carries them (`classlabels_strings`, or the integer list),
//! and its probabilities reach an output whether or not a ZipMap follows (skl2onnx's
//! `zipmap=False` leaves the tensor). The server names the top classes with them.

use super::support;
use crate::tensor::ClassLabels;
use tract_onnx::pb::ModelProto;

/// Each classifier operator and the name of its integer labels attribute.
const CLASSIFIERS: [(&str, &str); 3] = [
    ("LinearClassifier", "classlabels_ints"),
    ("SVMClassifier", "classlabels_ints"),
    ("TreeEnsembleClassifier", "classlabels_int64s"),
];

/// The labels of the graph's classifier, when it has exactly one (with several, which
/// output each one reaches is not said by the labels alone, so none is claimed).
pub fn classifier_labels(model: &ModelProto) -> Option<ClassLabels> {
    let graph = model.graph.as_ref()?;
    let mut found = graph.node.iter().filter_map(|node| {
        let (_, ints) = CLASSIFIERS
            .iter()
            .find(|(op, _)| node.op_type == *op && node.domain == "ai.onnx.ml")?;
        support::class_labels(node, ints)
            .ok()
            .filter(|labels| !labels.is_empty())
    });
    let labels = found.next()?;
    found.next().is_none().then_some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, attribute_proto};

    fn classifier(op: &str, attribute: AttributeProto) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            domain: "ai.onnx.ml".into(),
            attribute: vec![attribute],
            ..Default::default()
        }
    }

    fn strings(name: &str, values: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Strings as i32,
            strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::Ints as i32,
            ints: values.to_vec(),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn one_classifier_names_the_classes() {
        let m = model(vec![classifier(
            "LinearClassifier",
            strings("classlabels_strings", &["cat", "dog"]),
        )]);
        assert_eq!(
            classifier_labels(&m),
            Some(ClassLabels::Strings(vec!["cat".into(), "dog".into()]))
        );
        let m = model(vec![classifier(
            "TreeEnsembleClassifier",
            ints("classlabels_int64s", &[3, 7]),
        )]);
        assert_eq!(classifier_labels(&m), Some(ClassLabels::Int64(vec![3, 7])));
    }

    #[test]
    fn none_for_no_classifier_or_several() {
        assert_eq!(classifier_labels(&model(vec![])), None);
        let svm = || classifier("SVMClassifier", ints("classlabels_ints", &[0, 1]));
        assert_eq!(classifier_labels(&model(vec![svm(), svm()])), None);
        // Another domain's operator of the same name is not ONNX-ML's.
        let mut other = svm();
        other.domain = "com.example".into();
        assert_eq!(classifier_labels(&model(vec![other])), None);
    }
}
