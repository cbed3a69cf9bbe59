//! Dynamic batching (`--max-batch-size`, `--batch-delay-us`) and intra-op threads
//! (`--intra-op-threads`), over a real socket: concurrent callers are stacked into shared
//! runs, and each still gets exactly its own rows.

use crate::common;

use common::{Server, binary, concurrent_clients, fixture, fixture_model, read_json, repo, row};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

fn holdout() -> Value {
    read_json(&fixture("digits_holdout.json"))
}

fn max_diff(got: &Value, expected: &Value) -> f64 {
    row(got)
        .iter()
        .zip(row(expected))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// 64 clients at once, each sending its own rows (1 to 4 of them, a different slice of the
/// hold-out set per client and round) through `/predict` or the V2 JSON route, and checking
/// that the probabilities it gets back are those of its rows (onnxruntime's, to 1e-5).
fn sixty_four_clients_get_their_own_rows(server: &Server) {
    let data = holdout();
    concurrent_clients(64, |client| {
        for round in 0..4 {
            let n = 1 + (client + round) % 4;
            let start = (client * 7 + round * 3) % 440;
            let rows = &data["inputs"].as_array().unwrap()[start..start + n];
            let outputs = if (client + round) % 2 == 0 {
                server.predict(json!(rows)).outputs()
            } else {
                let flat: Vec<&Value> = rows.iter().flat_map(|r| r.as_array().unwrap()).collect();
                let reply = server.post_json(
                    "/v2/models/model/infer",
                    &json!({"inputs": [{"name": "input", "shape": [n, 64],
                                        "datatype": "FP32", "data": flat}]}),
                );
                assert_eq!(reply.status, 200, "{}", reply.text());
                let output = &reply.json()["outputs"][0];
                assert_eq!(output["shape"], json!([n, 10]));
                let data = output["data"].as_array().unwrap().clone();
                Value::Array(data.chunks(10).map(|c| Value::from(c.to_vec())).collect())
            };
            let outputs = outputs.as_array().unwrap();
            assert_eq!(outputs.len(), n, "client {client} round {round}");
            for (i, got) in outputs.iter().enumerate() {
                let diff = max_diff(got, &data["probabilities"][start + i]);
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
fn concurrent_requests_are_batched_and_each_gets_its_own_rows() {
    let server = Server::builder()
        .args(["--max-batch-size", "32", "--batch-delay-us", "2000"])
        .args(["--workers", "2"])
        .env("RUST_LOG", "info,onnx_serve::engine::batcher=debug")
        .start();
    sixty_four_clients_get_their_own_rows(&server);
    // The runs really were shared: some batch stacked several requests, none over the limit.
    let log = server.log();
    let batches: Vec<(usize, usize)> = log
        .lines()
        .filter_map(|line| {
            let rest = line.split("running a batch of ").nth(1)?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            Some((words[0].parse().ok()?, words[3].parse().ok()?))
        })
        .collect();
    assert!(
        batches.iter().any(|&(_, requests)| requests > 1),
        "no batch held several requests: {batches:?}"
    );
    assert!(batches.iter().all(|&(rows, _)| rows <= 32), "{batches:?}");

    // /metrics counts the same runs: every row sent, in fewer runs than requests.
    let rows_sent: usize = (0..64)
        .flat_map(|client| (0..4).map(move |round| 1 + (client + round) % 4))
        .sum();
    assert_eq!(server.metric("onnx_serve_batch_size_sum"), rows_sent as f64);
    let runs = server.metric("onnx_serve_batch_size_count");
    assert!(runs < 256.0, "{runs} runs for 256 requests");
    assert_eq!(
        server.metric("onnx_serve_inference_duration_seconds_count"),
        runs
    );
}

#[test]
fn only_requests_of_the_same_inner_shape_share_a_batch() {
    // seq.onnx: x [batch, seq] -> doubled [batch, seq], total [batch]. Clients send
    // different sequence lengths at once; each answer must match its own input.
    let server = Server::builder()
        .args(["--model", &fixture_model("seq.onnx")])
        .args(["--max-batch-size", "16", "--batch-delay-us", "3000"])
        .start();
    concurrent_clients(24, |client| {
        let (rows, seq) = (1 + client % 2, 2 + client % 3);
        let x: Vec<Vec<f64>> = (0..rows)
            .map(|r| (0..seq).map(|i| (client * 10 + r * 3 + i) as f64).collect())
            .collect();
        let outputs = server.predict(json!(x)).outputs();
        let doubled: Vec<Vec<f64>> = x
            .iter()
            .map(|r| r.iter().map(|v| v * 2.0).collect())
            .collect();
        let total: Vec<f64> = x.iter().map(|r| r.iter().sum()).collect();
        assert_eq!(outputs["doubled"], json!(doubled), "client {client}");
        assert_eq!(outputs["total"], json!(total), "client {client}");
    });
}

#[test]
fn batching_a_model_without_a_batch_dimension_stops_start_up() {
    let output = Command::new(binary())
        .args(["--model", &fixture_model("fixed.onnx"), "--port", "0"])
        .args(["--max-batch-size", "8"])
        .current_dir(repo())
        .env_remove("PORT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--max-batch-size needs a model whose inputs and outputs all start"),
        "{stderr}"
    );
}

#[test]
fn intra_op_threads_give_the_same_answers() {
    let server = Server::builder().args(["--intra-op-threads", "2"]).start();
    assert!(server.wait_for_log(
        "may use 2 threads (--intra-op-threads)",
        Duration::from_secs(5)
    ));
    // Alone (the pool is used) and with 64 at once (each run on its own thread).
    let data = holdout();
    let rows = &data["inputs"].as_array().unwrap()[..50];
    let outputs = server.predict(json!(rows)).outputs();
    for (i, got) in outputs.as_array().unwrap().iter().enumerate() {
        assert!(max_diff(got, &data["probabilities"][i]) < 1e-5, "row {i}");
    }
    sixty_four_clients_get_their_own_rows(&server);
}
