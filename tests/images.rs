//! From pixels to labels without the server: each fixture image through our decoder and
//! preprocessing, the fixture classifiers run by tract, against what Pillow + numpy +
//! onnxruntime gave for the same image (tests/fixtures/make_images.py), then the top classes
//! named from the labels file.

use onnx_serve::engine::Model;
use onnx_serve::tensor::image::{
    DEFAULT_MAX_PIXELS, ImagePipeline, Preprocess, RgbImage, image_input,
};
use onnx_serve::tensor::labels::{Labels, classification_output, top_k};
use onnx_serve::tensor::{Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap()
}

fn f32s(tensor: &Tensor) -> Vec<f32> {
    match &tensor.data {
        TensorData::Fp32(v) => v.clone(),
        other => panic!("FP32 expected, got {:?}", other.datatype()),
    }
}

/// Each model with the preprocessing make_images.py used for it.
fn models() -> Vec<(&'static str, Preprocess)> {
    let grey = Preprocess {
        scale: 255.0,
        mean: vec![0.5],
        std: vec![0.5],
    };
    vec![
        ("classifier_nchw", Preprocess::imagenet()),
        ("classifier_nhwc", Preprocess::default()),
        ("classifier_free", Preprocess::imagenet()),
        ("classifier_grey", grey),
    ]
}

/// Fed Pillow's pixels, only tract and onnxruntime differ.
const ENGINE_TOLERANCE: f32 = 1e-5;
/// Our JPEG pixels differ from libjpeg-turbo's by up to 3 levels; the fixture models'
/// probabilities move by up to 3.7e-3 for it (classifier_free, a JPEG fixture).
const JPEG_TOLERANCE: f32 = 1e-2;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn each_image_classifies_as_onnxruntime_did_on_pillows_pixels() {
    let expected = expected();
    let images = expected["images"].as_object().unwrap();
    let labels = Labels::from_file(&dir().join("labels.txt")).unwrap();
    let mut worst = Vec::new();
    for (model_name, preprocess) in models() {
        let model = Model::load(&dir().join(format!("{model_name}.onnx"))).unwrap();
        let signature = model.signature();
        let input = image_input(&signature.inputs[0]).unwrap();
        let pipeline = ImagePipeline::new(input, &preprocess, DEFAULT_MAX_PIXELS).unwrap();
        let output_index = classification_output(&signature.outputs, labels.len(), None).unwrap();
        let run = |tensor: Tensor| {
            signature
                .check_inputs(std::slice::from_ref(&tensor))
                .unwrap();
            model
                .run(vec![tensor], None)
                .unwrap()
                .swap_remove(output_index)
        };
        let (mut worst_pillow, mut worst_png, mut worst_jpeg) = (0.0f32, 0.0f32, 0.0f32);
        for (image_name, info) in images {
            let reference: Vec<f32> = info[model_name]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();

            // Pillow's decoded pixels through our resize, normalisation and layout.
            let pillow = RgbImage {
                width: info["width"].as_u64().unwrap() as usize,
                height: info["height"].as_u64().unwrap() as usize,
                pixels: std::fs::read(
                    dir().join(format!("expected/{}.rgb", image_name.replace('.', "_"))),
                )
                .unwrap(),
            };
            let diff = max_diff(&f32s(&run(pipeline.tensor_from_rgb(&pillow))), &reference);
            assert!(
                diff <= ENGINE_TOLERANCE,
                "{model_name} {image_name} on Pillow's pixels: {diff}"
            );
            worst_pillow = worst_pillow.max(diff);

            // The whole path from the file's bytes.
            let bytes = std::fs::read(dir().join(image_name)).unwrap();
            let output = run(pipeline.tensor(&bytes).unwrap());
            let diff = max_diff(&f32s(&output), &reference);
            let is_jpeg = image_name.ends_with(".jpg");
            let tolerance = if is_jpeg {
                JPEG_TOLERANCE
            } else {
                ENGINE_TOLERANCE
            };
            assert!(diff <= tolerance, "{model_name} {image_name}: {diff}");
            if is_jpeg {
                worst_jpeg = worst_jpeg.max(diff);
            } else {
                worst_png = worst_png.max(diff);
            }

            // The labels name the best class onnxruntime found, when it is clearly best.
            let top = top_k(&output, 3, Some(&labels)).unwrap();
            assert_eq!((top.len(), top[0].len()), (1, 3));
            let mut sorted = reference.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * tolerance {
                let best = reference
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                assert_eq!(top[0][0].index, best, "{model_name} {image_name}");
                assert_eq!(top[0][0].label, labels.get(best));
            }
        }
        worst.push(format!(
            "{model_name}: Pillow's pixels {worst_pillow:.1e}, our PNG {worst_png:.1e}, \
             our JPEG {worst_jpeg:.1e}"
        ));
    }
    println!("max |ours - onnxruntime| per model: {}", worst.join("; "));
}

#[test]
fn a_free_size_model_sees_the_image_at_its_own_size() {
    let model = Model::load(&dir().join("classifier_free.onnx")).unwrap();
    let input = image_input(&model.signature().inputs[0]).unwrap();
    assert_eq!((input.height, input.width), (None, None));
    let pipeline = ImagePipeline::new(input, &Preprocess::imagenet(), DEFAULT_MAX_PIXELS).unwrap();
    let tensor = pipeline
        .tensor(&std::fs::read(dir().join("rgb.png")).unwrap())
        .unwrap();
    assert_eq!(tensor.shape, [1, 3, 48, 64]);
}
