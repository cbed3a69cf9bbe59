//! Where the time of one prediction goes, stage by stage, for each benchmark model.
//!
//! `cargo bench --bench costs` (release build) prints one table: JSON decode, tract alone
//! (its own optimized plan, no conversion), our model wrapper (conversion + run), JSON
//! encode, the whole in-process JSON path, and the HTTP round trip over loopback to the
//! real binary on one kept-alive connection.
//!
//! Models: the bundled digits model with `tests/fixtures/digit.json`, plus every model of
//! `../shared/bench/make_models.py` found in `$BENCH_CACHE` (default
//! `~/.cache/onnx-serve-bench`, where `../shared/bench/compare.sh` writes them) with its
//! load body. `cargo bench --bench costs -- NAME...` runs only the named models.

#[path = "../tests/common/mod.rs"]
mod common;

use onnx_serve::api::simple::{decode_request, encode_response, predict_json};
use onnx_serve::model::Model;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

/// How long each stage is repeated, at most (and at most `MAX_RUNS` times).
const STAGE_TIME: Duration = Duration::from_secs(2);
const MAX_RUNS: usize = 2000;

struct Case {
    name: String,
    model: PathBuf,
    body: PathBuf,
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
        .collect();
    println!(
        "median per request, {} runs or {:?} per stage at most\n",
        MAX_RUNS, STAGE_TIME
    );
    println!(
        "| model | body | JSON decode | tract alone | model.run | JSON encode | in-process total | HTTP round trip | HTTP / tract |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for case in cases {
        measure(&case);
    }
}

fn cases() -> Vec<Case> {
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
    for name in ["digits_mlp", "squeezenet", "resnet50"] {
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
    cases
}

fn measure(case: &Case) {
    let body = std::fs::read(&case.body).unwrap();
    let model = Model::load(&case.model).unwrap_or_else(|e| panic!("{e}"));
    let signature = model.signature();

    let decode = median_of(|| decode_request(signature, &body).unwrap());
    let inputs = decode_request(signature, &body).unwrap();
    let run = median_of(|| model.run(inputs.clone()).unwrap());
    let outputs = model.run(inputs.clone()).unwrap();
    let encode = median_of(|| encode_response(signature, &outputs));
    let total = median_of(|| predict_json(&model, &body).unwrap());
    let tract = tract_alone(&case.model, &inputs);
    let http = http_round_trip(&case.model, &body);

    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2}x |",
        case.name,
        kib(body.len()),
        ms(decode),
        ms(tract),
        ms(run),
        ms(encode),
        ms(total),
        ms(http),
        http.as_secs_f64() / tract.as_secs_f64()
    );
}

/// tract's own time: its optimized plan run on a tract tensor built once, as a Rust program
/// embedding tract would do it.
fn tract_alone(path: &Path, inputs: &[onnx_serve::tensor::Tensor]) -> Duration {
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let values: TVec<TValue> = inputs
        .iter()
        .map(|t| {
            let floats = match &t.data {
                onnx_serve::tensor::TensorData::Fp32(v) => v.clone(),
                other => panic!("the benchmark models take FP32, not {:?}", other.datatype()),
            };
            let shape: Vec<usize> = t.shape.clone();
            tract_ndarray::ArrayD::from_shape_vec(shape, floats)
                .unwrap()
                .into_tvalue()
        })
        .collect();
    median_of(|| plan.run(values.clone()).unwrap())
}

/// One kept-alive connection to the real binary, one request at a time.
fn http_round_trip(path: &Path, body: &[u8]) -> Duration {
    let server = common::Server::builder()
        .args(["--model", &path.display().to_string()])
        .env("RUST_LOG", "warn")
        .start();
    let mut request = format!(
        "POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    median_of(|| {
        let reply = common::exchange(&mut stream, &request);
        assert_eq!(reply.status, 200);
        reply
    })
}

/// Median wall time of `f` after one warm-up call.
fn median_of<T>(mut f: impl FnMut() -> T) -> Duration {
    std::hint::black_box(f());
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MAX_RUNS && (started.elapsed() < STAGE_TIME || times.len() < 5) {
        let t = Instant::now();
        std::hint::black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn kib(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}
