//! TF-Serving / KServe v1 over a real socket: model status, metadata, and `:predict` in
//! the row (`instances`) and columnar (`inputs`) formats, against onnxruntime's answers,
//! with `{"b64": ...}` BYTES, and the errors.

use crate::common;

use common::{Server, fixture, read_json, row};
use serde_json::{Value, json};

fn holdout() -> Value {
    read_json(&fixture("digits_holdout.json"))
}

fn max_diff(got: &Value, expected: &[Value]) -> f64 {
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .flat_map(|(g, e)| {
            let (g, e) = (row(g), row(e));
            assert_eq!(g.len(), e.len());
            g.into_iter().zip(e).map(|(a, b)| (a - b).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn status_and_metadata_with_and_without_versions() {
    let server = Server::builder().args(["--model-name", "digits"]).start();
    for base in ["/v1/models/digits", "/v1/models/digits/versions/1"] {
        let status = server.get(base);
        assert_eq!(status.status, 200);
        assert_eq!(
            status.json(),
            json!({
                "name": "digits",
                "ready": true,
                "model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]
            })
        );
        let metadata = server.get(&format!("{base}/metadata")).json();
        assert_eq!(metadata["model_spec"]["name"], "digits");
        assert_eq!(metadata["model_spec"]["version"], "1");
        let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
        let input = &signature["inputs"]["input"];
        assert_eq!(input["dtype"], "DT_FLOAT");
        assert_eq!(
            input["tensor_shape"]["dim"],
            json!([{"size": "-1", "name": "batch"}, {"size": "64", "name": ""}])
        );
        assert_eq!(signature["outputs"]["probabilities"]["dtype"], "DT_FLOAT");
        assert_eq!(signature["method_name"], "tensorflow/serving/predict");
    }
    // KServe's v1 liveness check reads GET /.
    assert_eq!(server.get("/").json()["status"], "alive");

    for path in ["/v1/models/other", "/v1/models/other/metadata"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.error().contains("unknown model 'other'"));
    }
    let reply = server.get("/v1/models/digits/versions/2/metadata");
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("no version '2'"));
    let reply = server.post("/v1/models/other:predict", br#"{"instances": [[1]]}"#);
    assert_eq!(reply.status, 404);
    reply.error();
    let reply = server.get("/v1/models/digits:predict");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("POST"));
    let reply = server.post("/v1/models/digits:classify", br#"{"examples": []}"#);
    assert_eq!(reply.status, 404);
    reply.error();
}

#[test]
fn instances_and_columnar_inputs_match_onnxruntime() {
    let server = Server::digits();
    let data = holdout();
    let inputs = data["inputs"].as_array().unwrap();
    let expected = data["probabilities"].as_array().unwrap();

    let request = json!({"signature_name": "serving_default", "instances": inputs});
    let reply = server.post_json("/v1/models/model:predict", &request);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let diff = max_diff(&reply.json()["predictions"], expected);
    assert!(diff < 1e-5, "max |tract - onnxruntime| = {diff}");

    let request = json!({"inputs": &inputs[..7]});
    let reply = server.post_json("/v1/models/model/versions/1:predict", &request);
    let diff = max_diff(&reply.json()["outputs"], &expected[..7]);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn several_inputs_and_outputs_go_by_name_in_both_formats() {
    let server = Server::with_model("two_io.onnx");
    let request = json!({"instances": [
        {"a": [1.0, 2.0, 3.0], "b": [0.5, 0.5, 0.5]},
        {"b": [2.0, 3.0, -1.0], "a": [-1.5, 0.0, 4.25]},
    ]});
    let reply = server.post_json("/v1/models/two_io:predict", &request);
    assert_eq!(
        reply.json(),
        json!({"predictions": [
            {"sum": [1.5, 2.5, 3.5], "product": [0.5, 1.0, 1.5]},
            {"sum": [0.5, 3.0, 3.25], "product": [-3.0, 0.0, -4.25]},
        ]})
    );
    let request = json!({"inputs": {"a": [[1.0, 2.0, 3.0]], "b": [[0.5, 0.5, 0.5]]}});
    let reply = server.post_json("/v1/models/two_io:predict", &request);
    assert_eq!(
        reply.json(),
        json!({"outputs": {"sum": [[1.5, 2.5, 3.5]], "product": [[0.5, 1.0, 1.5]]}})
    );
}

#[test]
fn bytes_may_be_sent_as_b64() {
    let server = Server::with_model("dtypes.onnx");
    let instance = |text: Value| {
        json!({
            "in_bool": true, "in_uint8": 1, "in_uint16": 2, "in_uint32": 3, "in_uint64": 4,
            "in_int8": -5, "in_int16": 6, "in_int32": 7, "in_int64": 8, "in_fp16": 0.5,
            "in_fp32": 1.5, "in_fp64": 2.5, "in_string": text,
        })
    };
    // "aMOpbGxv" is "héllo" in base64.
    let request =
        json!({"instances": [instance(json!({"b64": "aMOpbGxv"})), instance(json!("plain"))]});
    let reply = server.post_json("/v1/models/dtypes:predict", &request);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let predictions = reply.json()["predictions"].clone();
    assert_eq!(predictions[0]["out_string"], "héllo");
    assert_eq!(predictions[1]["out_string"], "plain");
    assert_eq!(predictions[1]["out_int8"], -5);
    assert_eq!(predictions[0]["out_bool"], true);

    let mut columns = json!({});
    for (name, value) in instance(json!({"b64": "aMOpbGxv"})).as_object().unwrap() {
        columns[name] = json!([value]);
    }
    let reply = server.post_json("/v1/models/dtypes:predict", &json!({"inputs": columns}));
    assert_eq!(reply.json()["outputs"]["out_string"], json!(["héllo"]));

    columns["in_string"] = json!([{"b64": "not base64!"}]);
    let reply = server.post_json("/v1/models/dtypes:predict", &json!({"inputs": columns}));
    assert_eq!(reply.status, 400);
    let message = reply.error();
    assert!(
        message.contains("input 'in_string': \"b64\" is not valid base64"),
        "{message}"
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let digits = Server::digits();
    let two = Server::with_model("two_io.onnx");
    let row64 = vec![0.5; 64];
    let cases: Vec<(&Server, Value, &str)> = vec![
        (
            &digits,
            json!({}),
            "the body has neither \"instances\" nor \"inputs\"",
        ),
        (
            &digits,
            json!({"instances": [row64], "inputs": [row64]}),
            "send either \"instances\" or \"inputs\", once",
        ),
        (&digits, json!({"instances": []}), "\"instances\" is empty"),
        (
            &digits,
            json!({"instances": [row64, vec![0.5; 63]]}),
            "instance 1: input 'input' has shape [63], but the instances before it have [64]",
        ),
        (
            &digits,
            json!({"instances": [vec![0.5; 63]]}),
            "input 'input' expects shape [batch, 64], got [1, 63]",
        ),
        (
            &digits,
            json!({"instances": [vec!["x"; 64]]}),
            "input 'input': expected a number for FP32",
        ),
        (
            &two,
            json!({"instances": [{"a": [1, 2, 3]}]}),
            "missing input(s): b",
        ),
        (
            &two,
            json!({"instances": [[1, 2, 3]]}),
            "the model has 2 inputs (a, b): send them by name",
        ),
        (
            &two,
            json!({"instances": [{"a": [1, 2, 3], "b": [1, 2, 3], "c": [1]}]}),
            "the model has no input 'c'; its inputs are a, b",
        ),
    ];
    for (server, body, expected) in cases {
        let reply = server.post_json(&format!("{}:predict", model_path(server)), &body);
        assert_eq!(reply.status, 400, "{expected}: {}", reply.text());
        let message = reply.error();
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
    let reply = digits.post("/v1/models/model:predict", b"{\"instances\": [");
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("malformed JSON"));
}

/// `/v1/models/{name}` of the server's model.
fn model_path(server: &Server) -> String {
    let name = server.get("/").json()["name"].as_str().unwrap().to_owned();
    format!("/v1/models/{name}")
}
