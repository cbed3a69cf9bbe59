//! `onnx-serve predict`: one `/predict` request body from stdin, its answer on stdout, no
//! server. The answer is the server's, `"labels"` included (`--labels`, or the labels the
//! model carries).

use super::{Cli, cannot_start, source::Source};
use crate::api::simple;
use std::io::{Read, Write};
use std::process::ExitCode;

pub fn run(cli: &Cli) -> ExitCode {
    let model = match Source::choose(cli.model.as_ref())
        .and_then(|source| source.load(&cli.input_shapes).map_err(|e| e.to_string()))
    {
        Ok(model) => model,
        Err(e) => return cannot_start(e),
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        return cannot_start(format!("cannot read the request from stdin: {e}"));
    }
    let serving = match super::serve::serving(cli, model) {
        Ok(serving) => serving,
        Err(e) => return cannot_start(e),
    };
    let (answer, code) = match simple::predict_json(&serving, &body) {
        Ok(json) => (json, ExitCode::SUCCESS),
        Err(e) => (e.body(), ExitCode::FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(&answer)
        .and_then(|_| stdout.write_all(b"\n"));
    code
}
