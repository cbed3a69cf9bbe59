//! Test support: ONNX nodes built attribute by attribute, and reading them.

use super::attributes::Attributes;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

#[derive(Clone)]
pub struct NodeBuilder(NodeProto);

impl NodeBuilder {
    pub fn new(op: &str) -> NodeBuilder {
        NodeBuilder(NodeProto {
            name: "n".into(),
            op_type: op.into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            ..NodeProto::default()
        })
    }

    fn set(mut self, attr: AttributeProto) -> NodeBuilder {
        self.0.attribute.retain(|a| a.name != attr.name);
        self.0.attribute.push(attr);
        self
    }

    fn attr(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: kind as i32,
            ..AttributeProto::default()
        }
    }

    pub fn without(mut self, name: &str) -> NodeBuilder {
        self.0.attribute.retain(|a| a.name != name);
        self
    }

    pub fn int(self, name: &str, i: i64) -> NodeBuilder {
        self.set(AttributeProto {
            i,
            ..Self::attr(name, AttributeType::Int)
        })
    }

    pub fn string(self, name: &str, s: &str) -> NodeBuilder {
        self.set(AttributeProto {
            s: s.into(),
            ..Self::attr(name, AttributeType::String)
        })
    }

    pub fn ints(self, name: &str, ints: &[i64]) -> NodeBuilder {
        self.set(AttributeProto {
            ints: ints.to_vec(),
            ..Self::attr(name, AttributeType::Ints)
        })
    }

    pub fn floats(self, name: &str, floats: &[f32]) -> NodeBuilder {
        self.set(AttributeProto {
            floats: floats.to_vec(),
            ..Self::attr(name, AttributeType::Floats)
        })
    }

    pub fn strings(self, name: &str, strings: &[&str]) -> NodeBuilder {
        let strings = strings.iter().map(|s| s.as_bytes().to_vec()).collect();
        self.set(AttributeProto {
            strings,
            ..Self::attr(name, AttributeType::Strings)
        })
    }

    fn tensor(self, name: &str, data_type: DataType, len: usize, raw_data: Vec<u8>) -> NodeBuilder {
        let t = TensorProto {
            data_type: data_type as i32,
            dims: vec![len as i64],
            raw_data,
            ..TensorProto::default()
        };
        self.set(AttributeProto {
            t: Some(t),
            ..Self::attr(name, AttributeType::Tensor)
        })
    }

    pub fn f32s(self, name: &str, values: &[f32]) -> NodeBuilder {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, DataType::Float, values.len(), raw)
    }

    pub fn f64s(self, name: &str, values: &[f64]) -> NodeBuilder {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, DataType::Double, values.len(), raw)
    }

    pub fn u8s(self, name: &str, values: &[u8]) -> NodeBuilder {
        self.tensor(name, DataType::Uint8, values.len(), values.to_vec())
    }

    /// Reads the node with `read`, as the operator builder would.
    pub fn read<R>(&self, read: impl FnOnce(&Attributes) -> TractResult<R>) -> TractResult<R> {
        let onnx = tract_onnx::onnx();
        let model = ModelProto::default();
        let ctx = ParsingContext {
            onnx_operator_set_version: 17,
            framework: &onnx,
            model: &model,
            parent_graphs: vec![],
            model_dir: None,
            template: InferenceModel::default(),
        };
        read(&Attributes::new(&ctx, &self.0))
    }

    /// The refusal `read` gives, as text (panics if it reads).
    pub fn refusal<R>(&self, read: impl FnOnce(&Attributes) -> TractResult<R>) -> String {
        match self.read(read) {
            Ok(_) => panic!("read, but should be refused"),
            Err(e) => e.to_string(),
        }
    }
}
