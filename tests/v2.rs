//! The Open Inference Protocol (KServe V2 / Triton) over a real socket: metadata, health,
//! config, and `infer` with JSON and binary tensors both ways, against onnxruntime's
//! answers, for every datatype, and the errors.

use crate::common;

use common::{Reply, Server, exchange, fixture, read_json, row};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

fn holdout() -> Value {
    read_json(&fixture("digits_holdout.json"))
}

/// The first `n` hold-out rows, flat, and onnxruntime's probabilities for them.
fn digits_rows(n: usize) -> (Vec<f32>, Vec<f64>) {
    let data = holdout();
    let flat = |key: &str| -> Vec<f64> {
        data[key].as_array().unwrap()[..n]
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect()
    };
    let inputs = flat("inputs").into_iter().map(|v| v as f32).collect();
    (inputs, flat("probabilities"))
}

fn max_diff(got: &[f64], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_values(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect()
}

/// A binary request: the JSON header, then the raw data.
fn binary_body(header: &Value, raw: &[u8]) -> (Vec<u8>, String) {
    let mut body = serde_json::to_vec(header).unwrap();
    let length = body.len().to_string();
    body.extend_from_slice(raw);
    (body, length)
}

fn post_binary(server: &Server, path: &str, header: &Value, raw: &[u8]) -> Reply {
    let (body, length) = binary_body(header, raw);
    server.post_with(path, &[(HEADER_LENGTH, &length)], &body)
}

/// A binary response: its JSON header, and each output's raw bytes by name.
fn split_binary(reply: &Reply) -> (Value, Vec<(String, Vec<u8>)>) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/octet-stream")
    );
    let length: usize = reply.header(HEADER_LENGTH).unwrap().parse().unwrap();
    let header: Value = serde_json::from_slice(&reply.body[..length]).unwrap();
    let mut rest = &reply.body[length..];
    let mut raw = Vec::new();
    for output in header["outputs"].as_array().unwrap() {
        if let Some(size) = output["parameters"]["binary_data_size"].as_u64() {
            let (bytes, tail) = rest.split_at(size as usize);
            raw.push((output["name"].as_str().unwrap().to_owned(), bytes.to_vec()));
            rest = tail;
        }
    }
    assert!(rest.is_empty(), "no bytes after the outputs");
    (header, raw)
}

/// A JSON infer body written as clients write it, "name" before "data", which is decoded in
/// one pass. (`json!` sorts keys and puts "data" first, which takes the other path.)
fn digits_body(rows: &[f32], n: usize, extra: &str) -> Vec<u8> {
    let data = serde_json::to_string(rows).unwrap();
    format!(
        r#"{{"id":"request-7","model_name":"ignored","inputs":[{{"name":"input","shape":[{n},64],"datatype":"FP32","data":{data}}}]{extra}}}"#
    )
    .into_bytes()
}

fn digits_request(rows: &[f32], n: usize) -> Value {
    json!({
        "inputs": [{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": rows}]
    })
}

#[test]
fn server_metadata_health_and_model_routes_with_and_without_versions() {
    let server = Server::builder().args(["--model-name", "digits"]).start();
    let metadata = server.get("/v2").json();
    assert_eq!(metadata["name"], "onnx-serve");
    assert!(
        metadata["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    assert_eq!(server.get("/v2/health/live").json(), json!({"live": true}));
    assert_eq!(
        server.get("/v2/health/ready").json(),
        json!({"ready": true})
    );

    for base in ["/v2/models/digits", "/v2/models/digits/versions/1"] {
        let metadata = server.get(base);
        assert_eq!(metadata.header("Content-Type"), Some("application/json"));
        let metadata = metadata.json();
        assert_eq!(metadata["name"], "digits");
        assert_eq!(metadata["versions"], json!(["1"]));
        assert_eq!(metadata["platform"], "onnxruntime_onnx");
        assert_eq!(metadata["inputs"][0]["name"], "input");
        assert_eq!(metadata["inputs"][0]["datatype"], "FP32");
        assert_eq!(metadata["inputs"][0]["shape"], json!([-1, 64]));
        assert_eq!(metadata["outputs"][0]["shape"], json!([-1, 10]));

        let ready = server.get(&format!("{base}/ready"));
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json(), json!({"name": "digits", "ready": true}));

        let config = server.get(&format!("{base}/config")).json();
        assert_eq!(config["name"], "digits");
        assert_eq!(config["platform"], "onnxruntime_onnx");
        assert!(config["max_batch_size"].as_u64().unwrap() > 0);
        assert_eq!(
            config["input"],
            json!([{"name": "input", "data_type": "TYPE_FP32", "dims": [64]}])
        );
        assert_eq!(
            config["output"],
            json!([{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}])
        );
    }

    for path in [
        "/v2/models/other",
        "/v2/models/other/ready",
        "/v2/models/other/config",
        "/v2/models/other/versions/1",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.error().contains("unknown model 'other'"), "{path}");
    }
    let reply = server.get("/v2/models/digits/versions/2/ready");
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.error(),
        "model 'digits' has no version '2'; it serves version '1'"
    );
    let (rows, _) = digits_rows(1);
    let body = serde_json::to_vec(&digits_request(&rows, 1)).unwrap();
    for path in [
        "/v2/models/model/infer",
        "/v2/models/digits/versions/7/infer",
    ] {
        let reply = server.post(path, &body);
        assert_eq!(reply.status, 404, "{path}");
        reply.error();
    }
    let reply = server.get("/v2/models/digits/infer");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("POST"));
}

#[test]
fn a_triton_layout_serves_its_name_and_version() {
    let repository = std::env::temp_dir().join(format!("onnx-serve-v2-{}", std::process::id()));
    let version_dir = repository.join("digits/3");
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::copy(common::bundled_model(), version_dir.join("model.onnx")).unwrap();
    let server = Server::builder()
        .args(["--model", repository.to_str().unwrap()])
        .start();
    let metadata = server.get("/v2/models/digits").json();
    assert_eq!(metadata["versions"], json!(["3"]));
    assert_eq!(server.get("/v2/models/digits/versions/3/ready").status, 200);
    assert_eq!(server.get("/v2/models/digits/versions/1/ready").status, 404);
    drop(server);
    let _ = std::fs::remove_dir_all(&repository);
}

#[test]
fn config_without_a_batch_dimension_and_for_every_datatype() {
    let fixed = Server::with_model("fixed.onnx");
    let config = fixed.get("/v2/models/fixed/config").json();
    assert_eq!(config["max_batch_size"], 0);
    assert_eq!(config["input"][0]["dims"], json!([1, 4]));

    let dtypes = Server::with_model("dtypes.onnx");
    let config = dtypes.get("/v2/models/dtypes/config").json();
    let types: Vec<&str> = config["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["data_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "TYPE_BOOL",
            "TYPE_UINT8",
            "TYPE_UINT16",
            "TYPE_UINT32",
            "TYPE_UINT64",
            "TYPE_INT8",
            "TYPE_INT16",
            "TYPE_INT32",
            "TYPE_INT64",
            "TYPE_FP16",
            "TYPE_FP32",
            "TYPE_FP64",
            "TYPE_STRING"
        ]
    );
}

#[test]
fn json_infer_matches_onnxruntime_with_flat_or_nested_data() {
    let server = Server::digits();
    let (rows, expected) = digits_rows(440);

    let body = digits_body(&rows, 440, r#","parameters":{"priority":1},"unknown":[1]"#);
    let reply = server.post("/v2/models/model/infer", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let answer = reply.json();
    assert_eq!(answer["id"], "request-7");
    assert_eq!(answer["model_name"], "model");
    let output = &answer["outputs"][0];
    assert_eq!(output["name"], "probabilities");
    assert_eq!(output["datatype"], "FP32");
    assert_eq!(output["shape"], json!([440, 10]));
    let diff = max_diff(&row(&output["data"]), &expected);
    assert!(diff < 1e-5, "max |tract - onnxruntime| = {diff}");

    // Nested data, "data" before "name" (key order is free), on the versioned path.
    let nested: Vec<&[f32]> = rows[..3 * 64].chunks(64).collect();
    let request = json!({"inputs": [
        {"data": nested, "datatype": "FP32", "shape": [3, 64], "name": "input"}
    ]});
    let answer = server
        .post_json("/v2/models/model/versions/1/infer", &request)
        .json();
    assert!(answer.get("id").is_none());
    let diff = max_diff(&row(&answer["outputs"][0]["data"]), &expected[..30]);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn binary_tensors_both_ways_match_onnxruntime() {
    let server = Server::digits();
    let (rows, expected) = digits_rows(25);
    let input = json!({"name": "input", "shape": [25, 64], "datatype": "FP32",
                       "parameters": {"binary_data_size": 25 * 64 * 4}});

    // Binary in, binary out (what tritonclient sends by default).
    let header = json!({"inputs": [input], "parameters": {"binary_data_output": true}});
    let reply = post_binary(
        &server,
        "/v2/models/model/infer",
        &header,
        &f32_bytes(&rows),
    );
    let (answer, raw) = split_binary(&reply);
    assert_eq!(answer["model_name"], "model");
    assert_eq!(answer["outputs"][0]["shape"], json!([25, 10]));
    assert!(answer["outputs"][0].get("data").is_none());
    assert!(max_diff(&f32_values(&raw[0].1), &expected) < 1e-5);

    // Binary in, JSON out.
    let header = json!({"inputs": [input]});
    let reply = post_binary(
        &server,
        "/v2/models/model/infer",
        &header,
        &f32_bytes(&rows),
    );
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert!(reply.header(HEADER_LENGTH).is_none());
    let data = row(&reply.json()["outputs"][0]["data"]);
    assert!(max_diff(&data, &expected) < 1e-5);

    // JSON in, binary out for the one output asked for it.
    let outputs = r#","outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]"#;
    let reply = server.post("/v2/models/model/infer", digits_body(&rows, 25, outputs));
    let (_, raw) = split_binary(&reply);
    assert!(max_diff(&f32_values(&raw[0].1), &expected) < 1e-5);

    // The raw form: no JSON header, the whole body is the single input.
    let reply = server.post_with(
        "/v2/models/model/infer",
        &[(HEADER_LENGTH, "0")],
        &f32_bytes(&rows[..2 * 64]),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let output = &reply.json()["outputs"][0];
    assert_eq!(output["shape"], json!([2, 10]));
    assert!(max_diff(&row(&output["data"]), &expected[..20]) < 1e-5);
}

#[test]
fn outputs_are_chosen_by_name_in_the_order_asked_each_in_its_form() {
    let server = Server::with_model("two_io.onnx");
    let a = [1.0f32, 2.0, 3.0, -1.5, 0.0, 4.25];
    let b = [0.5f32, 0.5, 0.5, 2.0, 3.0, -1.0];
    let header = json!({
        "inputs": [
            {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": b},
            {"name": "a", "shape": [2, 3], "datatype": "FP32",
             "parameters": {"binary_data_size": 24}},
        ],
        "outputs": [
            {"name": "product", "parameters": {"binary_data": false}},
            {"name": "sum"},
        ],
        "parameters": {"binary_data_output": true},
    });
    let reply = post_binary(&server, "/v2/models/two_io/infer", &header, &f32_bytes(&a));
    let (answer, raw) = split_binary(&reply);
    let outputs = answer["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["name"], "product");
    let product: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).collect();
    assert_eq!(row(&outputs[0]["data"]), product);
    assert_eq!(raw[0].0, "sum");
    let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) as f64).collect();
    assert_eq!(f32_values(&raw[0].1), sum);

    let mut request = header.clone();
    request["inputs"][1] = json!({"name": "a", "shape": [2, 3], "datatype": "FP32", "data": a});
    request["outputs"] = json!([{"name": "sum"}]);
    request["parameters"] = json!({});
    let answer = server.post_json("/v2/models/two_io/infer", &request).json();
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(row(&answer["outputs"][0]["data"]), sum);

    request["outputs"] = json!([{"name": "difference"}]);
    let reply = server.post_json("/v2/models/two_io/infer", &request);
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.error(),
        "the model has no output 'difference'; its outputs are sum, product"
    );
}

/// Each dtypes.onnx input with its values, as JSON and as little-endian bytes.
fn every_datatype() -> Vec<(&'static str, &'static str, Value, Vec<u8>)> {
    fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|v| to(*v)).collect()
    }
    let strings = ["", "héllo", "a\"b\n"];
    let mut string_bytes = Vec::new();
    for s in strings {
        string_bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
        string_bytes.extend_from_slice(s.as_bytes());
    }
    let fp16 = [0x3800u16, 0xfbff, 0x0001]; // 0.5, -65504, the smallest subnormal
    vec![
        ("in_bool", "BOOL", json!([true, false, true]), vec![1, 0, 1]),
        ("in_uint8", "UINT8", json!([0, 7, 255]), vec![0, 7, 255]),
        (
            "in_uint16",
            "UINT16",
            json!([0, 7, 65535]),
            le(&[0u16, 7, 65535], u16::to_le_bytes),
        ),
        (
            "in_uint32",
            "UINT32",
            json!([0, 7, u32::MAX]),
            le(&[0, 7, u32::MAX], u32::to_le_bytes),
        ),
        (
            "in_uint64",
            "UINT64",
            json!([0, 7, u64::MAX]),
            le(&[0, 7, u64::MAX], u64::to_le_bytes),
        ),
        (
            "in_int8",
            "INT8",
            json!([-128, 0, 127]),
            le(&[-128i8, 0, 127], i8::to_le_bytes),
        ),
        (
            "in_int16",
            "INT16",
            json!([i16::MIN, 0, i16::MAX]),
            le(&[i16::MIN, 0, i16::MAX], i16::to_le_bytes),
        ),
        (
            "in_int32",
            "INT32",
            json!([i32::MIN, 0, i32::MAX]),
            le(&[i32::MIN, 0, i32::MAX], i32::to_le_bytes),
        ),
        (
            "in_int64",
            "INT64",
            json!([i64::MIN, 0, i64::MAX]),
            le(&[i64::MIN, 0, i64::MAX], i64::to_le_bytes),
        ),
        (
            "in_fp16",
            "FP16",
            json!([0.5, -65504.0, 5.960464477539063e-8]),
            le(&fp16, u16::to_le_bytes),
        ),
        (
            "in_fp32",
            "FP32",
            json!([0.1f32, -0.0, 3.4028235e38f32]),
            le(&[0.1f32, -0.0, f32::MAX], f32::to_le_bytes),
        ),
        (
            "in_fp64",
            "FP64",
            json!([1e-300, 0.1, -2.5]),
            le(&[1e-300f64, 0.1, -2.5], f64::to_le_bytes),
        ),
        ("in_string", "BYTES", json!(strings), string_bytes),
    ]
}

#[test]
fn every_datatype_round_trips_through_binary_and_json() {
    let server = Server::with_model("dtypes.onnx");
    let cases = every_datatype();
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
    for (name, datatype, _, bytes) in &cases {
        inputs.push(json!({"name": name, "shape": [3], "datatype": datatype,
                           "parameters": {"binary_data_size": bytes.len()}}));
        raw.extend_from_slice(bytes);
    }
    let header = json!({"inputs": inputs, "parameters": {"binary_data_output": true}});
    let (answer, outputs) = split_binary(&post_binary(
        &server,
        "/v2/models/dtypes/infer",
        &header,
        &raw,
    ));
    assert_eq!(outputs.len(), cases.len());
    for ((name, datatype, _, bytes), (out_name, out_bytes)) in cases.iter().zip(&outputs) {
        assert_eq!(*out_name, name.replace("in_", "out_"));
        assert_eq!(out_bytes, bytes, "{name} binary");
        let described = answer["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == *out_name)
            .unwrap();
        assert_eq!(described["datatype"], *datatype);
        assert_eq!(described["shape"], json!([3]));
    }

    // The same values as JSON, answered as JSON.
    let inputs: Vec<Value> = cases
        .iter()
        .map(|(name, datatype, values, _)| {
            json!({"name": name, "shape": [3], "datatype": datatype, "data": values})
        })
        .collect();
    let reply = server.post_json("/v2/models/dtypes/infer", &json!({"inputs": inputs}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    for (output, (name, _, values, _)) in answer["outputs"].as_array().unwrap().iter().zip(&cases) {
        if *name == "in_fp32" || *name == "in_fp16" {
            // Written as the shortest text that reads back to the same FP32/FP16 value.
            let as_f32 = |v: &Value| -> Vec<f32> { row(v).iter().map(|v| *v as f32).collect() };
            assert_eq!(as_f32(&output["data"]), as_f32(values), "{name} JSON");
        } else {
            assert_eq!(output["data"], *values, "{name} JSON");
        }
    }
}

/// Posts a request that must be refused with 400 and a message containing `expected`,
/// then checks the server still answers a good one.
fn assert_refused(server: &Server, headers: &[(&str, &str)], body: &[u8], expected: &str) {
    let reply = server.post_with("/v2/models/model/infer", headers, body);
    assert_eq!(reply.status, 400, "{expected}: {}", reply.text());
    let message = reply.error();
    assert!(
        message.contains(expected),
        "expected {expected:?} in {message:?}"
    );
    assert!(message.len() < 400, "no payload echoed: {message}");
}

#[test]
fn bad_json_requests_get_clear_errors() {
    let server = Server::digits();
    let (rows, _) = digits_rows(2);
    let input = |fields: Value| -> Vec<u8> {
        let mut input =
            json!({"name": "input", "shape": [2, 64], "datatype": "FP32", "data": rows});
        for (k, v) in fields.as_object().unwrap() {
            input[k] = v.clone();
        }
        input.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        serde_json::to_vec(&json!({"inputs": [input]})).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            input(json!({"shape": [3, 64]})),
            "input 'input': shape [3, 64] needs 192 elements but the data has 128",
        ),
        (
            input(json!({"shape": [2, 63]})),
            "shape [2, 63] needs 126 elements but the data has 128",
        ),
        (
            input(json!({"shape": [1, 128]})),
            "input 'input' expects shape [batch, 64], got [1, 128]",
        ),
        (
            input(json!({"shape": [128]})),
            "expects 2-dimensional shape [batch, 64], got 1-dimensional",
        ),
        (
            input(json!({"datatype": "FP64"})),
            "input 'input' expects datatype FP32, got FP64",
        ),
        (
            input(json!({"datatype": "FLOAT"})),
            "input 'input': unknown datatype \"FLOAT\"",
        ),
        (input(json!({"shape": [-2, 64]})), "negative dimension"),
        (
            input(json!({"name": "pixels"})),
            "the model has no input 'pixels'; its inputs are input",
        ),
        (
            input(json!({"data": null})),
            "input 'input': has no \"data\" and no binary_data_size",
        ),
        (
            input(json!({"datatype": null})),
            "input 'input': no \"datatype\"",
        ),
        (input(json!({"shape": null})), "input 'input': no \"shape\""),
        (
            input(json!({"parameters": {"binary_data_size": 4}})),
            "has both \"data\" and a binary_data_size",
        ),
        (
            input(json!({"data": ["a", "b"]})),
            "expected a number for FP32",
        ),
        (
            serde_json::to_vec(&json!({"inputs": [
                {"datatype": "FP64", "shape": [1, 64], "data": vec![0.5; 64], "name": "input"}
            ]}))
            .unwrap(),
            "input 'input' expects datatype FP32, got FP64",
        ),
        // "datatype" before "data": refused before the numbers are read as FP32.
        (
            br#"{"inputs":[{"name":"input","datatype":"INT64","shape":[1,2],"data":[1.5,2]}]}"#
                .to_vec(),
            "input 'input' expects datatype FP32, got INT64",
        ),
        (
            br#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1.5,"x"]}]}"#
                .to_vec(),
            "input 'input': expected a number for FP32, got \"x\"",
        ),
        (
            b"{\"inputs\": []}".to_vec(),
            "the request has no \"inputs\"",
        ),
        (b"{}".to_vec(), "the request has no \"inputs\""),
        (
            b"{\"inputs\": [{\"name\": \"input\"".to_vec(),
            "malformed JSON",
        ),
        (b"[]".to_vec(), "expected an inference request object"),
    ];
    for (body, expected) in cases {
        assert_refused(&server, &[], &body, expected);
    }
    let reply = server.post_with(
        "/v2/models/model/infer",
        &[("Content-Encoding", "gzip")],
        &input(json!({})),
    );
    assert_eq!(reply.status, 415);
    assert!(
        reply
            .error()
            .contains("Content-Encoding gzip is not supported")
    );

    let two = Server::with_model("two_io.onnx");
    let a = json!({"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]});
    let reply = two.post_json("/v2/models/two_io/infer", &json!({"inputs": [a]}));
    assert_eq!(reply.error(), "missing input(s): b");
    let reply = two.post_json("/v2/models/two_io/infer", &json!({"inputs": [a, a]}));
    assert_eq!(reply.error(), "input 'a': given twice");
}

#[test]
fn bad_binary_requests_get_clear_errors() {
    let server = Server::digits();
    let (rows, _) = digits_rows(2);
    let bytes = f32_bytes(&rows);
    let header = |size: usize| {
        json!({"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                           "parameters": {"binary_data_size": size}}]})
    };
    let cases: Vec<(Value, &[u8], &str)> = vec![
        (
            header(512),
            &bytes[..300],
            "input 'input': binary_data_size is 512 but only 300 bytes of binary data are left",
        ),
        (
            header(1 << 40),
            &bytes,
            "binary_data_size is 1099511627776 but only 512 bytes",
        ),
        (
            header(511),
            &bytes[..511],
            "511 bytes of binary data is not a whole number of FP32 elements (4 bytes each)",
        ),
        (
            header(256),
            &bytes,
            "the body has 256 bytes after the binary data of the inputs",
        ),
        (
            header(256),
            &bytes[..256],
            "shape [2, 64] needs 128 elements but the data has 64",
        ),
    ];
    for (header, raw, expected) in cases {
        let (body, length) = binary_body(&header, raw);
        assert_refused(&server, &[(HEADER_LENGTH, &length)], &body, expected);
    }
    let (body, _) = binary_body(&header(512), &bytes);
    assert_refused(
        &server,
        &[(HEADER_LENGTH, "5000")],
        &body,
        "Inference-Header-Content-Length is 5000 but the body has only",
    );
    assert_refused(
        &server,
        &[(HEADER_LENGTH, "ten")],
        &body,
        "must be a byte count",
    );
    assert_refused(&server, &[(HEADER_LENGTH, "20")], &body, "malformed JSON");
    assert_refused(
        &server,
        &[(HEADER_LENGTH, "0")],
        &bytes[..102],
        "102 bytes of binary data is not a whole number",
    );
    assert_refused(
        &server,
        &[(HEADER_LENGTH, "0")],
        &bytes[..4 * 60],
        "60 elements do not fill shape [batch, 64]",
    );

    // A BYTES length that claims 4 GiB, and broken UTF-8.
    let strings = Server::with_model("dtypes.onnx");
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
    for (name, datatype, _, bytes) in every_datatype() {
        let bytes = if name == "in_string" {
            vec![0xff, 0xff, 0xff, 0xff, b'x']
        } else {
            bytes
        };
        inputs.push(json!({"name": name, "shape": [3], "datatype": datatype,
                           "parameters": {"binary_data_size": bytes.len()}}));
        raw.extend_from_slice(&bytes);
    }
    let reply = post_binary(
        &strings,
        "/v2/models/dtypes/infer",
        &json!({"inputs": inputs}),
        &raw,
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.error(),
        "input 'in_string': BYTES element 0 declares 4294967295 bytes but only 1 are left"
    );

    // Raw form needs a single-input model.
    let two = Server::with_model("two_io.onnx");
    let reply = two.post_with("/v2/models/two_io/infer", &[(HEADER_LENGTH, "0")], &[0; 24]);
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("the model has 2 inputs (a, b)"));
}

#[test]
fn readiness_is_503_with_a_json_error_while_draining() {
    let server = Server::builder()
        .args([
            "--model",
            &common::fixture_model("slow.onnx"),
            "--workers",
            "1",
        ])
        .start();
    // Connections opened before the drain: it refuses new ones.
    let mut watchers: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = server.connect();
            let live = exchange(
                &mut stream,
                b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
            );
            assert_eq!(live.status, 200);
            stream
        })
        .collect();
    // Slow requests keep the server draining while we look.
    let body = serde_json::to_vec(&json!({"inputs": [vec![0.5; 1024]]})).unwrap();
    let mut busy: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = server.connect();
            let head = format!(
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    server.signal("TERM");
    assert!(server.wait_for_log("draining", Duration::from_secs(5)));

    let get = |stream: &mut std::net::TcpStream, path: &str| {
        exchange(
            stream,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };
    for (stream, path) in watchers.iter_mut().zip([
        "/v2/health/ready",
        "/v2/models/slow/ready",
        "/v2/health/live",
        "/v1/models/slow",
    ]) {
        let reply = get(stream, path);
        match path {
            "/v2/health/live" => {
                assert_eq!(reply.status, 200);
                assert_eq!(reply.json(), json!({"live": true}));
            }
            "/v1/models/slow" => {
                assert_eq!(reply.status, 200);
                let status = reply.json();
                assert_eq!(status["ready"], false);
                assert_eq!(status["model_version_status"][0]["state"], "UNLOADING");
            }
            _ => {
                assert_eq!(reply.status, 503, "{path}");
                assert!(reply.error().contains("shutting down"), "{path}");
            }
        }
    }
    for stream in &mut busy {
        assert_eq!(common::read_response(stream).status, 200);
    }
}
