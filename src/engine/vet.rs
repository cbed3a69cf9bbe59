//! Refuses, when a model loads, the operator configurations tract would answer wrong: it
//! parses them but ignores an attribute or an input that changes the answer. Each refusal
//! is one line naming the node, the operator and the attribute.
//!
//! Found by the conformance suite (tests/conformance.rs) and by comparing each operator's
//! attributes in the ONNX specification with those tract-onnx 0.23.9 reads:
//! | operator | refused | why |
//! |---|---|---|
//! | Attention | `left_window_size` / `right_window_size` >= 0 | local-window attention: tract ignores both |
//! | Attention | `is_causal=1` with a `past_key` input | tract aligns the causal mask as if there were no past |
//! | GRU, LSTM, RNN | `activations` other than the defaults, `clip`, LSTM `input_forget=1` | tract always uses the defaults, never clips, never couples the gates |
//! | BatchNormalization | `training_mode=1` | tract normalises with the running statistics |
//! | Dropout | a `training_mode` input that is not a constant false | training-mode dropout is random; tract fails the run |
//! | QuantizeLinear, DequantizeLinear | `output_dtype` | tract ignores it and picks the type itself |
//!
//! Configurations tract refuses itself, and operators it lacks, are reported by tract when
//! the model is parsed or optimised; operators we implement ourselves (`onnx_fixes`,
//! `onnx_ml`) are not vetted here.

use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// Checks every node of the model, subgraphs included; the error is the first refusal.
pub fn vet(proto: &ModelProto) -> Result<(), String> {
    match &proto.graph {
        Some(graph) => vet_graph(graph, &Constants::default()),
        None => Ok(()),
    }
}

/// The tensors whose values are known when the model loads: initializers and the outputs
/// of `Constant` nodes, of this graph and of the graphs around it.
#[derive(Clone, Default)]
struct Constants<'a> {
    tensors: Vec<(&'a str, &'a TensorProto)>,
}

impl<'a> Constants<'a> {
    fn with_graph(&self, graph: &'a GraphProto) -> Constants<'a> {
        let mut tensors = self.tensors.clone();
        tensors.extend(graph.initializer.iter().map(|t| (t.name.as_str(), t)));
        for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(output), Some(value)) = (node.output.first(), attribute(node, "value"))
                && let Some(t) = &value.t
            {
                tensors.push((output.as_str(), t));
            }
        }
        Constants { tensors }
    }

    fn get(&self, name: &str) -> Option<&'a TensorProto> {
        // The innermost definition wins, as in ONNX's scoping.
        self.tensors
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}

fn vet_graph(graph: &GraphProto, outer: &Constants) -> Result<(), String> {
    let constants = outer.with_graph(graph);
    for node in &graph.node {
        let ai_onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        if ai_onnx && let Some(why) = refusal(node, &constants) {
            let name = match node.name.as_str() {
                "" => node.output.first().map_or("", String::as_str),
                name => name,
            };
            return Err(format!(
                "node '{name}' (op {}) is refused: {why}; tract would answer wrong",
                node.op_type
            ));
        }
        for attr in &node.attribute {
            for subgraph in attr.g.iter().chain(&attr.graphs) {
                vet_graph(subgraph, &constants)?;
            }
        }
    }
    Ok(())
}

/// Why tract would answer this node wrong, if it would.
fn refusal(node: &NodeProto, constants: &Constants) -> Option<String> {
    match node.op_type.as_str() {
        "Attention" => attention(node),
        "GRU" => recurrent(node, &["Sigmoid", "Tanh"]),
        "LSTM" => recurrent(node, &["Sigmoid", "Tanh", "Tanh"]).or_else(|| {
            (int(node, "input_forget") == Some(1))
                .then(|| "attribute input_forget=1 couples the input and forget gates, which tract does not".into())
        }),
        "RNN" => recurrent(node, &["Tanh"]),
        "BatchNormalization" => (int(node, "training_mode") == Some(1)).then(|| {
            "attribute training_mode=1 normalises with the batch's statistics; tract uses the running ones".into()
        }),
        "Dropout" => dropout(node, constants),
        "QuantizeLinear" | "DequantizeLinear" => int(node, "output_dtype")
            .filter(|&dtype| dtype != 0)
            .map(|dtype| format!("attribute output_dtype={dtype} is ignored by tract, which picks the output type itself")),
        _ => None,
    }
}

fn attention(node: &NodeProto) -> Option<String> {
    for window in ["left_window_size", "right_window_size"] {
        if let Some(size) = int(node, window).filter(|&size| size >= 0) {
            return Some(format!(
                "attribute {window}={size} asks for local-window attention, which tract ignores"
            ));
        }
    }
    let past_key = node.input.get(4).is_some_and(|name| !name.is_empty());
    (int(node, "is_causal") == Some(1) && past_key).then(|| {
        "attribute is_causal=1 with a past_key input: tract aligns the causal mask as if there were no past keys".into()
    })
}

/// GRU, LSTM and RNN: tract computes the default activations, unclipped, whatever the
/// attributes say. `defaults` are one direction's activations.
fn recurrent(node: &NodeProto, defaults: &[&str]) -> Option<String> {
    if let Some(activations) = attribute(node, "activations") {
        let names: Vec<String> = (activations.strings.iter())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let is_default = !names.is_empty()
            && names.chunks(defaults.len()).all(|direction| {
                direction
                    .iter()
                    .map(String::as_str)
                    .eq(defaults.iter().copied())
            });
        if !is_default {
            return Some(format!(
                "attribute activations=[{}] differs from the defaults [{}], which tract always uses",
                names.join(", "),
                defaults.join(", ")
            ));
        }
    }
    attribute(node, "clip").map(|clip| format!("attribute clip={} is ignored by tract", clip.f))
}

fn dropout(node: &NodeProto, constants: &Constants) -> Option<String> {
    let training_mode = node.input.get(2).filter(|name| !name.is_empty())?;
    match constants.get(training_mode).and_then(scalar_bool) {
        Some(false) => None,
        Some(true) => Some(format!(
            "input training_mode ('{training_mode}') is true: training-mode dropout is random"
        )),
        None => Some(format!(
            "input training_mode ('{training_mode}') is not a constant: training-mode dropout is random"
        )),
    }
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).map(|a| a.i)
}

/// The value of a one-element boolean (or integer) tensor.
fn scalar_bool(tensor: &TensorProto) -> Option<bool> {
    let first = (tensor.raw_data.first().map(|&b| i64::from(b)))
        .or_else(|| tensor.int32_data.first().map(|&v| i64::from(v)))
        .or_else(|| tensor.int64_data.first().copied())?;
    Some(first != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: "n".into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute: attributes,
            ..NodeProto::default()
        }
    }

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            i,
            ..AttributeProto::default()
        }
    }

    fn strings_attr(name: &str, values: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..AttributeProto::default()
        }
    }

    fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer,
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn a_local_window_is_refused_with_the_node_op_and_attribute() {
        let attention = node(
            "Attention",
            &["q", "k", "v"],
            vec![int_attr("left_window_size", 2)],
        );
        let error = vet(&model(vec![attention], vec![])).unwrap_err();
        assert!(
            error.starts_with("node 'n' (op Attention) is refused: attribute left_window_size=2"),
            "{error}"
        );
        let default = node(
            "Attention",
            &["q", "k", "v"],
            vec![int_attr("left_window_size", -1)],
        );
        assert_eq!(vet(&model(vec![default], vec![])), Ok(()));
    }

    #[test]
    fn causal_attention_is_refused_only_with_a_past() {
        let causal = vec![int_attr("is_causal", 1)];
        let no_past = node("Attention", &["q", "k", "v"], causal.clone());
        assert_eq!(vet(&model(vec![no_past], vec![])), Ok(()));
        let past = node("Attention", &["q", "k", "v", "", "pk", "pv"], causal);
        assert!(
            vet(&model(vec![past], vec![]))
                .unwrap_err()
                .contains("is_causal=1")
        );
    }

    #[test]
    fn recurrent_activations_other_than_the_defaults_are_refused() {
        let defaults = strings_attr("activations", &["Sigmoid", "Tanh", "Sigmoid", "Tanh"]);
        let gru = node("GRU", &["x", "w", "r"], vec![defaults]);
        assert_eq!(vet(&model(vec![gru], vec![])), Ok(()));
        let relu = strings_attr("activations", &["Relu"]);
        let rnn = node("RNN", &["x", "w", "r"], vec![relu]);
        assert!(
            vet(&model(vec![rnn], vec![]))
                .unwrap_err()
                .contains("activations=[Relu]")
        );
        let clip = AttributeProto {
            name: "clip".into(),
            f: 0.5,
            ..AttributeProto::default()
        };
        let gru = node("GRU", &["x", "w", "r"], vec![clip]);
        assert!(
            vet(&model(vec![gru], vec![]))
                .unwrap_err()
                .contains("clip=0.5")
        );
        let lstm = node("LSTM", &["x", "w", "r"], vec![int_attr("input_forget", 1)]);
        assert!(
            vet(&model(vec![lstm], vec![]))
                .unwrap_err()
                .contains("input_forget=1")
        );
    }

    #[test]
    fn dropout_is_served_only_with_a_constant_false_training_mode() {
        let dropout = || node("Dropout", &["x", "ratio", "training"], vec![]);
        let flag = |value: u8| TensorProto {
            name: "training".into(),
            data_type: 9,
            raw_data: vec![value],
            ..TensorProto::default()
        };
        assert_eq!(vet(&model(vec![dropout()], vec![flag(0)])), Ok(()));
        assert!(
            vet(&model(vec![dropout()], vec![flag(1)]))
                .unwrap_err()
                .contains("is true")
        );
        assert!(
            vet(&model(vec![dropout()], vec![]))
                .unwrap_err()
                .contains("not a constant")
        );
    }

    #[test]
    fn subgraphs_are_vetted() {
        let inner = node(
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            vec![int_attr("training_mode", 1)],
        );
        let branch = AttributeProto {
            name: "then_branch".into(),
            g: Some(GraphProto {
                node: vec![inner],
                ..GraphProto::default()
            }),
            ..AttributeProto::default()
        };
        let outer = node("If", &["c"], vec![branch]);
        assert!(
            vet(&model(vec![outer], vec![]))
                .unwrap_err()
                .contains("training_mode=1")
        );
    }
}
