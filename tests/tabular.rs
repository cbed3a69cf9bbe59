//! Tabular models as users export them (scikit-learn through skl2onnx, LightGBM and XGBoost
//! through onnxmltools: `tests/fixtures/make_tabular.py`), loaded by our engine in-process and
//! run on the fixtures' inputs, against onnxruntime's answers.
//!
//! Labels and other integers and strings must be equal. FP32 values must agree within
//! 1e-5 relative or 1e-6 absolute: both engines compute in f32 but sum in different orders
//! (onnxruntime's GEMM kernels block and fuse multiply-adds, its logistic and softmax are
//! vectorized approximations), which moves results by a few units in the last place, growing
//! with the number of terms (up to 64 features, hundreds of support vectors); 1e-5 relative is
//! about a hundred such units, and the absolute bound covers values near zero (probabilities
//! of 1e-9 obtained as differences), where a relative bound means nothing.
//!
//! Besides converted models, the fixtures hold single ai.onnx.ml operators at their edges
//! (`edge_*`) and models that must be refused with a given one-line reason (`refused_*`).
//!
//! Models that need the tree-ensemble operators (`needs_trees` in their JSON) are reported
//! apart and do not fail this test until those operators are in; every other model must be
//! served, and right.

use onnx_serve::engine::{Model, RunError};
use onnx_serve::tensor::ClassLabels;
use onnx_serve::tensor::{DataType, Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

const F32_RELATIVE: f64 = 1e-5;
const F32_ABSOLUTE: f64 = 1e-6;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tabular")
}

struct Fixture {
    name: String,
    json: Value,
}

impl Fixture {
    fn needs_trees(&self) -> bool {
        self.json["needs_trees"].as_bool().unwrap_or(false)
    }

    fn model_path(&self) -> PathBuf {
        fixtures_dir().join(self.json["model"].as_str().expect("model"))
    }
}

fn fixtures() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/tabular")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Fixture {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            json: serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
        })
        .collect()
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// A float from the fixture: a number, or "NaN", "Infinity", "-Infinity".
fn float(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

/// A fixture tensor's shape.
fn shape_of(json: &Value) -> Vec<usize> {
    json["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn tensor_of(json: &Value) -> Tensor {
    let shape = shape_of(json);
    let values = json["data"].as_array().unwrap();
    let data = match json["datatype"].as_str().unwrap() {
        "FP32" => TensorData::Fp32(values.iter().map(|v| float(v) as f32).collect()),
        "FP64" => TensorData::Fp64(values.iter().map(float).collect()),
        "INT64" => TensorData::Int64(values.iter().map(|v| v.as_i64().unwrap()).collect()),
        "INT32" => TensorData::Int32(values.iter().map(|v| v.as_i64().unwrap() as i32).collect()),
        "BYTES" => TensorData::Bytes(
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
        ),
        other => panic!("datatype {other} in a fixture"),
    };
    Tensor::new(shape, data).unwrap()
}

fn close_f32(got: f64, expected: f64) -> bool {
    (got.is_nan() && expected.is_nan())
        || got == expected
        || (got - expected).abs() <= F32_ABSOLUTE + F32_RELATIVE * expected.abs()
}

/// Why `got` is not onnxruntime's `expected`, if it is not.
fn difference(got: &Tensor, expected: &Tensor) -> Option<String> {
    if got.datatype() != expected.datatype() {
        return Some(format!(
            "datatype {} instead of {}",
            got.datatype(),
            expected.datatype()
        ));
    }
    if got.shape != expected.shape {
        return Some(format!(
            "shape {:?} instead of {:?}",
            got.shape, expected.shape
        ));
    }
    let mismatch =
        |i: usize, g: String, e: String| Some(format!("element {i}: {g} instead of {e}"));
    match (&got.data, &expected.data) {
        (TensorData::Fp32(g), TensorData::Fp32(e)) => g
            .iter()
            .zip(e)
            .enumerate()
            .find(|(_, (g, e))| !close_f32(f64::from(**g), f64::from(**e)))
            .and_then(|(i, (g, e))| mismatch(i, g.to_string(), e.to_string())),
        (g, e) if g == e => None,
        (g, e) => Some(format!("{g:?} instead of {e:?}")),
    }
}

/// The fixture's ZipMap labels, as the signature should carry them.
fn map_keys_of(json: &Value) -> Option<ClassLabels> {
    let keys = json.get("map_keys")?;
    Some(match (keys.get("int64"), keys.get("strings")) {
        (Some(ints), _) => ClassLabels::Int64(
            ints.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect(),
        ),
        (_, Some(strings)) => ClassLabels::Strings(
            strings
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
        ),
        _ => panic!("map_keys without labels"),
    })
}

/// onnxruntime's list of maps against our probabilities in class order.
fn maps_difference(got: &Tensor, labels: &ClassLabels, maps: &[Value]) -> Option<String> {
    let TensorData::Fp32(values) = &got.data else {
        return Some("ZipMap output is not FP32".into());
    };
    let keys: Vec<String> = match labels {
        ClassLabels::Int64(l) => l.iter().map(i64::to_string).collect(),
        ClassLabels::Strings(l) => l.clone(),
    };
    let columns = keys.len();
    if values.len() != maps.len() * columns {
        return Some(format!(
            "{} probabilities for {} maps of {columns}",
            values.len(),
            maps.len()
        ));
    }
    for (row, map) in maps.iter().enumerate() {
        for (column, key) in keys.iter().enumerate() {
            let expected = float(&map[key]);
            let got = f64::from(values[row * columns + column]);
            if !close_f32(got, expected) {
                return Some(format!(
                    "row {row}, class {key}: {got} instead of {expected}"
                ));
            }
        }
    }
    None
}

enum Outcome {
    Right,
    Wrong(String),
    Refused(String),
}

fn check(fixture: &Fixture) -> Outcome {
    let loaded = Model::load(&fixture.model_path());
    // A model onnx-serve must refuse, in one line naming the operator.
    if let Some(expected) = fixture.json["expect_refusal"].as_str() {
        return match loaded {
            Err(e) if e.0.contains(expected) && !e.0.contains('\n') => Outcome::Right,
            Err(e) => Outcome::Wrong(format!("refused, but not as expected: {e}")),
            Ok(_) => Outcome::Wrong("loaded a model it should refuse".into()),
        };
    }
    let model = match loaded {
        Ok(model) => model,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let signature = model.signature().clone();
    let mut inputs = vec![None; signature.inputs.len()];
    for json in fixture.json["inputs"].as_array().unwrap() {
        let name = json["name"].as_str().unwrap();
        let Some(index) = signature.input_index(name) else {
            return Outcome::Wrong(format!("no input named {name}"));
        };
        inputs[index] = Some(tensor_of(json));
    }
    let Some(inputs) = inputs.into_iter().collect::<Option<Vec<Tensor>>>() else {
        return Outcome::Wrong("the fixture lacks an input".into());
    };
    if let Err(e) = signature.check_inputs(&inputs) {
        return Outcome::Wrong(format!("inputs rejected: {e}"));
    }
    let outputs = match model.run(inputs, None) {
        Ok(outputs) => outputs,
        Err(e) => return Outcome::Wrong(format!("run failed: {e:?}")),
    };
    for json in fixture.json["outputs"].as_array().unwrap() {
        let name = json["name"].as_str().unwrap();
        let Some(index) = signature.output_index(name) else {
            return Outcome::Wrong(format!("no output named {name}"));
        };
        let spec = &signature.outputs[index];
        let got = &outputs[index];
        if spec.datatype != got.datatype() {
            return Outcome::Wrong(format!(
                "output {name}: signature says {}, run gave {}",
                spec.datatype,
                got.datatype()
            ));
        }
        if let Some(why) = difference(got, &tensor_of(json)) {
            return Outcome::Wrong(format!("output {name}: {why}"));
        }
        let expected_keys = map_keys_of(json);
        if spec.map_keys != expected_keys {
            return Outcome::Wrong(format!(
                "output {name}: map keys {:?} instead of {expected_keys:?}",
                spec.map_keys
            ));
        }
        if let (Some(labels), Some(maps)) = (&expected_keys, json["maps"].as_array())
            && let Some(why) = maps_difference(got, labels, maps)
        {
            return Outcome::Wrong(format!("output {name} as maps: {why}"));
        }
    }
    Outcome::Right
}

#[test]
fn every_tabular_model_answers_like_onnxruntime() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "only {} fixtures", fixtures.len());
    let mut failures = vec![];
    let mut trees_pending = vec![];
    for fixture in &fixtures {
        let kind = fixture.json["kind"].as_str().unwrap_or_default();
        let (status, detail) = match check(fixture) {
            Outcome::Right => ("right", String::new()),
            Outcome::Wrong(why) => ("WRONG", why),
            Outcome::Refused(why) => ("refused", why),
        };
        println!("{:36} {status:8} {kind} {detail}", fixture.name);
        match (status, fixture.needs_trees()) {
            ("right", _) => {}
            (_, true) => trees_pending.push(fixture.name.clone()),
            (_, false) => failures.push(format!("{}: {status} {detail}", fixture.name)),
        }
    }
    if !trees_pending.is_empty() {
        println!(
            "\nwaiting for the tree-ensemble operators ({}): {}",
            trees_pending.len(),
            trees_pending.join(", ")
        );
    }
    assert!(
        failures.is_empty(),
        "{} models not served right:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A run on tensors the signature would have refused: an error, never a panic.
fn run_unchecked(model: &Model, inputs: Vec<Tensor>) -> String {
    match model.run(inputs, None) {
        Ok(_) => panic!("the model ran on bad input"),
        Err(RunError::Panicked(why)) => panic!("the model panicked: {why}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn a_wrong_feature_count_is_a_clear_error() {
    for name in [
        "svc_rbf_proba",
        "svr_rbf",
        "logreg_strings",
        "linear_regression",
        "pipeline_scaler_logreg",
        "pipeline_preprocessing_ridge",
    ] {
        let model = Model::load(&fixture(name).model_path()).unwrap();
        let features = model.signature().inputs[0].shape[1].as_i64() as usize;
        let short = Tensor::new(
            vec![2, features - 1],
            TensorData::Fp32(vec![0.5; 2 * (features - 1)]),
        )
        .unwrap();
        let message = model
            .signature()
            .check_inputs(std::slice::from_ref(&short))
            .unwrap_err();
        assert!(
            message.contains(&format!("dimension 1 must be {features}")),
            "{name}: {message}"
        );
        let error = run_unchecked(&model, vec![short]);
        assert!(!error.is_empty(), "{name}");
    }
}

#[test]
fn strings_where_numbers_go_are_a_clear_error() {
    for name in [
        "svc_rbf_proba",
        "logreg_multi",
        "pipeline_preprocessing_ridge",
    ] {
        let model = Model::load(&fixture(name).model_path()).unwrap();
        let features = model.signature().inputs[0].shape[1].as_i64() as usize;
        let strings = Tensor::new(
            vec![1, features],
            TensorData::Bytes(vec!["1.5".into(); features]),
        )
        .unwrap();
        let message = model
            .signature()
            .check_inputs(std::slice::from_ref(&strings))
            .unwrap_err();
        assert!(
            message.contains("expects datatype FP32, got BYTES"),
            "{name}: {message}"
        );
        run_unchecked(&model, vec![strings]);
    }
    // And numbers where strings go.
    let model = Model::load(&fixture("pipeline_column_transformer").model_path()).unwrap();
    let colour = model.signature().input_index("colour").unwrap();
    assert_eq!(model.signature().inputs[colour].datatype, DataType::Bytes);
    let mut inputs = vec![
        Tensor::new(vec![1, 1], TensorData::Fp32(vec![1.0])).unwrap(),
        Tensor::new(vec![1, 3], TensorData::Fp32(vec![1.0; 3])).unwrap(),
    ];
    if colour == 1 {
        inputs.swap(0, 1);
    }
    let message = model.signature().check_inputs(&inputs).unwrap_err();
    assert!(
        message.contains("expects datatype BYTES, got FP32"),
        "{message}"
    );
    run_unchecked(&model, inputs);
}

/// A fixture tensor as nested JSON lists following its shape.
fn nested(json: &Value) -> Value {
    let shape = shape_of(json);
    let flat = json["data"].as_array().unwrap();
    fn build(flat: &[Value], shape: &[usize]) -> Value {
        match shape.split_first() {
            None => flat.first().cloned().unwrap_or(Value::Null),
            Some((&n, inner)) => {
                let stride: usize = inner.iter().product();
                Value::Array(
                    (0..n)
                        .map(|i| build(&flat[i * stride..(i + 1) * stride], inner))
                        .collect(),
                )
            }
        }
    }
    build(flat, &shape)
}

/// The elements of nested JSON lists, in order.
fn flat(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![other.clone()],
    }
}

/// Why an answer over HTTP is not onnxruntime's `expected` output, if it is not: ZipMap
/// outputs as onnxruntime's Python API gives them (`maps`), the others element by element.
fn http_difference(got: &Value, expected: &Value, as_maps: bool) -> Option<String> {
    if as_maps && let Some(maps) = expected["maps"].as_array() {
        let got = got.as_array()?;
        if got.len() != maps.len() {
            return Some(format!("{} rows instead of {}", got.len(), maps.len()));
        }
        for (row, (g, e)) in got.iter().zip(maps).enumerate() {
            let (g, e) = (g.as_object()?, e.as_object().unwrap());
            if g.len() != e.len() {
                return Some(format!(
                    "row {row}: {} classes instead of {}",
                    g.len(),
                    e.len()
                ));
            }
            for (label, want) in e {
                let value = g.get(label).map(float);
                if !value.is_some_and(|v| close_f32(v, float(want))) {
                    return Some(format!(
                        "row {row}, class {label}: {value:?} instead of {want}"
                    ));
                }
            }
        }
        return None;
    }
    let (got, want) = (flat(got), expected["data"].as_array().unwrap().clone());
    if got.len() != want.len() {
        return Some(format!("{} elements instead of {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let same = match (g, w) {
            (Value::String(g), Value::String(w)) => g == w,
            (Value::String(_), _) | (_, Value::String(_)) if expected["datatype"] != "BYTES" => {
                close_f32(float(g), float(w))
            }
            _ if expected["datatype"] == "FP32" || expected["datatype"] == "FP64" => {
                close_f32(float(g), float(w))
            }
            _ => g == w,
        };
        if !same {
            return Some(format!("element {i}: {g} instead of {w}"));
        }
    }
    None
}

/// Each served model over a real socket, on every protocol: `/predict`, V2 JSON and V1
/// rows, against onnxruntime's answers (ZipMap outputs as maps on `/predict` and V1, as
/// the probability matrix on V2).
#[test]
fn every_tabular_model_answers_like_onnxruntime_over_http() {
    use crate::common::Server;
    use serde_json::json;
    let mut checked = 0;
    for fixture in fixtures() {
        if fixture.json.get("expect_refusal").is_some() {
            continue;
        }
        let name = &fixture.name;
        let server = Server::builder()
            .args(["--model", fixture.model_path().to_str().unwrap()])
            .args(["--model-name", "m"])
            .start();
        let inputs = fixture.json["inputs"].as_array().unwrap();
        let outputs = fixture.json["outputs"].as_array().unwrap();
        let by_name = |outputs: &Value, index: usize, spec: &Value| -> Value {
            match outputs {
                Value::Object(map) => map[spec["name"].as_str().unwrap()].clone(),
                one if index == 0 => one.clone(),
                _ => panic!("{name}: outputs {outputs}"),
            }
        };

        // /predict, columnar, every input by name.
        let body: serde_json::Map<String, Value> = inputs
            .iter()
            .map(|i| (i["name"].as_str().unwrap().to_owned(), nested(i)))
            .collect();
        let answer = server.predict(Value::Object(body)).outputs();
        for (index, expected) in outputs.iter().enumerate() {
            let got = by_name(&answer, index, expected);
            if let Some(why) = http_difference(&got, expected, true) {
                panic!("{name}: /predict, output {}: {why}", expected["name"]);
            }
        }

        // V2 JSON: flat data, every output as a tensor.
        let v2_inputs: Vec<Value> = inputs
            .iter()
            .map(|i| json!({"name": i["name"], "datatype": i["datatype"], "shape": i["shape"], "data": i["data"]}))
            .collect();
        let reply = server.post_json("/v2/models/m/infer", &json!({"inputs": v2_inputs}));
        assert_eq!(reply.status, 200, "{name}: V2: {}", reply.text());
        let answer = reply.json();
        for expected in outputs {
            let got = answer["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == expected["name"])
                .unwrap_or_else(|| panic!("{name}: V2 has no output {}", expected["name"]));
            assert_eq!(
                got["shape"], expected["shape"],
                "{name}: V2 {}",
                expected["name"]
            );
            if let Some(why) = http_difference(&got["data"], expected, false) {
                panic!("{name}: V2, output {}: {why}", expected["name"]);
            }
        }

        // V1 rows: one instance per row; with several inputs, an object per row.
        let rows = inputs[0]["shape"][0].as_u64().unwrap() as usize;
        let instances: Vec<Value> = (0..rows)
            .map(|row| {
                let row_of = |input: &Value| nested(input)[row].clone();
                match inputs.as_slice() {
                    [one] => row_of(one),
                    many => Value::Object(
                        many.iter()
                            .map(|i| (i["name"].as_str().unwrap().to_owned(), row_of(i)))
                            .collect(),
                    ),
                }
            })
            .collect();
        let reply = server.post_json("/v1/models/m:predict", &json!({"instances": instances}));
        assert_eq!(reply.status, 200, "{name}: V1: {}", reply.text());
        let predictions = reply.json()["predictions"].clone();
        for (index, expected) in outputs.iter().enumerate() {
            let got = match outputs.len() {
                1 => predictions.clone(),
                _ => Value::Array(
                    predictions
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|row| by_name(row, index, expected))
                        .collect(),
                ),
            };
            if let Some(why) = http_difference(&got, expected, true) {
                panic!("{name}: V1, output {}: {why}", expected["name"]);
            }
        }
        checked += 1;
    }
    assert!(checked >= 70, "only {checked} models served");
}

/// Bad input to these models over HTTP: a clear 400 naming the input, and the server goes
/// on serving.
#[test]
fn bad_input_to_tabular_models_is_a_clear_400() {
    use crate::common::Server;
    use serde_json::json;
    let server = Server::builder()
        .args([
            "--model",
            fixture("svc_rbf_proba").model_path().to_str().unwrap(),
        ])
        .start();
    let features = server.get("/").json()["inputs"][0]["shape"][1]
        .as_u64()
        .unwrap() as usize;
    for (body, message) in [
        (
            json!([vec![0.5; features - 1]]),
            format!("dimension 1 must be {features}"),
        ),
        (
            json!([vec!["1.5"; features]]),
            "expected a number".to_owned(),
        ),
        (json!([[[0.5]]]), "expects 2-dimensional shape".to_owned()),
    ] {
        let reply = server.predict(body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.error().contains(&message), "{}", reply.error());
    }
    // Unknown categories of a one-hot encoded column are answered as onnxruntime does (all
    // zeros), and numbers where its strings go are a 400.
    let server = Server::builder()
        .args([
            "--model",
            fixture("pipeline_column_transformer")
                .model_path()
                .to_str()
                .unwrap(),
        ])
        .start();
    let reply = server.predict(json!({"colour": [["purple"]], "size": [[1.0, 2.0, 3.0]]}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = server.predict(json!({"colour": [[1.5]], "size": [[1.0, 2.0, 3.0]]}));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error().contains("colour"), "{}", reply.error());
    assert_eq!(server.get("/healthz").status, 200);
}
