//! Memory under concurrent load: runs of a model with large activations, moved from thread
//! to thread, must not make the server hold a run's memory many times over
//! (`src/engine/run_threads.rs`).

use crate::common;

use common::{Server, concurrent_clients, row};
use serde_json::json;

/// wide.onnx: y = sin(x) * x after a 16 MiB activation and more per run.
fn wide_input() -> Vec<f64> {
    (0..64).map(|i| -3.0 + 6.0 * i as f64 / 63.0).collect()
}

fn check_answer(reply: common::Reply, input: &[f64]) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let got = row(&reply.outputs()[0]);
    for (x, y) in input.iter().zip(&got) {
        // A float32 mean over 65536 rows drifts by about 1e-3.
        assert!((x.sin() * x - y).abs() < 1e-2, "sin({x}) * {x} = {y}?");
    }
}

/// Resident memory, current and peak, of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
#[cfg(target_os = "linux")]
fn sixteen_clients_hold_a_few_runs_worth_of_memory_not_one_per_thread() {
    let server = Server::builder()
        .args(["--model", &common::fixture_model("wide.onnx")])
        .args(["--workers", "2"])
        .start();
    let input = wide_input();
    let (at_start, _) = rss_kib(server.pid());

    // One client: what the runs of two workers need, once the runs are known to be long.
    for _ in 0..8 {
        check_answer(server.predict(json!([input])), &input);
    }
    let (_, peak_alone) = rss_kib(server.pid());
    let runs_worth = peak_alone.saturating_sub(at_start).max(16 * 1024);

    // Sixteen clients: their requests land on many request threads.
    concurrent_clients(16, |_| {
        for _ in 0..6 {
            check_answer(server.predict(json!([input])), &input);
        }
    });
    let (_, peak_loaded) = rss_kib(server.pid());
    let growth = peak_loaded.saturating_sub(at_start);
    // With every run on its request's thread, 16 clients grew it by 9.3 times what one did
    // (each thread's malloc arena keeping a run's activations); on the run threads, by 2.1
    // to 3.6 times (8 runs, 2026-12-04).
    assert!(
        growth <= 6 * runs_worth,
        "16 clients grew the server by {} MiB, one client by {} MiB",
        growth / 1024,
        runs_worth / 1024
    );
}
