//! An ONNX file into tract's inference model, with what the graph itself declares and tract
//! may lose while optimising: the names of the graph's outputs.
//!
//! tract labels a graph output with its name when it parses the graph, but optimisation
//! rewires outputs (an `Attention` node's `present_key` becomes the node that concatenates
//! the key cache, under tract's own name), and two outputs that are one tensor share one
//! label. So the names are read here, from the graph's `output` list, in its order: tract
//! keeps the model's outputs in that order.

use std::path::Path;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::tract_data::internal::bail;
use tract_onnx::prelude::*;

/// A parsed model and the names its graph gives its outputs, in order.
pub struct Parsed {
    pub model: InferenceModel,
    pub output_names: Vec<String>,
}

/// Parses `proto`; `dir` is where the ONNX file is, for tensors stored beside it.
pub fn parse(
    onnx: &tract_onnx::Onnx,
    proto: &ModelProto,
    dir: Option<&Path>,
) -> TractResult<Parsed> {
    let dir = dir.and_then(Path::to_str);
    let parsed = onnx.parse(proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!(
            "the graph uses tensors it never defines: {}",
            parsed.unresolved_inputs.join(", ")
        );
    }
    let output_names = proto
        .graph
        .as_ref()
        .map(|graph| graph.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    Ok(Parsed {
        model: parsed.model,
        output_names,
    })
}
