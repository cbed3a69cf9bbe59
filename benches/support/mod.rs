//! What the benchmarks share: the models to measure, request bodies, a timer, a closed-loop
//! HTTP load generator and the server's resident memory.

#![allow(dead_code)] // each bench uses its own part of this module

#[path = "../../tests/common/mod.rs"]
pub mod common;

use onnx_serve::api::simple::decode_request;
use onnx_serve::engine::Model;
use onnx_serve::tensor::{Tensor, TensorData};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

/// A model and the `/predict` body it is measured with.
pub struct Case {
    pub name: String,
    pub model: PathBuf,
    pub body: PathBuf,
}

/// The bundled digits model, and the models of `../shared/bench/make_models.py` found in
/// `$BENCH_CACHE` (default `~/.cache/onnx-serve-bench`), restricted to the names given on
/// the command line, if any.
pub fn cases() -> Vec<Case> {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut cases = vec![Case {
        name: "digits".into(),
        model: common::repo().join("model.onnx"),
        body: common::fixture("digit.json"),
    }];
    let cache = std::env::var_os("BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/onnx-serve-bench")
        });
    for name in ["squeezenet", "resnet50"] {
        let model = cache.join(format!("models/{name}.onnx"));
        let body = cache.join(format!("bodies/{name}.json"));
        if model.exists() && body.exists() {
            cases.push(Case {
                name: name.into(),
                model,
                body,
            });
        } else {
            eprintln!(
                "({name}: no {} or {}; run ../shared/bench/compare.sh once)",
                model.display(),
                body.display()
            );
        }
    }
    cases.retain(|c| wanted.is_empty() || wanted.contains(&c.name));
    cases
}

impl Case {
    pub fn json_body(&self) -> Vec<u8> {
        std::fs::read(&self.body).unwrap()
    }

    pub fn model_path(&self) -> String {
        self.model.display().to_string()
    }

    /// The inputs of the JSON body, decoded.
    pub fn inputs(&self, model: &Model) -> Vec<Tensor> {
        decode_request(model.signature(), &self.json_body(), 1).unwrap()
    }
}

/// The same inputs as a V2 binary request (binary outputs asked for too, as tritonclient
/// does by default): the JSON header and its length, then the raw little-endian data.
pub fn v2_binary_body(model: &Model, inputs: &[Tensor]) -> (Vec<u8>, usize) {
    let signature = model.signature();
    let header_inputs: Vec<serde_json::Value> = signature
        .inputs
        .iter()
        .zip(inputs)
        .map(|(spec, t)| {
            serde_json::json!({
                "name": spec.name,
                "shape": t.shape,
                "datatype": spec.datatype.name(),
                "parameters": {"binary_data_size": fp32(t).len() * 4},
            })
        })
        .collect();
    let header = serde_json::json!({
        "inputs": header_inputs,
        "parameters": {"binary_data_output": true},
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let header_length = body.len();
    for t in inputs {
        body.extend(fp32(t).iter().flat_map(|v| v.to_le_bytes()));
    }
    (body, header_length)
}

fn fp32(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::Fp32(v) => v,
        other => panic!("the benchmark models take FP32, not {}", other.datatype()),
    }
}

/// An HTTP request, ready to send again and again on a kept-alive connection.
pub fn http_post(path: &str, extra_headers: &str, body: &[u8]) -> Arc<[u8]> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.into()
}

pub fn http_get(path: &str) -> Arc<[u8]> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
        .into_bytes()
        .into()
}

/// `POST /predict` with the case's JSON body.
pub fn predict_request(case: &Case) -> Arc<[u8]> {
    http_post("/predict", "", &case.json_body())
}

/// `POST /v2/models/{m}/infer` with a binary body.
pub fn v2_binary_request(model: &Model, inputs: &[Tensor]) -> Arc<[u8]> {
    let (body, header_length) = v2_binary_body(model, inputs);
    http_post(
        "/v2/models/bench/infer",
        &format!("Inference-Header-Content-Length: {header_length}\r\n"),
        &body,
    )
}

/// tract's own optimized plan for the file, and the inputs as tract values: what a Rust
/// program embedding tract would run, with no server and no conversion.
pub struct TractAlone {
    plan: Arc<TypedRunnableModel>,
    values: TVec<TValue>,
}

impl TractAlone {
    pub fn new(case: &Case, inputs: &[Tensor]) -> TractAlone {
        let plan = tract_onnx::onnx()
            .model_for_path(&case.model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let values = inputs
            .iter()
            .map(|t| {
                tract_ndarray::ArrayD::from_shape_vec(t.shape.clone(), fp32(t).to_vec())
                    .unwrap()
                    .into_tvalue()
            })
            .collect();
        TractAlone { plan, values }
    }

    pub fn run(&self) {
        std::hint::black_box(self.plan.run(self.values.clone()).unwrap());
    }
}

/// How long each timed stage repeats, at most (and at most `MAX_RUNS` times).
pub const STAGE_TIME: Duration = Duration::from_secs(2);
pub const MAX_RUNS: usize = 2000;

/// Median wall time of `f` after one warm-up call.
pub fn median_of<T>(mut f: impl FnMut() -> T) -> Duration {
    std::hint::black_box(f());
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MAX_RUNS && (started.elapsed() < STAGE_TIME || times.len() < 5) {
        let t = Instant::now();
        std::hint::black_box(f());
        times.push(t.elapsed());
    }
    median(&mut times)
}

/// Median wall times of several stages measured in turn, one batch of each per round, so
/// that the machine speeding up or slowing down (it is shared) moves all of them alike and
/// their ratios hold. A batch repeats a stage for about `BATCH_TIME`, so that a stage of a
/// few microseconds is timed warm, not right after another stage took its caches.
pub fn medians_in_turn<const N: usize>(mut stages: [&mut dyn FnMut(); N]) -> [Duration; N] {
    const BATCH_TIME: Duration = Duration::from_millis(2);
    let batch_sizes: [u32; N] = std::array::from_fn(|i| {
        let t = Instant::now();
        stages[i]();
        (BATCH_TIME.as_nanos() / t.elapsed().as_nanos().max(1)).clamp(1, 10_000) as u32
    });
    let started = Instant::now();
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    while times[0].len() < MAX_RUNS
        && (started.elapsed() < N as u32 * STAGE_TIME || times[0].len() < 5)
    {
        for ((f, times), &batch) in stages.iter_mut().zip(&mut times).zip(&batch_sizes) {
            let t = Instant::now();
            (0..batch).for_each(|_| f());
            times.push(t.elapsed() / batch);
        }
    }
    times.map(|mut t| median(&mut t))
}

pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Calls of `f` per second on `threads` threads for `duration`.
pub fn rate_in_process(threads: usize, duration: Duration, f: impl Fn() + Sync) -> f64 {
    let barrier = Barrier::new(threads);
    let counts: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let deadline = Instant::now() + duration;
                    let mut n = 0;
                    while Instant::now() < deadline {
                        f();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.iter().sum::<usize>() as f64 / duration.as_secs_f64()
}

/// What a closed-loop load run saw.
pub struct Load {
    pub per_second: f64,
    pub median: Duration,
    /// Answers other than 200, and connections that failed.
    pub errors: usize,
}

/// `clients` connections, each sending `request` again as soon as its previous answer
/// arrived (like wrk), for `duration`, after a short warm-up.
pub fn load(addr: SocketAddr, request: &Arc<[u8]>, clients: usize, duration: Duration) -> Load {
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            let barrier = barrier.clone();
            thread::spawn(move || client_loop(addr, &request, &barrier, duration))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let (mine, failed) = handle.join().unwrap();
        latencies.extend(mine);
        errors += failed;
    }
    Load {
        per_second: latencies.len() as f64 / duration.as_secs_f64(),
        median: median(&mut latencies),
        errors,
    }
}

/// One kept-alive connection that sends a request and reads its answer with a buffered
/// reader (the tests' helper reads byte by byte, which would add to the times measured).
pub struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(1 << 16, stream),
        })
    }

    /// Sends `request` and reads the answer; true when its status is 200.
    pub fn exchange(&mut self, request: &[u8]) -> std::io::Result<bool> {
        self.writer.write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let ok = line.split_whitespace().nth(1) == Some("200");
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(
            &mut (&mut self.reader).take(length as u64),
            &mut std::io::sink(),
        )?;
        Ok(ok)
    }
}

/// One request on `connection`, which must be answered with 200.
pub fn exchange_ok(connection: &mut Connection, request: &[u8]) {
    assert!(connection.exchange(request).unwrap(), "a 200 answer");
}

fn client_loop(
    addr: SocketAddr,
    request: &[u8],
    barrier: &Barrier,
    duration: Duration,
) -> (Vec<Duration>, usize) {
    let mut connection = Connection::open(addr).expect("connect");
    // Warm-up: the connection and the server's threads.
    for _ in 0..3 {
        if !matches!(connection.exchange(request), Ok(true)) {
            barrier.wait();
            return (Vec::new(), 1);
        }
    }
    barrier.wait();
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        match connection.exchange(request) {
            Ok(true) => latencies.push(started.elapsed()),
            Ok(false) => errors += 1,
            Err(_) => return (latencies, errors + 1),
        }
    }
    (latencies, errors)
}

/// Resident memory of a process, in MiB (`VmRSS`).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub fn kib(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// The servers' log filter: no access lines, but the start-up line the harness reads the
/// address from.
pub const QUIET_LOG: &str = "warn,onnx_serve=info,onnx_serve::access=warn";
