//! Reading one node's attributes, with refusals that name the node, the operator and the
//! attribute in one line.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::format_err;

/// Real numbers read from a `floats` attribute or from its `*_as_tensor` twin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reals {
    pub values: Vec<f64>,
    /// They came as a double tensor: the ensemble then computes in double.
    pub double: bool,
}

/// One node's attributes, for one operator.
pub struct Attributes<'a> {
    node: &'a NodeProto,
    ctx: &'a ParsingContext<'a>,
}

impl<'a> Attributes<'a> {
    pub fn new(ctx: &'a ParsingContext<'a>, node: &'a NodeProto) -> Attributes<'a> {
        Attributes { node, ctx }
    }

    /// The node as people will find it in their model: its name, else its first output.
    pub fn node_name(&self) -> &str {
        if !self.node.name.is_empty() {
            &self.node.name
        } else {
            self.node.output.first().map_or("", String::as_str)
        }
    }

    /// The output names the node declares (empty names are absent optional outputs).
    pub fn outputs(&self) -> &[String] {
        &self.node.output
    }

    /// A refusal about the node as a whole.
    pub fn refuse(&self, why: impl std::fmt::Display) -> TractError {
        format_err!("{} node '{}': {}", self.node.op_type, self.node_name(), why)
    }

    /// A refusal about one attribute.
    pub fn refuse_attr(&self, attr: &str, why: impl std::fmt::Display) -> TractError {
        format_err!(
            "{} node '{}', attribute '{}': {}",
            self.node.op_type,
            self.node_name(),
            attr,
            why
        )
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn typed(
        &self,
        name: &str,
        expected: AttributeType,
    ) -> TractResult<Option<&'a AttributeProto>> {
        let Some(attr) = self.find(name) else {
            return Ok(None);
        };
        if attr.r#type != expected as i32 {
            let found = AttributeType::try_from(attr.r#type)
                .map(|t| t.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("type {}", attr.r#type));
            return Err(self.refuse_attr(
                name,
                format!("expected {}, found {found}", expected.as_str_name()),
            ));
        }
        Ok(Some(attr))
    }

    pub fn int(&self, name: &str) -> TractResult<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    pub fn string(&self, name: &str) -> TractResult<Option<String>> {
        self.typed(name, AttributeType::String)?
            .map(|a| self.utf8(name, &a.s))
            .transpose()
    }

    pub fn ints(&self, name: &str) -> TractResult<Option<&'a [i64]>> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    pub fn required_ints(&self, name: &str) -> TractResult<&'a [i64]> {
        self.ints(name)?
            .ok_or_else(|| self.refuse_attr(name, "is required and missing"))
    }

    pub fn strings(&self, name: &str) -> TractResult<Option<Vec<String>>> {
        self.typed(name, AttributeType::Strings)?
            .map(|a| a.strings.iter().map(|s| self.utf8(name, s)).collect())
            .transpose()
    }

    fn utf8(&self, name: &str, bytes: &[u8]) -> TractResult<String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.refuse_attr(name, "holds text that is not valid UTF-8"))
    }

    /// The real numbers of `name` (a list of floats) or of `name_as_tensor` (a float or double
    /// tensor); giving both is refused, as onnxruntime does.
    pub fn reals(&self, name: &str) -> TractResult<Option<Reals>> {
        let tensor_name = format!("{name}_as_tensor");
        let floats = self.typed(name, AttributeType::Floats)?;
        let tensor = self.tensor_reals(&tensor_name)?;
        match (floats, tensor) {
            (Some(_), Some(_)) => Err(self.refuse(format!(
                "attributes '{name}' and '{tensor_name}' are both given; only one may be"
            ))),
            (Some(f), None) => Ok(Some(Reals {
                values: f.floats.iter().map(|&v| v as f64).collect(),
                double: false,
            })),
            (None, tensor) => Ok(tensor),
        }
    }

    /// The values of a float or double tensor attribute, flattened.
    pub fn tensor_reals(&self, name: &str) -> TractResult<Option<Reals>> {
        let Some(proto) = self.tensor_proto(name)? else {
            return Ok(None);
        };
        let tensor = self.load(name, proto)?;
        let double = match tensor.datum_type() {
            DatumType::F32 => false,
            DatumType::F64 => true,
            other => {
                return Err(self.refuse_attr(
                    name,
                    format!("expected a float or double tensor, found {other:?}"),
                ));
            }
        };
        let values = tensor
            .cast_to::<f64>()
            .and_then(|t| Ok(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
            .map_err(|e| self.refuse_attr(name, format!("cannot read its values: {e}")))?;
        Ok(Some(Reals { values, double }))
    }

    /// The values of a uint8 tensor attribute, flattened.
    pub fn tensor_bytes(&self, name: &str) -> TractResult<Option<Vec<u8>>> {
        let Some(proto) = self.tensor_proto(name)? else {
            return Ok(None);
        };
        let tensor = self.load(name, proto)?;
        if tensor.datum_type() != DatumType::U8 {
            return Err(self.refuse_attr(
                name,
                format!("expected a uint8 tensor, found {:?}", tensor.datum_type()),
            ));
        }
        let values = tensor
            .try_as_plain_ram()
            .and_then(|plain| Ok(plain.as_slice::<u8>()?.to_vec()))
            .map_err(|e| self.refuse_attr(name, format!("cannot read its values: {e}")))?;
        Ok(Some(values))
    }

    fn tensor_proto(&self, name: &str) -> TractResult<Option<&'a TensorProto>> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(attr) => attr
                .t
                .as_ref()
                .map(Some)
                .ok_or_else(|| self.refuse_attr(name, "is a tensor attribute with no tensor")),
        }
    }

    fn load(&self, name: &str, proto: &TensorProto) -> TractResult<Tensor> {
        self.ctx
            .load_tensor(proto)
            .map_err(|e| self.refuse_attr(name, format!("cannot read the tensor: {e}")))
    }
}
