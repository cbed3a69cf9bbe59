//! What the server survives, over raw sockets that send what normal clients will not: bad
//! bodies, lying lengths, broken chunking, odd HTTP, stalled clients. After every case a
//! normal `/predict` must still answer correctly. docs/robustness.md's table lists these
//! cases and their outcomes.

use crate::common;

use common::{RawResponse, Server, fixture};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// What a case must get back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// A response with this status (and, for our own errors, the JSON error contract).
    Status(u16),
    /// The connection is closed without any response (tiny_http refuses to parse it).
    ClosedWithoutAnswer,
    /// No response and the connection stays open: tiny_http's connection thread is stuck.
    Hangs,
}

use Outcome::{ClosedWithoutAnswer, Hangs, Status};

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Outcome,
    /// Part of the error message, for our own JSON errors.
    message: &'static str,
    /// Close our sending side after the request (a client that gives up mid-body).
    half_close: bool,
}

fn case(name: &'static str, request: Vec<u8>, expect: Outcome, message: &'static str) -> Case {
    Case {
        name,
        request,
        expect,
        message,
        half_close: false,
    }
}

/// `POST path` with a Content-Length body and extra header lines.
fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// `POST path` with a chunked body made of `chunks`, then the last chunk.
fn chunked(path: &str, chunks: &[&[u8]]) -> Vec<u8> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn digit() -> Vec<u8> {
    std::fs::read(fixture("digit.json")).unwrap()
}

/// The probabilities the model gives for `digit.json` (computed by onnxruntime).
fn reference() -> Vec<f64> {
    common::row(&common::read_json(&fixture("digits_holdout.json"))["probabilities"][0])
}

/// A normal prediction, on a new connection, must still be right.
fn assert_still_serving(server: &Server, after: &str) {
    let reply = server.post("/predict", digit());
    assert_eq!(reply.status, 200, "after {after}: {}", reply.text());
    let got = common::row(&reply.json()["outputs"][0]);
    for (g, want) in got.iter().zip(reference()) {
        assert!((g - want).abs() < 1e-5, "after {after}: {got:?}");
    }
}

/// Sends `request` (from another thread, so a server that answers before reading all of it
/// cannot deadlock us) and reads one response, or notes that the connection closed first.
fn send(
    server: &Server,
    request: Vec<u8>,
    half_close: bool,
    wait: Duration,
) -> Result<RawResponse, String> {
    let mut stream = server.connect();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sender = thread::spawn(move || {
        // The server may close first (an early 413); that is its right.
        let _ = writer.write_all(&request);
        if half_close {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let response = read_or_closed(&mut stream);
    drop(stream);
    sender.join().unwrap();
    response
}

fn read_or_closed(stream: &mut TcpStream) -> Result<RawResponse, String> {
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => return Err("closed without an answer".into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err("closed without an answer (reset)".into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err("hangs".into()),
        Err(e) => return Err(format!("no answer: {e}")),
    }
    // Put the byte back in front of the rest of the response.
    let mut rest = PrefixedStream {
        prefix: Some(first[0]),
        stream,
    };
    read_response(&mut rest).map_err(|e| format!("a cut response: {e}"))
}

struct PrefixedStream<'a> {
    prefix: Option<u8>,
    stream: &'a mut TcpStream,
}

impl Read for PrefixedStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(b) = self.prefix.take() {
            buf[0] = b;
            return Ok(1);
        }
        self.stream.read(buf)
    }
}

/// One response: the head, then a Content-Length body.
fn read_response(stream: &mut impl Read) -> std::io::Result<RawResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let response = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = response
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse { body, ..response })
}

/// The server the bad-request cases run against: small limits so that the cases over them
/// are cheap, and short timeouts so that the stalling ones end quickly.
fn server() -> Server {
    Server::builder()
        .args([
            "--max-body",
            "1MiB",
            "--read-timeout",
            "1s",
            "--keep-alive-timeout",
            "1s",
        ])
        .start()
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn v2_binary(header: &Value, data: &[u8], header_length: Option<usize>) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap();
    let length = header_length.unwrap_or(json.len());
    let mut body = json;
    body.extend_from_slice(data);
    post(
        "/v2/models/model/infer",
        &format!("Inference-Header-Content-Length: {length}\r\n"),
        &body,
    )
}

fn fp32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 / 64.0).to_le_bytes())
        .collect()
}

fn bad_request_cases() -> Vec<Case> {
    let row = || vec![0.5f32; 64];
    let infer_header = |size: u64, shape: Value| {
        json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape,
                           "parameters": {"binary_data_size": size}}]})
    };
    vec![
        // Bodies.
        case(
            "truncated JSON",
            post("/predict", "", br#"{"inputs": [[0.1, 0.2"#),
            Status(400),
            "malformed JSON",
        ),
        case(
            "malformed JSON",
            post("/predict", "", br#"{"inputs": [[0.1,, 0.2]]}"#),
            Status(400),
            "malformed JSON",
        ),
        case(
            "empty body",
            post("/predict", "", b""),
            Status(400),
            "malformed JSON",
        ),
        case(
            "deeply nested arrays (100,000 levels) in inputs",
            post(
                "/predict",
                "",
                format!(r#"{{"inputs": {}}}"#, nested(100_000)).as_bytes(),
            ),
            Status(400),
            "nested deeper than the input's 2 dimensions",
        ),
        case(
            "deeply nested arrays (100,000 levels) in an ignored field",
            post(
                "/predict",
                "",
                format!(r#"{{"extra": {}}}"#, nested(100_000)).as_bytes(),
            ),
            Status(400),
            "no \"inputs\"",
        ),
        case(
            "deeply nested objects (100,000 levels) in V2 parameters",
            post(
                "/v2/models/model/infer",
                "",
                format!(r#"{{"parameters": {}1{}}}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000))
                    .as_bytes(),
            ),
            Status(400),
            "",
        ),
        case(
            "deeply nested arrays (100,000 levels) in V1 instances",
            post(
                "/v1/models/model:predict",
                "",
                format!(r#"{{"instances": {}}}"#, nested(100_000)).as_bytes(),
            ),
            Status(400),
            "",
        ),
        case(
            "ragged array",
            post(
                "/predict",
                "",
                &serde_json::to_vec(&json!({"inputs": [row(), vec![0.5f32; 63]]})).unwrap(),
            ),
            Status(400),
            "ragged array",
        ),
        case(
            "huge number (1e400)",
            post("/predict", "", format!(r#"{{"inputs": [[1e400{}]]}}"#, ", 0".repeat(63)).as_bytes()),
            Status(400),
            "",
        ),
        case(
            "number out of FP32 range (1e39)",
            post("/predict", "", format!(r#"{{"inputs": [[1e39{}]]}}"#, ", 0".repeat(63)).as_bytes()),
            Status(400),
            "out of range for FP32",
        ),
        case(
            "integer of 5,000 digits",
            post(
                "/predict",
                "",
                format!(r#"{{"inputs": [[{}{}]]}}"#, "9".repeat(5000), ", 0".repeat(63)).as_bytes(),
            ),
            Status(400),
            "",
        ),
        case(
            "invalid UTF-8 in a string",
            post("/predict", "", b"{\"inputs\": \"\xff\xfe\"}"),
            Status(400),
            "",
        ),
        case(
            "invalid UTF-8 in a key",
            post("/predict", "", b"{\"in\xffputs\": [[1]]}"),
            Status(400),
            "",
        ),
        case(
            "bare NaN token",
            post("/predict", "", format!(r#"{{"inputs": [[NaN{}]]}}"#, ", 0".repeat(63)).as_bytes()),
            Status(400),
            "malformed JSON",
        ),
        // Lengths and framing.
        case(
            "Content-Length shorter than the body",
            {
                let mut r = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".to_vec();
                r.extend_from_slice(&digit());
                r
            },
            Status(400),
            "malformed JSON",
        ),
        case(
            "Content-Length longer than the body, client stalls",
            {
                let mut r = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec();
                r.extend_from_slice(&digit()[..100]);
                r
            },
            Status(408),
            "--read-timeout",
        ),
        Case {
            half_close: true,
            ..case(
                "Content-Length longer than the body, client half-closes",
                {
                    let mut r =
                        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec();
                    r.extend_from_slice(&digit()[..100]);
                    r
                },
                Status(400),
                "the body ended after 100 of the 5000 bytes",
            )
        },
        case(
            "Content-Length not a number",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n".to_vec(),
            Status(400),
            "malformed JSON",
        ),
        case(
            "Content-Length and Transfer-Encoding both (chunked wins)",
            {
                let mut r = chunked("/predict", &[&digit()]);
                let at = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                r.splice(at + 2..at + 2, b"Content-Length: 3\r\n".iter().copied());
                r
            },
            Status(200),
            "",
        ),
        case(
            "chunked body, valid",
            {
                let body = digit();
                let (a, b) = body.split_at(body.len() / 3);
                chunked("/predict", &[a, b])
            },
            Status(200),
            "",
        ),
        case(
            "chunked body, invalid chunk size",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            Status(400),
            "malformed chunked body",
        ),
        case(
            "chunked body over --max-body",
            chunked("/predict", &[&vec![b' '; 700 * 1024], &vec![b' '; 700 * 1024]]),
            Status(413),
            "over the limit of 1048576 bytes",
        ),
        case(
            "chunked body whose chunk never arrives",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{\"inputs\""
                .to_vec(),
            Status(408),
            "--read-timeout",
        ),
        case(
            "declared body far over the limit (200 MiB), not sent",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n".to_vec(),
            Status(413),
            "over the limit of 1048576 bytes",
        ),
        case(
            "Expect: 100-continue with a body over the limit",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"
                .to_vec(),
            Status(413),
            "over the limit",
        ),
        case(
            "Expect: something other than 100-continue",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            Status(417),
            "",
        ),
        // Heads.
        case(
            "header of 64 KiB",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 << 10))
                .into_bytes(),
            Status(200),
            "",
        ),
        case(
            "10,000 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-Many: 1\r\n".repeat(10_000))
                .into_bytes(),
            Status(200),
            "",
        ),
        case(
            "non-ASCII header bytes",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Name: café\r\n\r\n".as_bytes().to_vec(),
            ClosedWithoutAnswer,
            "",
        ),
        case(
            "non-ASCII bytes in the path",
            "GET /prédict HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes().to_vec(),
            ClosedWithoutAnswer,
            "",
        ),
        case(
            "header line without a colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n".to_vec(),
            Status(400),
            "",
        ),
        case(
            "garbage request line",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            ClosedWithoutAnswer,
            "",
        ),
        case(
            "request line that is not HTTP",
            b"HELLO\r\n\r\n".to_vec(),
            Status(400),
            "",
        ),
        case(
            "unknown method on a route",
            b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Status(405),
            "BREW is not allowed on /",
        ),
        case(
            "unknown method on an unknown path",
            b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Status(404),
            "no route for /pot",
        ),
        // tiny_http means to answer 505, but waits for the writer of the request it is
        // refusing, which it still holds: its connection thread deadlocks (docs/robustness.md).
        case(
            "HTTP/2.0 request line",
            b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
            Hangs,
            "",
        ),
        case(
            "path of 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8 << 10)).into_bytes(),
            Status(404),
            "no route for",
        ),
        case(
            "invalid percent-encoding in the path",
            b"GET /v2/models/%zz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Status(400),
            "invalid percent-encoding",
        ),
        // The binary tensor data extension, with sizes that lie.
        case(
            "V2 binary: header length over the body",
            v2_binary(&infer_header(256, json!([1, 64])), &fp32_bytes(64), Some(100_000)),
            Status(400),
            "Inference-Header-Content-Length is 100000 but the body has only",
        ),
        case(
            "V2 binary: header length inside the JSON",
            v2_binary(&infer_header(256, json!([1, 64])), &fp32_bytes(64), Some(20)),
            Status(400),
            "malformed JSON",
        ),
        case(
            "V2 binary: header length not a number",
            post(
                "/v2/models/model/infer",
                "Inference-Header-Content-Length: -1\r\n",
                b"{}",
            ),
            Status(400),
            "must be a byte count",
        ),
        case(
            "V2 binary: binary_data_size over the data sent",
            v2_binary(&infer_header(4096, json!([1, 64])), &fp32_bytes(64), None),
            Status(400),
            "binary_data_size is 4096 but only 256 bytes",
        ),
        case(
            "V2 binary: binary_data_size of 2^63",
            v2_binary(&infer_header(1 << 63, json!([1, 64])), &fp32_bytes(64), None),
            Status(400),
            "binary_data_size",
        ),
        case(
            "V2 binary: binary_data_size under the data sent",
            v2_binary(&infer_header(128, json!([1, 64])), &fp32_bytes(64), None),
            Status(400),
            "",
        ),
        case(
            "V2 binary: binary_data_size not a whole number of elements",
            v2_binary(&infer_header(255, json!([1, 64])), &fp32_bytes(64)[..255], None),
            Status(400),
            "not a whole number of FP32 elements",
        ),
        case(
            "V2 binary: shape claims more elements than the data",
            v2_binary(&infer_header(256, json!([1000000, 64])), &fp32_bytes(64), None),
            Status(400),
            "",
        ),
        case(
            "V2 binary: raw body of the wrong size",
            post(
                "/v2/models/model/infer",
                "Inference-Header-Content-Length: 0\r\n",
                &fp32_bytes(63),
            ),
            Status(400),
            "",
        ),
    ]
}

#[test]
fn every_bad_request_gets_a_clear_answer_and_the_server_goes_on() {
    let server = server();
    let mut table = String::from("| case | answer |\n|---|---|\n");
    let mut failures = Vec::new();
    for case in bad_request_cases() {
        let started = Instant::now();
        // Long enough for the cases that wait for --read-timeout.
        let wait = Duration::from_secs(if case.expect == Hangs { 3 } else { 20 });
        let result = send(&server, case.request, case.half_close, wait);
        let took = started.elapsed();
        let got = match &result {
            Ok(reply) => Status(reply.status),
            Err(e) if e == "hangs" => Hangs,
            Err(_) => ClosedWithoutAnswer,
        };
        let detail = match &result {
            Ok(reply)
                if reply.status >= 400
                    && reply.header("Content-Type").as_deref() == Some("application/json") =>
            {
                reply.error()
            }
            Ok(reply) => String::from_utf8_lossy(&reply.body)
                .chars()
                .take(60)
                .collect(),
            Err(e) => e.clone(),
        };
        let answer = match got {
            Status(s) => format!("{s} {}", common_reason(s)),
            ClosedWithoutAnswer => "connection closed, no answer".into(),
            Hangs => "no answer, connection left open".into(),
        };
        table.push_str(&format!("| {} | {answer} |\n", case.name));
        if got != case.expect {
            failures.push(format!(
                "{}: expected {:?}, got {got:?} ({detail}) in {took:?}",
                case.name, case.expect
            ));
        } else if !case.message.is_empty() && !detail.contains(case.message) {
            failures.push(format!(
                "{}: the message {detail:?} does not say {:?}",
                case.name, case.message
            ));
        } else if let (Ok(reply), Status(s)) = (&result, got)
            && s >= 400
            && reply
                .header("Server")
                .is_some_and(|v| v.starts_with("onnx-serve"))
        {
            // Our own errors keep the contract: JSON, {"error": "..."}.
            let _ = reply.error();
        }
        assert_still_serving(&server, case.name);
    }
    println!("{table}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn common_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = server();
    let mut stream = server.connect();
    let mut requests = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\n\r\n".to_vec();
    requests.extend_from_slice(&post("/predict", "X-Request-Id: two\r\n", &digit()));
    requests.extend_from_slice(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Request-Id: three\r\n\r\n");
    stream.write_all(&requests).unwrap();
    for (id, needle) in [("one", "ok"), ("two", "outputs"), ("three", "ready")] {
        let reply = read_response(&mut stream).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("X-Request-Id").as_deref(), Some(id));
        assert!(String::from_utf8_lossy(&reply.body).contains(needle));
    }
    assert_still_serving(&server, "pipelined requests");
}

#[test]
fn expect_100_continue_gets_the_interim_answer_then_the_prediction() {
    let server = server();
    let mut stream = server.connect();
    let body = digit();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let interim = read_response(&mut stream).unwrap();
    assert_eq!(interim.status, 100, "{}", interim.head);
    stream.write_all(&body).unwrap();
    let reply = read_response(&mut stream).unwrap();
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains("outputs"));
    assert_still_serving(&server, "Expect: 100-continue");
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = server();
    let body = digit();
    let request = |keep_alive: bool| {
        let mut r = format!(
            "POST /predict HTTP/1.0\r\n{}Content-Length: {}\r\n\r\n",
            if keep_alive {
                "Connection: keep-alive\r\n"
            } else {
                ""
            },
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };

    let mut stream = server.connect();
    stream.write_all(&request(false)).unwrap();
    let reply = read_response(&mut stream).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection").as_deref(), Some("close"));
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0, "closed after it");

    let mut stream = server.connect();
    for _ in 0..3 {
        stream.write_all(&request(true)).unwrap();
        let reply = read_response(&mut stream).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Connection").as_deref(), Some("keep-alive"));
    }
    assert_still_serving(&server, "HTTP/1.0");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = server();
    let mut stream = server.connect();
    let reply = common::exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 200);
    let idle = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap_or(0), 0);
    let closed_after = idle.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?} with --keep-alive-timeout 1s"
    );
}

/// Sequential predictions on one kept-alive connection: their median time.
fn median_predict_time(server: &Server, samples: usize) -> Duration {
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let request = post("/predict", "", &digit());
    let mut times = Vec::new();
    for _ in 0..samples {
        let started = Instant::now();
        stream.write_all(&request).unwrap();
        let reply = read_response(&mut stream).expect("an answer within 5 s");
        times.push(started.elapsed());
        assert_eq!(reply.status, 200);
    }
    times.sort();
    times[samples / 2]
}

#[test]
fn fifty_stalled_clients_do_not_delay_a_normal_request() {
    // Bodies are read on the request's own thread before it takes a worker slot, so clients
    // that stop sending hold threads, never the two workers.
    let server = Server::builder().args(["--workers", "2"]).start();
    let unloaded = median_predict_time(&server, 21);

    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut stream = server.connect();
        let sent: Vec<u8> = match i % 3 {
            // A head that never ends.
            0 => b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec(),
            // A body that stops a fifth of the way.
            1 => {
                let mut r =
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n".to_vec();
                r.extend_from_slice(&digit()[..200]);
                r
            }
            // A whole head, and no body at all.
            _ => b"POST /v2/models/model/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n"
                .to_vec(),
        };
        stream.write_all(&sent).unwrap();
        stalled.push(stream);
    }
    // Let every stalled request reach the point where it waits.
    thread::sleep(Duration::from_millis(300));
    let loaded = median_predict_time(&server, 21);
    assert!(
        loaded < unloaded + Duration::from_millis(100),
        "50 stalled clients delayed a prediction from {unloaded:?} to {loaded:?}"
    );
    drop(stalled);
    assert_still_serving(&server, "50 stalled clients");
}

/// Opens `n` connections and sends one request on each before reading any answer: all of
/// them are open at once. Returns how many got a 200.
fn connections_at_once(server: &Server, n: usize) -> usize {
    let mut streams = Vec::new();
    for _ in 0..n {
        match TcpStream::connect(server.addr) {
            Ok(stream) => streams.push(stream),
            Err(_) => break,
        }
    }
    let mut answered = 0;
    for stream in &mut streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_ok()
            && read_response(stream).is_ok_and(|r| r.status == 200)
        {
            answered += 1;
        }
    }
    answered
}

fn hard_open_files_limit() -> u64 {
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().unwrap_or(u64::MAX) // "unlimited"
}

#[test]
fn a_low_soft_open_file_limit_is_raised_so_a_flood_of_connections_is_served() {
    if hard_open_files_limit() < 1024 {
        eprintln!("skipped: the hard open-file limit is under 1024 here");
        return;
    }
    // Each connection costs tiny_http two descriptors: 64 would last about 20 connections.
    // The last connection waits idle for every answer before it: no idle timeout here.
    let server = Server::builder()
        .shell_first("ulimit -Sn 64")
        .args(["--keep-alive-timeout", "0"])
        .start();
    assert!(
        server.log().contains("open-file limit raised from 64 to"),
        "{}",
        server.log()
    );
    assert_eq!(connections_at_once(&server, 300), 300);
    assert_still_serving(&server, "300 connections at once");
}

#[test]
fn when_the_listener_dies_of_a_connection_flood_the_server_exits_1_for_its_supervisor() {
    // With no room to raise the limit, accept() fails with EMFILE, which ends tiny_http's
    // accept loop: the port would still take connections and never answer them.
    let mut server = Server::builder().shell_first("ulimit -n 64").start();
    assert!(
        server.log().contains("open-file limit: 64"),
        "{}",
        server.log()
    );
    let flood: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits");
    drop(flood);
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(
        server
            .log()
            .contains("exiting so that a supervisor can restart the server"),
        "{}",
        server.log()
    );
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// What tiny_http 0.12 does that our layer cannot prevent, shown so that docs/robustness.md's
/// threat model stays true: if one of these starts to fail, tiny_http changed.
/// deploy/nginx.conf closes both (tests/proxy.rs).
#[test]
fn tiny_http_defects_that_only_a_proxy_closes() {
    // 1. Each HTTP/2.0 request line deadlocks its connection thread for good: a thread and
    //    two descriptors leaked, whatever the timeouts.
    let mut server = server();
    let before = threads_of(server.pid());
    let stuck: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    drop(stuck);
    // Well past --keep-alive-timeout (1s), which ends every other kind of idle connection.
    thread::sleep(Duration::from_secs(3));
    let after = threads_of(server.pid());
    assert!(
        after >= before + 8,
        "threads: {before} before, {after} after"
    );
    assert_still_serving(&server, "HTTP/2.0 request lines");

    // 2. A request refused unread (413) whose Content-Length is beyond the machine's memory:
    //    when the request is dropped tiny_http allocates the declared size to drain it, and
    //    the failed allocation aborts the whole process.
    let mut stream = server.connect();
    let reply = common::exchange(
        &mut stream,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n",
    );
    assert_eq!(reply.status, 413);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the process was expected to abort: {status:?}"
    );
    // Rust prints this message in pieces, unbuffered, and the logger thread may write the
    // 413's access line between two of them: look for each piece.
    assert!(
        server.wait_for_log("bytes failed", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    for piece in ["memory allocation of ", "1000000000000000", " bytes failed"] {
        assert!(log.contains(piece), "{piece:?} in {log}");
    }
}
