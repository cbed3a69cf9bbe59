//! The server under load, next to tract alone, for each benchmark model; then memory and
//! start-up.
//!
//! `cargo bench --bench throughput [-- MODEL...]` prints, per model:
//! - tract alone in-process on as many threads as the server has workers, against the
//!   server at 16 clients with V2 binary bodies and with JSON bodies (closed loop, one
//!   kept-alive connection per client, like wrk);
//! - 1-client median latency with V2 binary and JSON bodies, with and without
//!   `--intra-op-threads`, each timed in turn with tract alone on one thread;
//! - 64 clients with and without dynamic batching (`--max-batch-size`);
//! - time from process start to `/readyz` 200, resident memory after start-up and after the
//!   load, and the model file's size.
//!
//! `BENCH_SECONDS` sets the length of each load run (default 5).

mod support;

use onnx_serve::engine::Model;
use std::time::{Duration, Instant};
use support::common::Server;
use support::{Case, Connection, TractAlone, load, ms, rss_mib};

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let duration = Duration::from_secs_f64(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cores} cores; {seconds} s per load run; req/s and medians from one run each\n");
    for case in support::cases() {
        measure(&case, cores, duration);
    }
}

fn start(case: &Case, extra: &[&str]) -> Server {
    Server::builder()
        .args(["--model", &case.model_path(), "--model-name", "bench"])
        .args(extra.iter().copied())
        .env("RUST_LOG", support::QUIET_LOG)
        .start()
}

fn measure(case: &Case, cores: usize, duration: Duration) {
    let model = Model::load(&case.model).unwrap_or_else(|e| panic!("{e}"));
    let inputs = case.inputs(&model);
    let binary = support::v2_binary_request(&model, &inputs);
    let json = support::predict_request(case);
    let tract = TractAlone::new(case, &inputs);
    println!("## {}\n", case.name);

    // Throughput: tract alone on `cores` threads vs the server at 16 clients.
    let tract_rate = support::rate_in_process(cores, duration, || tract.run());
    let server = start(case, &[]);
    let binary_16 = load(server.addr, &binary, 16, duration);
    let json_16 = load(server.addr, &json, 16, duration);
    let healthz = support::http_get("/healthz");
    let healthz_16 = load(server.addr, &healthz, 16, duration);
    drop(server);
    println!("| 16 clients | req/s | median | errors | vs tract alone |");
    println!("|---|---:|---:|---:|---:|");
    println!("| tract alone, {cores} threads in-process | {tract_rate:.1} | | | 1.00x |");
    for (label, run) in [("V2 binary", &binary_16), ("JSON /predict", &json_16)] {
        println!(
            "| server, {label} | {:.1} | {} | {} | {:.2}x |",
            run.per_second,
            ms(run.median),
            run.errors,
            run.per_second / tract_rate
        );
    }
    println!(
        "| server, GET /healthz (the HTTP ceiling) | {:.1} | {} | {} | JSON /predict is {:.0}% of it |",
        healthz_16.per_second,
        ms(healthz_16.median),
        healthz_16.errors,
        100.0 * json_16.per_second / healthz_16.per_second
    );

    // Latency at 1 client, with and without intra-op threads. Tract alone is timed in turn
    // with each server's round trips, so each ratio comes from the same moments of a shared
    // machine.
    let threads = cores.to_string();
    let mut rows = Vec::new();
    for (label, extra) in [
        ("1 thread per run", vec![]),
        ("--intra-op-threads", vec!["--intra-op-threads", &threads]),
    ] {
        let server = start(case, &extra);
        let mut binary_connection = Connection::open(server.addr).expect("connect");
        let mut json_connection = Connection::open(server.addr).expect("connect");
        let medians = support::medians_in_turn([
            &mut || tract.run(),
            &mut || support::exchange_ok(&mut binary_connection, &binary),
            &mut || support::exchange_ok(&mut json_connection, &json),
        ]);
        rows.push((label, medians));
    }
    println!("\n| 1 client | V2 binary median | JSON median |");
    println!("|---|---:|---:|");
    println!("| tract alone, 1 thread | {} | |", ms(rows[0].1[0]));
    for (label, [tract_one, binary_median, json_median]) in rows {
        println!(
            "| server, {label} ({:.2}x / {:.2}x tract, timed in turn with it: {}) | {} | {} |",
            binary_median.as_secs_f64() / tract_one.as_secs_f64(),
            json_median.as_secs_f64() / tract_one.as_secs_f64(),
            ms(tract_one),
            ms(binary_median),
            ms(json_median)
        );
    }

    // Dynamic batching at 64 clients, for a model with a batch dimension to stack along.
    println!("\n| 64 clients, V2 binary | req/s | median | errors |");
    println!("|---|---:|---:|---:|");
    let mut configs = vec![("no batching", vec![])];
    match model.signature().batch_dim() {
        Some(_) => configs.push(("--max-batch-size 64", vec!["--max-batch-size", "64"])),
        None => {
            println!("| --max-batch-size 64 | not possible: the batch dimension is fixed | | |")
        }
    }
    for (label, extra) in configs {
        let server = start(case, &extra);
        let run = load(server.addr, &binary, 64, duration);
        println!(
            "| {label} | {:.1} | {} | {} |",
            run.per_second,
            ms(run.median),
            run.errors
        );
    }

    // Start-up and memory.
    let started = Instant::now();
    let server = Server::builder()
        .args(["--model", &case.model_path(), "--model-name", "bench"])
        .env("RUST_LOG", support::QUIET_LOG)
        .no_wait()
        .start();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(60) && !ready {
        ready = Connection::open(server.addr)
            .and_then(|mut c| c.exchange(&support::http_get("/readyz")))
            .unwrap_or(false);
        if !ready {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let startup = started.elapsed();
    let rss_started = rss_mib(server.pid());
    let after_load = load(server.addr, &binary, 16, duration);
    let rss_loaded = rss_mib(server.pid());
    let file_mib = std::fs::metadata(&case.model).map_or(0.0, |m| m.len() as f64) / 1048576.0;
    let of_file = |rss: f64| rss / file_mib.max(f64::MIN_POSITIVE);
    println!(
        "\nstart to /readyz 200: {}; model file {file_mib:.1} MiB; RSS after start-up \
         {rss_started:.1} MiB ({:.2}x the file), right after {} requests at 16 clients \
         {rss_loaded:.1} MiB ({:.2}x)\n",
        ms(startup),
        of_file(rss_started),
        (after_load.per_second * duration.as_secs_f64()) as u64,
        of_file(rss_loaded)
    );
}
