//! `POST /predict` over a real socket: answers of the bundled model against onnxruntime's,
//! every datatype, several inputs and outputs, symbolic dimensions, and the errors.

use crate::common;

use common::{Server, argmax, concurrent_clients, fixture, read_json, row};
use serde_json::{Value, json};

fn holdout() -> Value {
    read_json(&fixture("digits_holdout.json"))
}

#[test]
fn the_readme_example_classifies_one_digit() {
    let server = Server::digits();
    let body = std::fs::read(fixture("digit.json")).unwrap();
    let reply = server.post("/predict", &body);
    let outputs = reply.outputs();
    let rows = outputs.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let probabilities = row(&rows[0]);
    assert_eq!(probabilities.len(), 10);
    assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    let label = holdout()["labels"][0].as_u64().unwrap() as usize;
    assert_eq!(argmax(&probabilities), label);
}

#[test]
fn hold_out_accuracy_over_http_equals_the_scripts() {
    let server = Server::digits();
    let data = holdout();
    let inputs = data["inputs"].as_array().unwrap();
    let labels: Vec<usize> = data["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let reference = data["probabilities"].as_array().unwrap();

    // In one batch, then in batches of 7 (a ragged last batch included).
    let whole = server.predict(json!(inputs)).outputs();
    let mut batched = Vec::new();
    for chunk in inputs.chunks(7) {
        batched.extend(
            server
                .predict(json!(chunk))
                .outputs()
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    // And four times over in one body of 690 KB, which a lone request reads on all cores.
    let four_times: Vec<&Value> = inputs.iter().cycle().take(4 * inputs.len()).collect();
    let four_times = server.predict(json!(four_times)).outputs();
    let quarters = four_times.as_array().unwrap().chunks(inputs.len());
    assert_eq!(quarters.len(), 4);
    let mut answers = vec![whole.as_array().unwrap().clone(), batched];
    answers.extend(quarters.map(|quarter| quarter.to_vec()));
    for predicted in answers {
        assert_eq!(predicted.len(), labels.len());
        let mut correct = 0;
        let mut max_diff: f64 = 0.0;
        for ((p, label), r) in predicted.iter().zip(&labels).zip(reference) {
            let (p, r) = (row(p), row(r));
            correct += usize::from(argmax(&p) == *label);
            for (a, b) in p.iter().zip(&r) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
        let accuracy = correct as f64 / labels.len() as f64;
        assert!(
            (accuracy - data["accuracy"].as_f64().unwrap()).abs() < 1e-12,
            "accuracy {accuracy}"
        );
        assert!(max_diff < 1e-5, "max |tract - onnxruntime| = {max_diff}");
    }
}

#[test]
fn thirty_two_concurrent_clients_each_get_their_own_answers() {
    // Each client sends different rows, several times, over its own connection: a mix-up
    // between requests sharing the plan would show as another row's probabilities.
    let server = Server::builder().args(["--workers", "4"]).start();
    let data = holdout();
    concurrent_clients(32, |client| {
        for round in 0..5 {
            let start = (client * 5 + round) * 2 % 440;
            let rows = &data["inputs"].as_array().unwrap()[start..start + 1 + client % 3];
            let outputs = server.predict(json!(rows)).outputs();
            let outputs = outputs.as_array().unwrap();
            assert_eq!(outputs.len(), rows.len(), "client {client}");
            for (i, got) in outputs.iter().enumerate() {
                let expected = row(&data["probabilities"][start + i]);
                let diff = row(got)
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    diff < 1e-5,
                    "client {client} round {round} row {}: off by {diff}",
                    start + i
                );
            }
        }
    });
}

#[test]
fn every_datatype_round_trips_exactly() {
    let server = Server::with_model("dtypes.onnx");
    let inputs = json!({
        "in_bool": [true, false],
        "in_uint8": [0, 255],
        "in_uint16": [0, 65535],
        "in_uint32": [0, 4294967295u64],
        "in_uint64": [0, 18446744073709551615u64],
        "in_int8": [-128, 127],
        "in_int16": [-32768, 32767],
        "in_int32": [-2147483648i64, 2147483647],
        "in_int64": [-9223372036854775808i64, 9223372036854775807i64],
        "in_fp16": [0.5, -65504.0],
        "in_fp32": [0.1, 3.4028234663852886e38],
        "in_fp64": [1e-300, 0.1],
        "in_string": ["hello", "é \"quoted\"\n"],
    });
    let reply = server.predict(inputs.clone());
    let text = reply.text();
    // 64-bit integers must survive as written, not through a float.
    assert!(text.contains("18446744073709551615"), "{text}");
    assert!(text.contains("-9223372036854775808"), "{text}");
    let outputs = reply.outputs();
    for (name, sent) in inputs.as_object().unwrap() {
        let out = &outputs[name.replace("in_", "out_")];
        if name == "in_fp32" || name == "in_fp16" {
            // float32/float16 text is the shortest that reads back to the same value.
            let sent: Vec<f64> = sent
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got: Vec<f64> = out
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (s, g) in sent.iter().zip(&got) {
                if name == "in_fp32" {
                    assert_eq!(*s as f32, *g as f32, "{name}");
                } else {
                    assert_eq!(s, g, "{name}");
                }
            }
        } else {
            assert_eq!(out, sent, "{name}");
        }
    }
}

#[test]
fn numbers_that_do_not_fit_the_input_type_are_refused() {
    let server = Server::with_model("int_bool.onnx");
    let mask = json!([[true, false, true, false]]);
    let cases = [
        (json!([[1, 2, 3, 1.5]]), "1.5 is not an integer"),
        (json!([[1, 2, 3, "4"]]), "expected a number"),
        (
            json!([[1, 2, 3, 9223372036854775808u64]]),
            "out of range for INT64",
        ),
    ];
    for (ids, expected) in cases {
        let reply = server.predict(json!({"ids": ids, "mask": mask}));
        assert_eq!(reply.status, 400);
        let message = reply.error();
        assert!(
            message.contains("input 'ids'") && message.contains(expected),
            "{message}"
        );
    }
    let reply = server.predict(json!({"ids": [[1, 2, 3, 4]], "mask": [[1, 0, 1, 0]]}));
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("expected true or false for BOOL"));

    let dtypes = Server::with_model("dtypes.onnx");
    let mut inputs = json!({
        "in_bool": [true], "in_uint8": [300], "in_uint16": [0], "in_uint32": [0], "in_uint64": [0],
        "in_int8": [0], "in_int16": [0], "in_int32": [0], "in_int64": [0], "in_fp16": [0],
        "in_fp32": [0], "in_fp64": [0], "in_string": ["x"],
    });
    let reply = dtypes.predict(inputs.clone());
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .error()
            .contains("input 'in_uint8': 300 is out of range for UINT8 (0 to 255)")
    );
    inputs["in_uint8"] = json!([0]);
    inputs["in_fp16"] = json!([70000]);
    assert!(
        dtypes
            .predict(inputs)
            .error()
            .contains("out of range for FP16")
    );
}

#[test]
fn int64_and_bool_inputs_and_outputs() {
    let server = Server::with_model("int_bool.onnx");
    let ids = [[10i64, -20, 30, i64::MAX], [1, 2, 3, 4]];
    let mask = [[true, false, true, true], [false, false, false, true]];
    let outputs = server.predict(json!({"ids": ids, "mask": mask})).outputs();
    let expected_masked: Vec<Vec<i64>> = ids
        .iter()
        .zip(&mask)
        .map(|(i, m)| {
            i.iter()
                .zip(m)
                .map(|(&v, &keep)| if keep { v } else { -1 })
                .collect()
        })
        .collect();
    let expected_inverted: Vec<Vec<bool>> = mask
        .iter()
        .map(|m| m.iter().map(|b| !b).collect())
        .collect();
    assert_eq!(outputs["masked"], json!(expected_masked));
    assert_eq!(outputs["inverted"], json!(expected_inverted));
}

#[test]
fn several_inputs_and_outputs_go_by_name() {
    let server = Server::with_model("two_io.onnx");
    let a = [[1.0, 2.0, 3.0], [-1.5, 0.0, 4.25]];
    let b = [[0.5, 0.5, 0.5], [2.0, 3.0, -1.0]];
    let outputs = server.predict(json!({"a": a, "b": b})).outputs();
    let zip = |f: fn(f64, f64) -> f64| -> Vec<Vec<f64>> {
        a.iter()
            .zip(&b)
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| f(*p, *q)).collect())
            .collect()
    };
    assert_eq!(outputs["sum"], json!(zip(|p, q| p + q)));
    assert_eq!(outputs["product"], json!(zip(|p, q| p * q)));

    let reply = server.predict(json!(a));
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("the model has 2 inputs (a, b)"));
    let reply = server.predict(json!({"a": a}));
    assert!(reply.error().contains("missing input(s): b"));
    let reply = server.predict(json!({"a": a, "b": b, "c": b}));
    assert!(reply.error().contains("no input 'c'; its inputs are a, b"));
    let reply = server.predict(json!({"a": a, "b": [[1.0, 2.0, 3.0]]}));
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .error()
            .contains("input 'b' has batch = 1 but input 'a' has batch = 2")
    );
}

#[test]
fn non_finite_floats_travel_as_strings_both_ways() {
    let server = Server::with_model("two_io.onnx");
    let outputs = server
        .predict(json!({"a": [["NaN", "Infinity", 1.0]], "b": [[1.0, "-Infinity", "-Infinity"]]}))
        .outputs();
    assert_eq!(outputs["sum"], json!([["NaN", "NaN", "-Infinity"]]));
    assert_eq!(
        outputs["product"],
        json!([["NaN", "-Infinity", "-Infinity"]])
    );
}

#[test]
fn symbolic_dimensions_are_bound_per_request() {
    let server = Server::with_model("seq.onnx");
    for x in [
        json!([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        json!([[1.5, -2.0]]),
        json!([[7.0]]),
    ] {
        let outputs = server.predict(x.clone()).outputs();
        let rows: Vec<Vec<f64>> = x.as_array().unwrap().iter().map(row).collect();
        let doubled: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().map(|v| v * 2.0).collect())
            .collect();
        let total: Vec<f64> = rows.iter().map(|r| r.iter().sum()).collect();
        assert_eq!(outputs["doubled"], json!(doubled));
        assert_eq!(outputs["total"], json!(total));
    }
}

#[test]
fn a_fixed_batch_of_one_is_enforced() {
    let server = Server::with_model("fixed.onnx");
    assert_eq!(
        server.predict(json!([[1.0, 2.0, 3.0, 4.0]])).outputs(),
        json!([[2.0, 3.0, 4.0, 5.0]])
    );
    let reply = server.predict(json!([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]));
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.error(),
        "input 'x' expects shape [1, 4], got [2, 4]: dimension 0 must be 1"
    );
}

#[test]
fn an_input_dimension_without_a_name_is_still_variable() {
    let server = Server::with_model("open_dim.onnx");
    let summary = server.get("/").json();
    assert_eq!(summary["inputs"][0]["shape"], json!([-1, 3]));
    let outputs = server
        .predict(json!([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]]))
        .outputs();
    assert_eq!(outputs, json!([[0.0, 2.0, 0.0], [4.0, 0.0, 6.0]]));
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::digits();
    let good = std::fs::read(fixture("digit.json")).unwrap();
    let expected = server.post("/predict", &good).outputs();
    let row64 = vec![0.5; 64];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"inputs\": [[1, 2".to_vec(), "malformed JSON"),
        (b"".to_vec(), "malformed JSON"),
        (b"[1, 2, 3]".to_vec(), "expected an object"),
        (
            b"{\"instances\": []}".to_vec(),
            "the body has no \"inputs\"",
        ),
        (br#"{"inputs": [[1, 2], [3]]}"#.to_vec(), "ragged"),
        (br#"{"inputs": [[1, [2]]]}"#.to_vec(), "ragged"),
        (
            serde_json::to_vec(&json!({"inputs": row64})).unwrap(),
            "wrap it in one more list",
        ),
        (
            serde_json::to_vec(&json!({"inputs": [vec![0.5; 63]]})).unwrap(),
            "expects shape [batch, 64], got [1, 63]",
        ),
        (
            serde_json::to_vec(&json!({"inputs": [[vec![0.5; 64]]]})).unwrap(),
            "expects 2-dimensional shape",
        ),
        (
            serde_json::to_vec(&json!({"inputs": [vec!["a"; 64]]})).unwrap(),
            "expected a number for FP32",
        ),
        (
            serde_json::to_vec(&json!({"inputs": {"pixels": [row64]}})).unwrap(),
            "no input 'pixels'",
        ),
        (b"{\"inputs\": [[1e999]]}".to_vec(), "malformed JSON"),
        (vec![0xff, 0xfe, b'{'], "malformed JSON"),
        (
            format!("{{\"inputs\": {}}}", "[".repeat(100_000)).into_bytes(),
            "nested deeper",
        ),
    ];
    for (body, expected_message) in cases {
        let reply = server.post("/predict", &body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        let message = reply.error();
        assert!(
            message.contains(expected_message),
            "expected {expected_message:?} in {message:?}"
        );
        assert!(
            message.len() < 400,
            "the message must not echo the payload: {message}"
        );
        assert_eq!(
            server.post("/predict", &good).outputs(),
            expected,
            "still serving"
        );
    }
}

#[test]
fn a_panic_inside_the_model_is_a_500_and_every_worker_survives() {
    let server = Server::builder()
        .args([
            "--model",
            &common::fixture_model("gather_oob.onnx"),
            "--workers",
            "2",
        ])
        .start();
    // More panics than workers: if a panic killed a worker, a later request would hang.
    for _ in 0..6 {
        let reply = server.predict(json!([7]));
        assert_eq!(reply.status, 500);
        let message = reply.error();
        assert!(message.contains("the model panicked"), "{message}");
        assert_eq!(
            server.predict(json!([1, 4])).outputs(),
            json!([[3.0, 4.0, 5.0], [12.0, 13.0, 14.0]])
        );
    }
    assert!(server.log().contains("panicked"), "the panic is logged");
}
