//! The binary as a program: `inspect`, `predict`, start-up failures and exit codes,
//! configuration from flags and environment, logging, and graceful shutdown.

use crate::common;

use common::{
    Server, binary, bundled_model, exchange, fixture, fixture_model, free_port, raw_predict, repo,
};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(repo())
        .env_remove("PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn inspect_prints_the_signature() {
    let output = run(&["inspect", "--model", &fixture_model("seq.onnx")], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    let signature: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(signature["name"], "seq");
    assert_eq!(
        signature["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": [-1, -1], "dims": "[batch, seq]"}])
    );
    assert_eq!(
        signature["outputs"][0],
        json!({"name": "doubled", "datatype": "FP32", "shape": [-1, -1], "dims": "[batch, seq]"})
    );
    assert_eq!(
        signature["outputs"][1],
        json!({"name": "total", "datatype": "FP32", "shape": [-1], "dims": "[batch]"})
    );
}

#[test]
fn predict_answers_from_stdin_without_a_server() {
    let body = std::fs::read(fixture("digit.json")).unwrap();
    let output = run(&["predict"], &body);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let reference = common::read_json(&fixture("digits_holdout.json"))["probabilities"][0].clone();
    for (got, want) in common::row(&answer["outputs"][0])
        .iter()
        .zip(common::row(&reference))
    {
        assert!((got - want).abs() < 1e-5);
    }

    let output = run(
        &["predict", "--model", &bundled_model()],
        b"{\"inputs\": [1, 2]}",
    );
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("expects 2-dimensional shape")
    );
}

#[test]
fn a_model_tract_cannot_run_stops_start_up_with_exit_code_2_and_one_clear_message() {
    for args in [
        vec![
            "--model",
            "tests/fixtures/models/unsupported.onnx",
            "--port",
            "0",
        ],
        vec![
            "inspect",
            "--model",
            "tests/fixtures/models/unsupported.onnx",
        ],
    ] {
        let output = run(&args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let log = stderr(&output);
        assert!(log.contains("node 'mystery_node' (op Frobnicate)"), "{log}");
        assert!(
            !log.contains("panicked") && !log.contains("backtrace"),
            "{log}"
        );
    }
    let output = run(&["--model", "no/such/model.onnx", "--port", "0"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot open model no/such/model.onnx"));

    let not_onnx = std::env::temp_dir().join(format!(
        "onnx-serve-not-a-model-{}.onnx",
        std::process::id()
    ));
    std::fs::write(&not_onnx, b"this is not protobuf").unwrap();
    let output = run(&["inspect", "--model", not_onnx.to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot read the ONNX model"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_flag_values_exit_2_with_a_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["--workers", "0"], "--workers"),
        (&["--max-body", "lots"], "--max-body"),
        (&["--port", "70000"], "--port"),
        (&["--read-timeout", "soon"], "--read-timeout"),
        (&["--model-name", "a/b"], "--model-name"),
    ];
    for (args, flag) in cases {
        let output = run(args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(flag),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = Command::new(binary())
        .env("ONNX_SERVE_WORKERS", "many")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("many"));
}

#[test]
fn every_flag_also_reads_its_environment_variable() {
    let server = Server::builder()
        .env("ONNX_SERVE_MODEL", &fixture_model("two_io.onnx"))
        .env("ONNX_SERVE_MAX_BODY", "100")
        .env("ONNX_SERVE_MODEL_NAME", "adder")
        .start();
    let summary = server.get("/").json();
    assert_eq!(summary["name"], "adder");
    assert_eq!(summary["inputs"][1]["name"], "b");
    assert_eq!(server.post("/predict", vec![b' '; 200]).status, 413);
}

#[test]
fn port_comes_from_the_flag_then_onnx_serve_port_then_port() {
    let port = free_port();
    let server = Server::builder().env("PORT", &port.to_string()).start();
    assert_eq!(server.addr.port(), port);
    drop(server);
    let (port, other) = (free_port(), free_port());
    let server = Server::builder()
        .env("PORT", &other.to_string())
        .env("ONNX_SERVE_PORT", &port.to_string())
        .start();
    assert_eq!(server.addr.port(), port);
}

#[test]
fn logs_a_start_up_summary_and_one_access_line_per_request() {
    let server = Server::digits();
    assert_eq!(server.get("/healthz").status, 200);
    server.post("/predict", std::fs::read(fixture("digit.json")).unwrap());
    assert!(server.wait_for_log("POST /predict 200", Duration::from_secs(5)));
    let log = server.log();
    assert!(
        log.contains(&format!("listening on http://{}", server.addr)),
        "{log}"
    );
    assert!(log.contains("workers"), "{log}");
    assert!(log.contains("model \"model\" loaded from"), "{log}");
    assert!(
        log.contains("inputs: input FP32 [batch, 64]; outputs: probabilities FP32 [batch, 10]"),
        "{log}"
    );
    let access = log
        .lines()
        .find(|l| l.contains("POST /predict 200"))
        .unwrap();
    // method, path, status, bytes, microseconds, request id
    let fields: Vec<&str> = access
        .split("] ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&fields[..3], ["POST", "/predict", "200"]);
    assert!(
        fields[3].ends_with('B') && fields[3].trim_end_matches('B').parse::<usize>().unwrap() > 100
    );
    assert!(fields[4].ends_with("us") && fields[4].trim_end_matches("us").parse::<u64>().is_ok());

    let quiet = Server::builder()
        .env("RUST_LOG", "info,onnx_serve::access=warn")
        .start();
    assert_eq!(quiet.get("/healthz").status, 200);
    thread::sleep(Duration::from_millis(200));
    assert!(
        !quiet.log().contains("GET /healthz"),
        "RUST_LOG can silence the access lines alone"
    );
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits_0() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::builder()
            .args(["--model", &fixture_model("slow.onnx"), "--workers", "1"])
            .start();
        // Connections opened (and served once) before the signal: one to watch readiness
        // during the drain, three to carry slow requests that are in flight when it comes.
        let mut watcher = server.connect();
        assert_eq!(
            exchange(&mut watcher, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
        let body = serde_json::to_vec(&json!({"inputs": [vec![0.5; 1024]]})).unwrap();
        let request = raw_predict(&body);
        let mut clients: Vec<_> = (0..3)
            .map(|_| {
                let mut stream = server.connect();
                assert_eq!(
                    exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status,
                    200
                );
                stream
            })
            .collect();
        for stream in &mut clients {
            stream.write_all(&request).unwrap();
        }
        thread::sleep(Duration::from_millis(20));
        server.signal(signal);
        assert!(server.wait_for_log("draining", Duration::from_secs(5)));
        let ready = exchange(&mut watcher, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(ready.status, 503, "readiness turns 503 while draining");
        assert_eq!(ready.header("Connection").as_deref(), Some("close"));
        assert!(
            std::net::TcpStream::connect(server.addr).is_err(),
            "no new connections while draining"
        );

        for mut stream in clients {
            let reply = common::read_response(&mut stream);
            assert_eq!(reply.status, 200, "a request in flight finished");
            assert!(reply.json()["outputs"][0].as_array().unwrap().len() == 1024);
        }
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("the server exits");
        assert_eq!(status.code(), Some(0), "{}", server.log());
    }
}
