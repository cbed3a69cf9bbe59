//! The JSON tensor decoder (`POST /predict` bodies): any bytes give tensors or a 400, never
//! a panic, a stack overflow or a runaway allocation; and its fast path agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serve::api::simple::{decode_request, decode_request_general};
use onnx_serve::tensor::fast_json::{decode_in_parts, decode_predict_body};

fuzz_target!(|data: &[u8]| {
    let Some((signature, body)) = onnx_serve_fuzz::signature(data) else {
        return;
    };
    // The fast path for plain lists of floats must decode exactly as the general decoder,
    // and give the same answer when it cuts the body into parts read on several threads.
    if let [spec] = signature.inputs.as_slice() {
        let fast = decode_predict_body(spec, body, 1);
        assert_eq!(decode_in_parts(spec, body, 3, 1), fast);
        if let Some(fast) = fast {
            let general = decode_request_general(&signature, body);
            assert_eq!(general.ok().as_deref(), Some(&[fast][..]));
        }
    }
    match decode_request(&signature, body, 2) {
        // What the server does next with decoded tensors: the signature check.
        Ok(tensors) => {
            let _ = signature.check_inputs(&tensors);
        }
        Err(e) => assert_eq!(e.status, 400, "{}", e.message),
    }
});
