//! The model built into the binary, if any: `cargo build --release --features embed-model`
//! with `ONNX_SERVE_EMBED_MODEL=path/to/model.onnx` (see build.rs). It is served when neither
//! `--model` nor `ONNX_SERVE_MODEL` is given.

pub struct Embedded {
    /// The embedded file's stem: the default model name.
    pub name: &'static str,
    /// The path it was built from, for the logs.
    pub built_from: &'static str,
    pub bytes: &'static [u8],
}

#[cfg(feature = "embed-model")]
pub static MODEL: Option<Embedded> = Some(Embedded {
    name: env!("ONNX_SERVE_EMBEDDED_NAME"),
    built_from: env!("ONNX_SERVE_EMBEDDED_FROM"),
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/embedded.onnx")),
});

#[cfg(not(feature = "embed-model"))]
pub static MODEL: Option<Embedded> = None;
