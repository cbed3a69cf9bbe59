//! Models whose free input sizes tract cannot analyse symbolically (made the way detectors
//! are, by `tests/fixtures/make_free_size_models.py`): the server starts, builds a plan per
//! input shape on first use, answers as onnxruntime does at every size, keeps at most
//! `--plan-cache` plans, builds one at a time, and counts them in `/metrics`.

use crate::common::{Server, binary, fixture, fixture_model, read_json};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

/// onnxruntime's answers at several sizes: (input, output name, output) per case.
fn cases(model: &str) -> Vec<(Value, String, Vec<f64>)> {
    let answers = read_json(&fixture("free_size_answers.json"));
    answers[model]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let (name, output) = case["outputs"].as_object().unwrap().iter().next().unwrap();
            (case["input"].clone(), name.clone(), flatten(output))
        })
        .collect()
}

fn flatten(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        number => vec![number.as_f64().unwrap()],
    }
}

fn assert_close(got: &[f64], expected: &[f64], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: element count");
    for (ix, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= 1e-5 + 1e-4 * e.abs(),
            "{what}: element {ix} is {g}, onnxruntime says {e}"
        );
    }
}

fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut value = value;
    while let Value::Array(items) = value {
        shape.push(items.len());
        match items.first() {
            Some(first) => value = first,
            None => break,
        }
    }
    shape
}

/// A server for `model` without the warm-up run, whose plan (for sizes of 1) would count
/// among the plans built here.
fn without_warm_up(model: &str) -> Server {
    Server::builder()
        .args(["--model", &fixture_model(model), "--warmup", "0"])
        .start()
}

#[test]
fn a_detector_that_fails_symbolic_analysis_is_served_at_every_size() {
    let server = without_warm_up("pyramid.onnx");
    // Log lines reach the log a moment after they are written.
    assert!(
        server.wait_for_log(
            "a plan is built for each new input shape",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    // The signature keeps its free sizes.
    let summary = server.get("/").json();
    assert_eq!(summary["inputs"][0]["shape"], json!([1, 3, -1, -1]));
    assert_eq!(summary["outputs"][0]["shape"], json!([1, -1, 8]));
    for (input, name, expected) in cases("pyramid") {
        let what = format!("pyramid at {:?}", shape_of(&input));
        let got = flatten(&server.predict(input.clone()).outputs());
        assert_close(&got, &expected, &what);
        // The same over V2, and again from the cached plan.
        let v2 = server.post_json(
            "/v2/models/pyramid/infer",
            &json!({"inputs": [{"name": "image", "datatype": "FP32",
                    "shape": shape_of(&input), "data": input}]}),
        );
        assert_eq!(v2.status, 200, "{what}: {}", v2.text());
        assert_eq!(v2.json()["outputs"][0]["name"], name);
        assert_close(&flatten(&v2.json()["outputs"][0]["data"]), &expected, &what);
    }
    assert_eq!(server.metric("onnx_serve_plans_built_total"), 3.0);
    assert!(server.metric("onnx_serve_plan_build_seconds_total") > 0.0);
    assert_eq!(server.metric("onnx_serve_plans_cached"), 3.0);
    // Each shape's plan is built once, and logged (lines reach the log a moment later).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let built = || {
        server
            .log()
            .matches("built a plan for input shapes")
            .count()
    };
    while built() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(built(), 3, "{}", server.log());
}

#[test]
fn shape_dependent_if_branches_are_served_once_sizes_are_concrete() {
    let server = Server::with_model("shape_if.onnx");
    // Lengths above 32 take the max-pool branch (by 4), the others the average (by 2).
    for (input, _, expected) in cases("shape_if") {
        let what = format!("shape_if at {:?}", shape_of(&input));
        let got = flatten(&server.predict(input).outputs());
        assert_close(&got, &expected, &what);
    }
}

#[test]
fn concurrent_clients_at_several_sizes_all_get_their_own_answers() {
    let server = without_warm_up("pyramid.onnx");
    let cases = cases("pyramid");
    let results = crate::common::concurrent_clients(12, |client| {
        let (input, _, expected) = &cases[client % cases.len()];
        let got = flatten(&server.predict(input.clone()).outputs());
        assert_close(&got, expected, &format!("client {client}"));
    });
    assert_eq!(results.len(), 12);
    assert_eq!(server.metric("onnx_serve_plans_built_total"), 3.0);
}

#[test]
fn a_client_cycling_through_sizes_cannot_grow_the_cache_past_its_bound() {
    let server = Server::builder()
        .args([
            "--model",
            &fixture_model("pyramid.onnx"),
            "--plan-cache",
            "2",
            "--warmup",
            "0",
        ])
        .start();
    // Twelve sizes, each new: every request builds a plan, and the cache keeps two.
    for step in 1..=12 {
        let side = 32 * step;
        let image = vec![vec![vec![vec![0.5f32; side]; 32]; 3]];
        let reply = server.predict(json!(image));
        assert_eq!(reply.status, 200, "32x{side}: {}", reply.text());
        assert_eq!(shape_of(&reply.outputs()), vec![1, 4 * step, 8]);
    }
    assert_eq!(server.metric("onnx_serve_plans_built_total"), 12.0);
    assert_eq!(server.metric("onnx_serve_plans_cached"), 2.0);
    // A size whose plan cannot be built (the branches disagree) is a clear error, and is
    // not built again on the next request.
    let odd = vec![vec![vec![vec![0.5f32; 40]; 40]; 3]];
    for _ in 0..2 {
        let reply = server.predict(json!(odd));
        assert_eq!(reply.status, 500);
        assert!(
            reply
                .error()
                .contains("tract cannot run the model on inputs of shapes [[1, 3, 40, 40]]"),
            "{}",
            reply.error()
        );
    }
    assert_eq!(server.metric("onnx_serve_plans_built_total"), 13.0);
    // And the server still serves.
    let (input, _, expected) = &cases("pyramid")[0];
    assert_close(
        &flatten(&server.predict(input.clone()).outputs()),
        expected,
        "after",
    );
}

#[test]
fn input_shape_fixes_sizes_at_start_up() {
    let server = Server::builder()
        .args(["--model", &fixture_model("pyramid.onnx")])
        .args(["--input-shape", "image=1,3,64,96"])
        .start();
    assert!(
        !server
            .log()
            .contains("a plan is built for each new input shape")
    );
    let summary = server.get("/").json();
    assert_eq!(summary["inputs"][0]["shape"], json!([1, 3, 64, 96]));
    let (input, _, expected) = &cases("pyramid")[1];
    assert_eq!(shape_of(input), vec![1, 3, 64, 96]);
    assert_close(
        &flatten(&server.predict(input.clone()).outputs()),
        expected,
        "fixed",
    );
    // Another size no longer fits the signature.
    let (other, _, _) = &cases("pyramid")[0];
    let reply = server.predict(other.clone());
    assert_eq!(reply.status, 400);
    assert!(
        reply.error().contains("dimension 2 must be 64"),
        "{}",
        reply.error()
    );
}

#[test]
fn bad_input_shapes_stop_start_up_with_one_line() {
    let model = fixture_model("pyramid.onnx");
    for (flag, message) in [
        (
            "picture=1,3,64,64",
            "the model has no such input; its inputs are image",
        ),
        ("image=1,3,64", "the input has 4 dimensions, not 3"),
        ("image=2,3,64,64", "dimension 0 is 1 in the model, not 2"),
    ] {
        let output = Command::new(binary())
            .args(["inspect", "--model", &model, "--input-shape", flag])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(message), "{flag}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{flag}: {stderr}");
    }
    // A value that is no shape at all is refused by the command line parser.
    let output = Command::new(binary())
        .args([
            "inspect",
            "--model",
            &model,
            "--input-shape",
            "image=1,3,64,x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dimensions are positive whole numbers"),
        "{stderr}"
    );
}

#[test]
fn the_one_shot_commands_work_on_such_models_without_flags() {
    let model = fixture_model("pyramid.onnx");
    let inspect = Command::new(binary())
        .args(["inspect", "--model", &model])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let signature: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(signature["inputs"][0]["shape"], json!([1, 3, -1, -1]));

    let (input, _, expected) = &cases("pyramid")[2];
    let mut predict = Command::new(binary())
        .args(["predict", "--model", &model])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = serde_json::to_vec(&json!({"inputs": input})).unwrap();
    use std::io::Write;
    predict.stdin.take().unwrap().write_all(&body).unwrap();
    let output = predict.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_close(&flatten(&answer["outputs"]), expected, "predict");
}
