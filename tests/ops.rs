//! Running it as a service: metrics, the OpenAPI document and the docs page, request ids in
//! error bodies, JSON logs, the API key and CORS. (tests/ops/ checks the same endpoints with
//! Prometheus' parser, an OpenAPI validator, schemathesis and a headless browser.)

use crate::common;

use common::{Server, exchange, fixture, read_json};
use serde_json::{Value, json};
use std::time::Duration;

/// The value of the sample line `name{labels}` in a metrics text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn digit_body() -> Value {
    read_json(&fixture("digit.json"))
}

#[test]
fn metrics_count_each_request_by_route_template_and_status() {
    let server = Server::digits();
    let before = server.get("/metrics");
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = before.text();
    for _ in 0..3 {
        assert_eq!(server.post_json("/predict", &digit_body()).status, 200);
    }
    assert_eq!(server.predict(json!([[1, 2]])).status, 400);
    assert_eq!(server.get("/v2/models/model/versions/1/ready").status, 200);
    assert_eq!(server.get("/no/such/path/123").status, 404);
    let after = server.get("/metrics").text();

    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let requests = |route: &str, status: u16| {
        format!("onnx_serve_requests_total{{route=\"{route}\",status=\"{status}\"}}")
    };
    assert_eq!(delta(&requests("/predict", 200)), 3.0);
    assert_eq!(delta(&requests("/predict", 400)), 1.0);
    // The versioned path counts under its route's template, the unknown one as unmatched:
    // no label ever holds a raw path.
    assert_eq!(delta(&requests("/v2/models/{model}/ready", 200)), 1.0);
    assert_eq!(delta(&requests("unmatched", 404)), 1.0);
    assert!(!after.contains("/no/such/path"));
    // The first scrape was counted once it was answered.
    assert_eq!(delta(&requests("/metrics", 200)), 1.0);
    assert_eq!(
        delta("onnx_serve_request_duration_seconds_count{route=\"/predict\"}"),
        4.0
    );
    // Three runs of the model (the 400 never reached it); all four took a worker slot,
    // where bodies are decoded.
    assert_eq!(delta("onnx_serve_inference_duration_seconds_count"), 3.0);
    assert_eq!(delta("onnx_serve_queue_wait_seconds_count"), 4.0);
    assert_eq!(sample(&after, "onnx_serve_requests_in_flight"), 1.0);
    assert_eq!(sample(&after, "onnx_serve_panics_caught_total"), 0.0);
    assert!(sample(&after, "onnx_serve_model_load_seconds") > 0.0);
    let build_info = after
        .lines()
        .find(|l| l.starts_with("onnx_serve_build_info{"))
        .expect("build info");
    assert!(
        build_info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build_info.contains("model=\"model\"")
            && build_info.contains("tract_version=\"0.")
            && build_info.ends_with("} 1"),
        "{build_info}"
    );
}

#[test]
fn a_caught_panic_is_counted() {
    // gather_oob.onnx makes tract panic on an out-of-range index (see tests/predict.rs).
    let server = Server::with_model("gather_oob.onnx");
    let reply = server.predict(json!([7]));
    assert_eq!(reply.status, 500, "{}", reply.text());
    let metrics = server.get("/metrics").text();
    assert_eq!(sample(&metrics, "onnx_serve_panics_caught_total"), 1.0);
}

#[test]
fn the_openapi_document_follows_the_model() {
    let server = Server::digits();
    let reply = server.get("/openapi.json");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/",
        "/predict",
        "/metrics",
        "/docs",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
        "/v1/models/{model}:predict",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    let input = &doc["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["anyOf"][0];
    assert_eq!(input["title"], "input FP32 [batch, 64]");
    assert_eq!(input["minItems"], 1);
    assert_eq!(
        (&input["items"]["minItems"], &input["items"]["maxItems"]),
        (&json!(64), &json!(64))
    );
    let model = &doc["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0];
    assert_eq!(model["schema"]["enum"], json!(["model"]));
    // The example in the document is a request the model takes.
    let example =
        &doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(server.post_json("/predict", example).status, 200);
    assert!(doc.get("security").is_none(), "no key, no security");
}

#[test]
fn the_docs_page_is_one_self_contained_file() {
    let server = Server::digits();
    let reply = server.get("/docs");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("Content-Security-Policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let page = reply.text();
    assert!(
        page.contains("\"name\":\"model\""),
        "the page carries the signature"
    );
    assert!(page.contains("\"dims\":\"[batch, 64]\""));
    for external in ["http://", "https://", "//cdn", "@import", "src=\""] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

#[test]
fn error_bodies_name_the_request_id() {
    let server = Server::digits();
    let mut stream = server.connect();
    let reply = exchange(
        &mut stream,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-77\r\n\r\n",
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["request_id"], "trace-77");
    assert!(reply.error().contains("no route"));

    let reply = server.predict(json!("nope"));
    assert_eq!(reply.status, 400);
    let id = reply.header("X-Request-Id").unwrap();
    assert_eq!(reply.json()["request_id"], id);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::builder().args(["--log-format", "json"]).start();
    let mut stream = server.connect();
    let reply = exchange(
        &mut stream,
        b"GET /nope?q=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: json-1\r\n\r\n",
    );
    assert_eq!(reply.status, 404);
    assert!(server.wait_for_log("json-1", Duration::from_secs(5)));
    // "ready" is logged just after /readyz turns 200, so it may come after json-1's line.
    assert!(server.wait_for_log("\"message\":\"ready\"", Duration::from_secs(5)));
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["time"].is_string() && l["level"].is_string())
    );
    assert!(lines.iter().any(|l| l["message"] == "ready"));
    let access = lines
        .iter()
        .find(|l| l["request_id"] == "json-1")
        .expect("the access line");
    assert_eq!(access["target"], "onnx_serve::access");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/nope");
    assert_eq!(access["status"], 404);
    assert!(access["bytes"].as_u64().unwrap() > 0);
    assert!(access["duration_us"].is_u64());
}

const KEY: &str = "k3y-For-Tests_0123456789";

fn with_key(server: &Server, method: &str, path: &str, key: Option<&str>) -> common::RawResponse {
    let mut stream = server.connect();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let body = if method == "POST" {
        serde_json::to_string(&digit_body()).unwrap()
    } else {
        String::new()
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(&mut stream, request.as_bytes())
}

#[test]
fn with_an_api_key_every_route_but_health_needs_it() {
    let server = Server::builder()
        .env("ONNX_SERVE_API_KEY", KEY)
        .env("RUST_LOG", "debug")
        .start();
    for path in [
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/model/ready",
    ] {
        assert_eq!(with_key(&server, "GET", path, None).status, 200, "{path}");
    }
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/predict"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/v2/models/model"),
        ("POST", "/v2/models/model/infer"),
        ("POST", "/v1/models/model:predict"),
        ("GET", "/nope"),
    ] {
        let missing = with_key(&server, method, path, None);
        assert_eq!(missing.status, 401, "{method} {path}");
        assert!(missing.error().contains("Authorization: Bearer"));
        assert_eq!(
            missing.header("WWW-Authenticate").as_deref(),
            Some("Bearer realm=\"onnx-serve\"")
        );
        let wrong = with_key(&server, method, path, Some("k3y-For-Tests_0123456788"));
        assert_eq!(wrong.status, 401, "{method} {path}");
        assert!(
            wrong
                .header("WWW-Authenticate")
                .unwrap()
                .contains("invalid_token")
        );
    }
    assert_eq!(with_key(&server, "POST", "/predict", Some(KEY)).status, 200);
    assert_eq!(with_key(&server, "GET", "/metrics", Some(KEY)).status, 200);
    assert_eq!(with_key(&server, "GET", "/nope", Some(KEY)).status, 404);
    let basic = {
        let mut stream = server.connect();
        exchange(
            &mut stream,
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n",
        )
    };
    assert_eq!(basic.status, 401);
    let doc = with_key(&server, "GET", "/openapi.json", Some(KEY)).json();
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));

    assert!(server.wait_for_log("GET /nope 404", Duration::from_secs(5)));
    let log = server.log();
    assert!(log.contains("API key is required"), "{log}");
    assert!(!log.contains(KEY), "the key is in the log:\n{log}");
    assert!(!log.contains("0123456788"), "a wrong key is in the log");
}

#[test]
fn the_api_key_can_come_from_a_file_or_the_command_line() {
    let dir = std::env::temp_dir().join(format!("onnx-serve-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, format!("  {KEY}\n")).unwrap();
    let from_file = Server::builder()
        .args(["--api-key-file", file.to_str().unwrap()])
        .start();
    assert_eq!(with_key(&from_file, "GET", "/", None).status, 401);
    assert_eq!(with_key(&from_file, "GET", "/", Some(KEY)).status, 200);
    drop(from_file);

    let from_flag = Server::builder().args(["--api-key", KEY]).start();
    assert_eq!(with_key(&from_flag, "GET", "/", Some(KEY)).status, 200);
    assert_eq!(with_key(&from_flag, "GET", "/", Some("other")).status, 401);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs the binary with `args` and `env`, expecting it to refuse to start.
fn refuses_to_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(common::binary())
        .args(args)
        .args(["--port", "0", "--model", &common::bundled_model()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_keys_and_origins_stop_start_up_without_echoing_the_key() {
    let both = refuses_to_start(
        &["--api-key-file", "/nonexistent"],
        &[("ONNX_SERVE_API_KEY", KEY)],
    );
    assert!(both.contains("not both"), "{both}");
    let spaced = refuses_to_start(&["--api-key", "secret with spaces"], &[]);
    assert!(
        spaced.contains("printable ASCII") && !spaced.contains("secret with"),
        "{spaced}"
    );
    let missing = refuses_to_start(&["--api-key-file", "/nonexistent/key"], &[]);
    assert!(
        missing.contains("cannot read the API key file"),
        "{missing}"
    );
    let origin = refuses_to_start(&["--cors-origin", "https://a.example/path"], &[]);
    assert!(origin.contains("--cors-origin"), "{origin}");
    // --help names the variable but never shows its value.
    let help = std::process::Command::new(common::binary())
        .arg("--help")
        .env("ONNX_SERVE_API_KEY", KEY)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("ONNX_SERVE_API_KEY") && !help.contains(KEY),
        "{help}"
    );
}

fn preflight(server: &Server, path: &str, origin: &str, method: &str) -> common::RawResponse {
    let mut stream = server.connect();
    let request = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: {method}\r\n\
         Access-Control-Request-Headers: content-type, authorization\r\n\r\n"
    );
    exchange(&mut stream, request.as_bytes())
}

fn get_from(server: &Server, path: &str, origin: &str) -> common::RawResponse {
    let mut stream = server.connect();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\r\n");
    exchange(&mut stream, request.as_bytes())
}

#[test]
fn without_cors_origins_there_are_no_cors_headers() {
    let server = Server::digits();
    let answer = preflight(&server, "/predict", "https://a.example", "POST");
    assert_eq!(answer.status, 405);
    assert!(!answer.head.to_ascii_lowercase().contains("access-control"));
    let answer = get_from(&server, "/", "https://a.example");
    assert_eq!(answer.status, 200);
    assert!(!answer.head.to_ascii_lowercase().contains("access-control"));
}

#[test]
fn cors_preflights_and_headers_for_listed_origins() {
    let server = Server::builder()
        .args([
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "http://localhost:3000",
        ])
        .args(["--api-key", KEY])
        .start();
    // A preflight needs no key: browsers never send one with it.
    let answer = preflight(&server, "/predict", "https://a.example", "POST");
    assert_eq!(answer.status, 204, "{}", answer.head);
    assert!(answer.body.is_empty() && answer.header("Content-Length").is_none());
    assert_eq!(
        answer.header("Access-Control-Allow-Origin").as_deref(),
        Some("https://a.example")
    );
    assert_eq!(
        answer.header("Access-Control-Allow-Methods").as_deref(),
        Some("POST")
    );
    let headers = answer.header("Access-Control-Allow-Headers").unwrap();
    assert!(headers.contains("Authorization") && headers.contains("Content-Type"));
    assert!(answer.header("Access-Control-Max-Age").is_some());
    assert!(answer.head.contains("Vary: Origin"));
    let get_route = preflight(&server, "/v2/models/model", "http://localhost:3000", "GET");
    assert_eq!(
        get_route.header("Access-Control-Allow-Methods").as_deref(),
        Some("GET, HEAD")
    );

    let stranger = preflight(&server, "/predict", "https://evil.example", "POST");
    assert_eq!(stranger.status, 403);
    assert!(stranger.error().contains("not allowed"));
    assert!(stranger.header("Access-Control-Allow-Origin").is_none());

    // Real requests: the origin is allowed to read the answer, errors included.
    let unauthorized = get_from(&server, "/", "https://a.example");
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized
            .header("Access-Control-Allow-Origin")
            .as_deref(),
        Some("https://a.example")
    );
    assert!(
        unauthorized
            .header("Access-Control-Expose-Headers")
            .unwrap()
            .contains("X-Request-Id")
    );
    let health = get_from(&server, "/healthz", "https://evil.example");
    assert_eq!(health.status, 200);
    assert!(health.header("Access-Control-Allow-Origin").is_none());
    assert_eq!(health.header("Vary").as_deref(), Some("Origin"));
}

#[test]
fn cors_for_any_origin() {
    let server = Server::builder().args(["--cors-origin", "*"]).start();
    let answer = preflight(
        &server,
        "/v2/models/model/infer",
        "https://any.example",
        "POST",
    );
    assert_eq!(answer.status, 204);
    assert_eq!(
        answer.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    let answer = get_from(&server, "/", "null");
    assert_eq!(
        answer.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    // OPTIONS that is no preflight is still an ordinary 405.
    let mut stream = server.connect();
    let plain = exchange(&mut stream, b"OPTIONS /predict HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(plain.status, 405);
}
