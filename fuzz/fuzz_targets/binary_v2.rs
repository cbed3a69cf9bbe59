//! The Open Inference Protocol request decoder with the binary tensor data extension
//! (`POST /v2/models/{m}/infer`): a JSON header whose sizes may lie, then raw tensor bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serve::api::v2::infer::decode;

fuzz_target!(|data: &[u8]| {
    let Some((signature, rest)) = onnx_serve_fuzz::signature(data) else {
        return;
    };
    // Two more bytes: the Inference-Header-Content-Length, absent when 0xffff.
    let Some((length, body)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let header_length = match u16::from_le_bytes(*length) {
        0xffff => None,
        n => Some(n as usize),
    };
    match decode(&signature, body, header_length) {
        Ok(request) => {
            let _ = signature.check_inputs(&request.inputs);
        }
        Err(e) => assert!(matches!(e.status, 400 | 415), "{}: {}", e.status, e.message),
    }
});
