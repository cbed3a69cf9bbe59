//! `onnx-serve inspect`: the model's signature as JSON, and exit.

use super::{Cli, cannot_start, source::Source};
use std::process::ExitCode;

pub fn run(cli: &Cli) -> ExitCode {
    let loaded = Source::choose(cli.model.as_ref()).and_then(|source| {
        Ok((
            source.load(&cli.input_shapes).map_err(|e| e.to_string())?,
            source,
        ))
    });
    let (model, source) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return cannot_start(e),
    };
    let signature = model.signature();
    let description = serde_json::json!({
        "model": source.origin(),
        "name": cli.serve.model_name.as_deref().unwrap_or(source.name()),
        "version": source.version(),
        "inputs": signature.inputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "outputs": signature.outputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&description).expect("JSON values serialize")
    );
    ExitCode::SUCCESS
}
