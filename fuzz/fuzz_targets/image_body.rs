//! Image bodies (`POST /predict` with a PNG, a JPEG or a form upload): any bytes give the
//! model's input tensor or an error, never a panic, an overflow or a runaway allocation.
//! The first byte picks the model input (layout, channels, fixed or free size, datatype)
//! and whether the rest is a `multipart/form-data` body around the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_serve::http::multipart;
use onnx_serve::tensor::image::{ImagePipeline, Preprocess, image_input};
use onnx_serve::tensor::{DataType, Dim, TensorSpec};

/// Small enough that a fuzzed header cannot make the decoders allocate much.
const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let pipeline = pipeline(choice);
    let image = if choice & 0x80 != 0 {
        let content_type = "multipart/form-data; boundary=XyZ";
        match multipart::single_file(content_type, rest) {
            Ok(part) => part.data,
            Err(message) => {
                assert!(!message.is_empty());
                return;
            }
        }
    } else {
        rest
    };
    if let Ok(tensor) = pipeline.tensor(image) {
        assert_eq!(tensor.shape[0], 1, "a batch of one image");
    }
});

fn pipeline(choice: u8) -> ImagePipeline {
    let side = |fixed: usize| {
        if choice & 0x04 != 0 {
            Dim::Symbolic("side".into())
        } else {
            Dim::Fixed(fixed)
        }
    };
    let channels = if choice & 0x02 != 0 { 1 } else { 3 };
    let shape = if choice & 0x01 != 0 {
        vec![Dim::Fixed(1), side(24), side(32), Dim::Fixed(channels)]
    } else {
        vec![
            Dim::Symbolic("batch".into()),
            Dim::Fixed(channels),
            side(24),
            side(32),
        ]
    };
    let datatype = match (choice >> 3) & 0b11 {
        0 => DataType::Fp32,
        1 => DataType::Fp16,
        2 => DataType::Fp64,
        _ => DataType::Uint8,
    };
    let spec = TensorSpec {
        name: "image".into(),
        datatype,
        shape,
        map_keys: None,
    };
    let input = image_input(&spec).expect("an image input");
    // What each input accepts: raw bytes for UINT8, one mean for grey, ImageNet's for RGB.
    let preprocess = match (datatype, channels) {
        (DataType::Uint8, _) => Preprocess {
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        },
        (_, 1) => Preprocess {
            scale: 255.0,
            mean: vec![0.5],
            std: vec![0.25],
        },
        _ => Preprocess::imagenet(),
    };
    ImagePipeline::new(input, &preprocess, MAX_PIXELS).expect("a valid pipeline")
}
