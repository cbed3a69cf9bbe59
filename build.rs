//! Tells the code which tract-onnx version Cargo.lock pins (for the `build_info` metric).
//!
//! With the `embed-model` feature, copies the model named by `ONNX_SERVE_EMBED_MODEL` into
//! OUT_DIR, where src/embedded.rs includes it. Without the feature it does nothing.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ONNX_SERVE_EMBED_MODEL");
    tract_version();
    if std::env::var_os("CARGO_FEATURE_EMBED_MODEL").is_none() {
        return;
    }
    let Some(source) = std::env::var_os("ONNX_SERVE_EMBED_MODEL") else {
        fail("the embed-model feature needs ONNX_SERVE_EMBED_MODEL=path/to/model.onnx");
    };
    // A relative path is taken from the package root, where `cargo build` is usually run.
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let source = manifest_dir.join(source);
    if !source.is_file() {
        fail(&format!(
            "ONNX_SERVE_EMBED_MODEL={}: not a file",
            source.display()
        ));
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("embedded.onnx");
    if let Err(e) = std::fs::copy(&source, &out) {
        fail(&format!("cannot copy {}: {e}", source.display()));
    }
    let name = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rustc-env=ONNX_SERVE_EMBEDDED_NAME={name}");
    println!(
        "cargo:rustc-env=ONNX_SERVE_EMBEDDED_FROM={}",
        source.display()
    );
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// `ONNX_SERVE_TRACT_VERSION`: tract-onnx's version in Cargo.lock; tract exports no
/// constant for it. "unknown" when there is no lock file (a `cargo install` without
/// `--locked`).
fn tract_version() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut lines = lock.lines();
    let mut version = "unknown".to_owned();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tract-onnx\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                version = v.trim_matches('"').to_owned();
            }
            break;
        }
    }
    println!("cargo:rustc-env=ONNX_SERVE_TRACT_VERSION={version}");
}
