//! ONNX backend test models (tests/conformance/cases) served over a real socket: every
//! output under the name the graph declares, and a zero-size input sent as nested JSON.

use crate::common;

use common::{Server, repo};
use serde_json::{Value, json};

fn serve_case(case: &str) -> Server {
    let model = repo()
        .join("tests/conformance/cases")
        .join(format!("{case}.onnx"));
    Server::builder()
        .args([
            "--model",
            &model.display().to_string(),
            "--model-name",
            "case",
        ])
        .start()
}

/// Tensors by name, as nested JSON lists.
type Named = Vec<(String, Value)>;

/// A case's FP32 inputs and outputs, from its `.tensors` file
/// (tests/conformance/make_cases.py gives the format).
fn case_tensors(case: &str) -> (Named, Named) {
    let file =
        std::fs::read(repo().join(format!("tests/conformance/cases/{case}.tensors"))).unwrap();
    let newline = file.iter().position(|&b| b == b'\n').unwrap();
    let header: Value = serde_json::from_slice(&file[..newline]).unwrap();
    let mut data = &file[newline + 1..];
    let mut read = |values: &Value| -> Named {
        (values.as_array().unwrap().iter())
            .map(|value| {
                assert_eq!(value["datatype"], "FP32");
                let (bytes, rest) = data.split_at(value["bytes"].as_u64().unwrap() as usize);
                data = rest;
                let numbers: Vec<f32> = (bytes.chunks_exact(4))
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                let shape: Vec<usize> = (value["shape"].as_array().unwrap().iter())
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                (
                    value["name"].as_str().unwrap().to_owned(),
                    nest(&numbers, &shape),
                )
            })
            .collect()
    };
    (read(&header["inputs"]), read(&header["outputs"]))
}

fn nest(numbers: &[f32], shape: &[usize]) -> Value {
    match shape.split_first() {
        None => json!(numbers[0]),
        Some((&len, inner)) => {
            let size = numbers.len().checked_div(len).unwrap_or(0);
            Value::Array(
                (0..len)
                    .map(|i| nest(&numbers[i * size..(i + 1) * size], inner))
                    .collect(),
            )
        }
    }
}

fn flatten(value: &Value, out: &mut Vec<f64>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        number => out.push(number.as_f64().unwrap()),
    }
}

#[test]
fn present_key_and_value_come_back_under_the_graphs_output_names() {
    // tract rewires an Attention node's present_key and present_value outputs to nodes of
    // its own naming; the answer must still use the graph's names.
    let case = "test_attention_4d_with_past_and_present_expanded";
    let server = serve_case(case);
    let summary = server.get("/").json();
    let names: Vec<&str> = (summary["outputs"].as_array().unwrap().iter())
        .map(|output| output["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Y", "present_key", "present_value"]);

    let (inputs, expected) = case_tensors(case);
    let inputs: serde_json::Map<String, Value> = inputs.into_iter().collect();
    let outputs = server.predict(Value::Object(inputs)).outputs();
    for (name, expected) in expected {
        let (mut got, mut want) = (vec![], vec![]);
        flatten(&outputs[&name], &mut got);
        flatten(&expected, &mut want);
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
                "{name}: {g} instead of {w}"
            );
        }
    }
}

#[test]
fn a_zero_size_input_is_sent_as_empty_nested_lists() {
    // Tril over an INT64 [3, 0, 5] tensor: `[[], [], []]` cannot say the 5, the model does.
    let server = serve_case("test_tril_zero_with_constants");
    let summary = server.get("/").json();
    assert_eq!(summary["inputs"][0]["shape"], json!([3, 0, 5]));

    let reply = server.predict(json!([[], [], []]));
    assert_eq!(reply.outputs(), json!([[], [], []]));

    let v2 = server.post_json(
        "/v2/models/case/infer",
        &json!({"inputs": [{"name": "x", "datatype": "INT64", "shape": [3, 0, 5], "data": []}]}),
    );
    assert_eq!(v2.status, 200, "{}", v2.text());
    let output = &v2.json()["outputs"][0];
    assert_eq!(
        (&output["name"], &output["shape"]),
        (&json!("y"), &json!([3, 0, 5]))
    );
    assert_eq!(output["data"], json!([]));

    // Sizes that disagree with the model's are still refused, by the signature check.
    let reply = server.predict(json!([[], []]));
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("input 'x'"), "{}", reply.error());
}
