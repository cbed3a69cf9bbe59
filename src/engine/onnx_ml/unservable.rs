//! Models onnx-serve cannot serve because their inputs are maps or sequences, which no protocol
//! it speaks can carry: refused before tract reads them, with one line naming the node, the
//! operator and why.

use tract_onnx::pb::ModelProto;

/// Operators whose input is a map: `DictVectorizer` (scikit-learn's DictVectorizer) and
/// `CastMap`.
const MAP_INPUT_OPERATORS: &[&str] = &["DictVectorizer", "CastMap"];

pub fn refusal(model: &ModelProto) -> Option<String> {
    let graph = model.graph.as_ref()?;
    for node in &graph.node {
        if MAP_INPUT_OPERATORS.contains(&node.op_type.as_str()) {
            let name = match (node.name.as_str(), node.output.first()) {
                ("", Some(output)) => output.as_str(),
                (name, _) => name,
            };
            return Some(format!(
                "node '{name}' (op {}): takes a map input, which onnx-serve cannot receive",
                node.op_type
            ));
        }
    }
    let initialized = |name: &str| graph.initializer.iter().any(|init| init.name == name);
    graph
        .input
        .iter()
        .find(|input| {
            let is_tensor = input.r#type.as_ref().is_some_and(|t| t.value.is_some());
            !is_tensor && !initialized(&input.name)
        })
        .map(|input| {
            format!(
                "input '{}' is not a tensor (a map or a sequence), which onnx-serve cannot receive",
                input.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{GraphProto, NodeProto};

    fn model(nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn a_dict_vectorizer_is_refused_by_name() {
        let node = NodeProto {
            op_type: "DictVectorizer".into(),
            output: vec!["features".into()],
            domain: "ai.onnx.ml".into(),
            ..NodeProto::default()
        };
        assert_eq!(
            refusal(&model(vec![node])).unwrap(),
            "node 'features' (op DictVectorizer): takes a map input, which onnx-serve cannot \
             receive"
        );
        assert_eq!(refusal(&model(vec![])), None);
    }
}
