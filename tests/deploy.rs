//! What deployments rely on: the `healthcheck` subcommand (the container's HEALTHCHECK),
//! KServe's `/mnt/models` directory, and `./model.onnx` as the default model. The model
//! built into the binary (`--features embed-model`) is checked on the static binary by
//! deploy/test-static.sh, which CI builds with it.

use crate::common;

use common::{Server, binary, bundled_model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary in `dir` with no ONNX_SERVE_* or PORT variable from the test's own
/// environment.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command.args(args).current_dir(dir).env_remove("PORT");
    for (key, _) in std::env::vars() {
        if key.starts_with("ONNX_SERVE_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An empty directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onnx-serve-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn healthcheck_exits_0_on_a_healthy_server_and_1_otherwise() {
    let server = Server::digits();
    let port = server.addr.port().to_string();
    let here = std::env::temp_dir();

    // The container form: everything from the environment, the host as the server's own
    // (0.0.0.0 is probed on loopback).
    let env = [("ONNX_SERVE_HOST", "0.0.0.0"), ("ONNX_SERVE_PORT", &port)];
    let output = run_in(&here, &["healthcheck"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run_in(
        &here,
        &["healthcheck", "--port", &port, "--path", "/readyz"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let output = run_in(
        &here,
        &["healthcheck", "--port", &port, "--path", "/no-such-route"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("status 404"),
        "{}",
        stderr(&output)
    );

    drop(server);
    let output = run_in(&here, &["healthcheck", "--port", &port], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_kserve_model_directory_with_one_onnx_file_is_served() {
    // KServe's storage initializer leaves the model in /mnt/models under its own file name.
    let models = scratch("mnt-models");
    std::fs::copy(bundled_model(), models.join("digits.onnx")).unwrap();
    let server = Server::builder()
        .args(["--model", models.to_str().unwrap()])
        .start();
    assert_eq!(server.get("/").json()["name"], "digits");
    let digit: Value = common::read_json(&common::fixture("digit.json"));
    let outputs = server.post_json("/predict", &digit).outputs();
    assert_eq!(common::row(&outputs[0]).len(), 10);
}

// A binary built with a model inside serves that one instead: deploy/test-static.sh.
#[cfg(not(feature = "embed-model"))]
#[test]
fn without_an_embedded_model_the_default_is_model_onnx_in_the_working_directory() {
    let output = run_in(&scratch("no-model"), &["inspect"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot open model model.onnx"),
        "{}",
        stderr(&output)
    );
}
