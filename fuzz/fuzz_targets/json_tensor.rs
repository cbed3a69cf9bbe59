//! The JSON tensor decoder (`POST /predict` bodies): any bytes give tensors or a 400, never
//! a panic, a stack overflow or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serve::api::simple::decode_request;

fuzz_target!(|data: &[u8]| {
    let Some((signature, body)) = onnx_serve_fuzz::signature(data) else {
        return;
    };
    match decode_request(&signature, body) {
        // What the server does next with decoded tensors: the signature check.
        Ok(tensors) => {
            let _ = signature.check_inputs(&tensors);
        }
        Err(e) => assert_eq!(e.status, 400, "{}", e.message),
    }
});
