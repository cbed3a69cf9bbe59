//! Tree ensembles (`src/engine/onnx_ml/trees/`) against onnxruntime 1.31.1: every model in
//! tests/fixtures/trees/ (made by tests/fixtures/make_trees.py with skl2onnx, onnxmltools
//! and onnx.helper) is loaded and run in-process, and its outputs compared with
//! onnxruntime's answers recorded next to it: labels exactly, scores within 1e-5 relative.
//! The models onnxruntime answers with garbage must be refused at load, in one line naming
//! the node, the operator and the reason.

use onnx_serve::engine::Model;
use onnx_serve::tensor::{Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

const RELATIVE_TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

/// Reals are written as strings so that they parse correctly rounded (serde_json's own
/// float parsing may be one ulp off, which moves a value sitting on a threshold).
fn real<T: std::str::FromStr>(v: &Value) -> T {
    let text = v.as_str().unwrap_or_else(|| panic!("not a real: {v}"));
    let text = match text {
        "Infinity" => "inf",
        "-Infinity" => "-inf",
        other => other,
    };
    text.parse()
        .unwrap_or_else(|_| panic!("not a real: {text}"))
}

fn integer(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn input(spec: &Value) -> Tensor {
    let values = spec["values"].as_array().unwrap();
    let data = match spec["dtype"].as_str().unwrap() {
        "float32" => TensorData::Fp32(values.iter().map(real).collect()),
        "float64" => TensorData::Fp64(values.iter().map(real).collect()),
        "int64" => TensorData::Int64(values.iter().map(integer).collect()),
        "int32" => TensorData::Int32(values.iter().map(|v| integer(v) as i32).collect()),
        other => panic!("input dtype {other}"),
    };
    Tensor::new(shape(&spec["shape"]), data).unwrap()
}

/// Compares one output; `Err` says where it differs. `exact` counts the values equal to the
/// last bit.
fn compare(ours: &Tensor, expected: &Value, exact: &mut (usize, usize)) -> Result<(), String> {
    let name = expected["name"].as_str().unwrap();
    let want_shape = shape(&expected["shape"]);
    if ours.shape != want_shape {
        return Err(format!(
            "{name}: shape {:?}, onnxruntime {:?}",
            ours.shape, want_shape
        ));
    }
    let values = expected["values"].as_array().unwrap();
    let reals: Vec<f64> = match (&ours.data, expected["dtype"].as_str().unwrap()) {
        (TensorData::Int64(got), "int64") => {
            let want: Vec<i64> = values.iter().map(integer).collect();
            return if *got == want {
                Ok(())
            } else {
                Err(format!("{name}: labels {got:?}, onnxruntime {want:?}"))
            };
        }
        (TensorData::Bytes(got), "string") => {
            let want: Vec<&str> = values.iter().map(|v| v.as_str().unwrap()).collect();
            return if got.iter().map(String::as_str).eq(want.iter().copied()) {
                Ok(())
            } else {
                Err(format!("{name}: labels {got:?}, onnxruntime {want:?}"))
            };
        }
        (TensorData::Fp32(got), "float32") => got.iter().map(|&v| v as f64).collect(),
        (TensorData::Fp64(got), "float64") => got.clone(),
        (data, dtype) => {
            return Err(format!(
                "{name}: we answer {}, onnxruntime {dtype}",
                data.datatype().name()
            ));
        }
    };
    for (i, (&got, want)) in reals.iter().zip(values.iter().map(real::<f64>)).enumerate() {
        exact.1 += 1;
        if got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) {
            exact.0 += 1;
            continue;
        }
        let close = (got - want).abs() <= RELATIVE_TOLERANCE * want.abs().max(1e-3);
        if !close {
            return Err(format!("{name}[{i}]: {got}, onnxruntime {want}"));
        }
    }
    Ok(())
}

/// The model's outputs for one input, through the engine.
fn run(path: &Path, input: Tensor) -> Result<Vec<Tensor>, String> {
    let model = Model::load(path).map_err(|e| format!("load: {e}"))?;
    model
        .run(vec![input], None)
        .map_err(|e| format!("run: {e:?}"))
}

fn check(case: &Value, exact: &mut (usize, usize)) -> Result<(), String> {
    let path = fixtures().join(case["model"].as_str().unwrap());
    let outputs = run(&path, input(&case["input"]))?;
    let expected = case["outputs"].as_array().unwrap();
    if outputs.len() != expected.len() {
        return Err(format!(
            "{} outputs, onnxruntime {}",
            outputs.len(),
            expected.len()
        ));
    }
    for (ours, want) in outputs.iter().zip(expected) {
        compare(ours, want, exact)?;
    }
    Ok(())
}

#[test]
fn every_model_answers_like_onnxruntime() {
    let cases = cases();
    let cases = cases["cases"].as_array().unwrap();
    let mut exact = (0, 0);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(case, &mut exact)
                .err()
                .map(|e| format!("{}: {e}", case["name"].as_str().unwrap()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} models differ from onnxruntime:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} models agree with onnxruntime; {} of {} scores to the last bit",
        cases.len(),
        exact.0,
        exact.1
    );
}

#[test]
fn the_models_onnxruntime_answers_with_garbage_are_refused_in_one_line() {
    let cases = cases();
    for refusal in cases["refusals"].as_array().unwrap() {
        let name = refusal["name"].as_str().unwrap();
        let path = fixtures().join(refusal["model"].as_str().unwrap());
        let error = match Model::load(&path) {
            Ok(_) => panic!(
                "{name}: loaded, but it must be refused ({})",
                refusal["why"]
            ),
            Err(e) => e.0,
        };
        assert!(!error.contains('\n'), "{name}: {error}");
        for word in refusal["expect"].as_array().unwrap() {
            let word = word.as_str().unwrap();
            assert!(error.contains(word), "{name}: '{word}' is not in: {error}");
        }
    }
}
