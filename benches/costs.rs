//! Where the time of one prediction goes, stage by stage, for each benchmark model.
//!
//! `cargo bench --bench costs [-- MODEL...]` prints one table: JSON decode on one thread
//! and as a lone request decodes (a large body on every core), V2 binary decode, tract
//! alone (its own optimized plan, no conversion), our model wrapper (conversion + run),
//! JSON encode, the whole in-process JSON path, and the HTTP round trips
//! over loopback to the real binary on one kept-alive connection, with a JSON body
//! (`/predict`) and a V2 binary body (binary outputs too). Tract alone and the two round
//! trips are timed in turn, one of each per round, so their ratios are from the same moments
//! of a shared machine. Models: see `support::cases`.

mod support;

use onnx_serve::api::Serving;
use onnx_serve::api::simple::{decode_request, encode_response, predict_json};
use onnx_serve::api::v2::infer;
use onnx_serve::engine::Model;
use support::common;
use support::{Case, Connection, TractAlone, exchange_ok, kib, median_of, medians_in_turn, ms};

fn main() {
    println!(
        "median per request, {} runs or {:?} per stage at most\n",
        support::MAX_RUNS,
        support::STAGE_TIME
    );
    println!(
        "| model | JSON body | JSON decode, 1 thread | JSON decode, lone request | binary decode | tract alone | model.run | JSON encode | in-process JSON total | HTTP JSON | HTTP binary | HTTP JSON / tract | HTTP binary / tract |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in support::cases() {
        measure(&case);
    }
}

fn measure(case: &Case) {
    let body = case.json_body();
    let serving =
        Serving::with_defaults(Model::load(&case.model).unwrap_or_else(|e| panic!("{e}")));
    let model = &serving.model;
    let signature = model.signature();
    let inputs = case.inputs(model);
    let (binary, header_length) = support::v2_binary_body(model, &inputs);

    let json_decode_1 = median_of(|| decode_request(signature, &body, 1).unwrap());
    let json_decode =
        median_of(|| decode_request(signature, &body, model.spare_threads()).unwrap());
    let binary_decode =
        median_of(|| infer::decode(signature, &binary, Some(header_length)).unwrap());
    let run = median_of(|| model.run(inputs.clone(), None).unwrap());
    let outputs = model.run(inputs.clone(), None).unwrap();
    let encode = median_of(|| encode_response(signature, &outputs));
    let total = median_of(|| predict_json(&serving, &body).unwrap());
    let tract_alone = TractAlone::new(case, &inputs);

    let server = common::Server::builder()
        .args(["--model", &case.model_path(), "--model-name", "bench"])
        .env("RUST_LOG", support::QUIET_LOG)
        .start();
    let json_request = support::predict_request(case);
    let binary_request = support::v2_binary_request(model, &inputs);
    let mut json_connection = Connection::open(server.addr).expect("connect");
    let mut binary_connection = Connection::open(server.addr).expect("connect");
    // In turn, so that the ratios to tract alone hold on a machine whose speed moves.
    let [tract, http_json, http_binary] = medians_in_turn([
        &mut || tract_alone.run(),
        &mut || exchange_ok(&mut json_connection, &json_request),
        &mut || exchange_ok(&mut binary_connection, &binary_request),
    ]);

    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x |",
        case.name,
        kib(body.len()),
        ms(json_decode_1),
        ms(json_decode),
        ms(binary_decode),
        ms(tract),
        ms(run),
        ms(encode),
        ms(total),
        ms(http_json),
        ms(http_binary),
        http_json.as_secs_f64() / tract.as_secs_f64(),
        http_binary.as_secs_f64() / tract.as_secs_f64(),
    );
}
