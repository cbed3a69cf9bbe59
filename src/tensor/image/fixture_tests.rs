//! Decoding, resizing and normalising against what Pillow made of the fixture images
//! (tests/fixtures/make_images.py): PNG and the resize bit-exact, JPEG within a few levels.

use super::*;
use crate::test_rng::XorShift;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = dir().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> Value {
    serde_json::from_slice(&read("expected.json")).unwrap()
}

/// The fixture's images, with the stem its reference files use.
fn images() -> Vec<(String, String, Value)> {
    let expected = expected();
    let images = expected["images"].as_object().unwrap();
    assert!(images.len() >= 14, "the fixture script writes 14 images");
    images
        .iter()
        .map(|(name, info)| (name.clone(), name.replace('.', "_"), info.clone()))
        .collect()
}

fn max_difference(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// zune-jpeg and libjpeg-turbo differ in IDCT rounding and chroma upsampling; on the
/// fixtures the largest difference is 3 levels (4:2:0), 2 (4:4:4), 1 (grey, CMYK).
const JPEG_TOLERANCE: u8 = 3;

fn is_jpeg(name: &str) -> bool {
    name.ends_with(".jpg")
}

#[test]
fn decoded_pixels_match_pillow() {
    let mut report = Vec::new();
    for (name, stem, info) in images() {
        let image =
            decode_rgb(&read(&name), DEFAULT_MAX_PIXELS).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (image.width as u64, image.height as u64),
            (
                info["width"].as_u64().unwrap(),
                info["height"].as_u64().unwrap()
            ),
            "{name}"
        );
        let reference = read(format!("expected/{stem}.rgb"));
        let diff = max_difference(&image.pixels, &reference);
        report.push(format!("{name} {diff}"));
        let tolerance = if is_jpeg(&name) { JPEG_TOLERANCE } else { 0 };
        assert!(
            diff <= tolerance,
            "{name}: max difference {diff} from Pillow"
        );
    }
    println!("max |ours - Pillow| per image: {}", report.join(", "));
}

#[test]
fn resizing_pillows_pixels_gives_pillows_bytes() {
    // Fed Pillow's own decoded pixels, the resize alone is compared: exact for every image.
    for (name, stem, info) in images() {
        let (w, h) = (
            info["width"].as_u64().unwrap() as usize,
            info["height"].as_u64().unwrap() as usize,
        );
        let decoded = read(format!("expected/{stem}.rgb"));
        let ours = resize_bilinear(&decoded, w, h, 3, 32, 32);
        assert_eq!(ours, read(format!("expected/{stem}.32x32.rgb")), "{name}");
        let grey = resize_bilinear(&rgb_to_grey(&decoded), w, h, 1, 28, 28);
        assert_eq!(
            grey,
            read(format!("expected/{stem}.28x28.l")),
            "{name} grey"
        );
    }
}

#[test]
fn resizing_to_other_sizes_gives_pillows_bytes() {
    let expected = expected();
    let decoded = read("expected/rgb_png.rgb");
    let sizes = expected["extra_resizes"].as_array().unwrap();
    assert!(!sizes.is_empty());
    for size in sizes {
        let (w, h) = (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        );
        let ours = resize_bilinear(&decoded, 64, 48, 3, w, h);
        assert_eq!(ours, read(format!("expected/rgb.{w}x{h}.rgb")), "{w}x{h}");
    }
}

#[test]
fn the_whole_pipeline_gives_what_numpy_gave() {
    // rgb.png -> classifier_nchw's input with the ImageNet statistics, float32 bit for bit.
    let spec = TensorSpec {
        name: "image".into(),
        datatype: DataType::Fp32,
        shape: [1, 3, 32, 32].map(Dim::Fixed).to_vec(),
        map_keys: None,
    };
    let pipeline = ImagePipeline::new(
        image_input(&spec).unwrap(),
        &Preprocess::imagenet(),
        DEFAULT_MAX_PIXELS,
    )
    .unwrap();
    let tensor = pipeline.tensor(&read("rgb.png")).unwrap();
    assert_eq!(tensor.shape, [1, 3, 32, 32]);
    let reference: Vec<f32> = read("expected/rgb.nchw.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let TensorData::Fp32(ours) = tensor.data else {
        panic!("FP32 expected")
    };
    assert_eq!(ours.len(), reference.len());
    let differing = ours
        .iter()
        .zip(&reference)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differing, 0, "values differing from numpy's");
}

#[test]
fn decode_then_resize_stays_within_the_jpeg_tolerance() {
    for (name, stem, _) in images() {
        let image = decode_rgb(&read(&name), DEFAULT_MAX_PIXELS).unwrap();
        let ours = resize_bilinear(&image.pixels, image.width, image.height, 3, 32, 32);
        let diff = max_difference(&ours, &read(format!("expected/{stem}.32x32.rgb")));
        let tolerance = if is_jpeg(&name) { JPEG_TOLERANCE } else { 0 };
        assert!(diff <= tolerance, "{name}: {diff}");
    }
}

#[test]
fn corrupted_images_give_errors_or_pictures_never_panics() {
    // Truncations at every length for two small files, and random bit flips, byte
    // overwrites and chunk deletions for every fixture: each decode returns Ok or Err.
    let cap = 1 << 20;
    let mut outcomes = [0usize; 2];
    let mut count = |r: &Result<RgbImage, ImageError>| outcomes[r.is_ok() as usize] += 1;
    for name in ["palette4.png", "grey.jpg"] {
        let bytes = read(name);
        for len in 0..bytes.len() {
            count(&decode_rgb(&bytes[..len], cap));
        }
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for (name, _, _) in images() {
        let original = read(&name);
        for round in 0..300 {
            let mut bytes = original.clone();
            match round % 3 {
                0 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                1 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
                _ => {
                    let start = rng.below(bytes.len());
                    let end = (start + 1 + rng.below(64)).min(bytes.len());
                    bytes.drain(start..end);
                }
            }
            let result = decode_rgb(&bytes, cap);
            if let Ok(image) = &result {
                assert_eq!(image.pixels.len(), image.width * image.height * 3, "{name}");
            }
            count(&result);
        }
    }
    let [errors, decoded] = outcomes;
    println!("corrupted inputs: {errors} errors, {decoded} decoded");
    assert!(errors > 0 && decoded > 0);
}
