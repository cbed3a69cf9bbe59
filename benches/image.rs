//! What an image body costs before the model runs: decoding a 224x224 JPEG and PNG, and
//! turning the pixels into a [1, 3, 224, 224] FP32 input (ImageNet normalisation, NCHW),
//! with and without a resize; then the same bytes-to-tensor cost next to image classifiers'
//! own run on that tensor: the fixture classifier_free.onnx (a tiny convolution, global
//! pooling) and, when `../shared/bench/make_models.py` has made them in `$BENCH_CACHE`
//! (`benches/support`), SqueezeNet and ResNet-50.
//!
//! `cargo bench --bench image` prints two tables of medians. Images: tests/fixtures/images/
//! bench_224.jpg (quality 90, 4:2:0) and bench_224.png, made by make_images.py.

mod support;

use onnx_serve::engine::Model;
use onnx_serve::tensor::DataType;
use onnx_serve::tensor::image::{
    DEFAULT_MAX_PIXELS, ImagePipeline, Preprocess, decode_rgb, image_input, resize_bilinear,
};
use onnx_serve::tensor::{Dim, TensorSpec};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const STAGE_TIME: Duration = Duration::from_secs(2);
const MAX_RUNS: usize = 5000;

/// Median wall time of `f` after one warm-up call.
fn median_of<T>(mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MAX_RUNS && (started.elapsed() < STAGE_TIME || times.len() < 5) {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn pipeline(height: usize, width: usize) -> ImagePipeline {
    let spec = TensorSpec {
        name: "image".into(),
        datatype: DataType::Fp32,
        shape: vec![
            Dim::Symbolic("batch".into()),
            Dim::Fixed(3),
            Dim::Fixed(height),
            Dim::Fixed(width),
        ],
        map_keys: None,
    };
    ImagePipeline::new(
        image_input(&spec).unwrap(),
        &Preprocess::imagenet(),
        DEFAULT_MAX_PIXELS,
    )
    .unwrap()
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let same_size = pipeline(224, 224);
    let smaller = pipeline(160, 160);
    println!("median of up to {MAX_RUNS} runs or {STAGE_TIME:?} per cell\n");
    println!(
        "| image | bytes | decode | to tensor, same size | to tensor, resized to 160x160 | resize alone | bytes to tensor |"
    );
    println!("|---|---|---|---|---|---|---|");
    for name in ["bench_224.jpg", "bench_224.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let image = decode_rgb(&bytes, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((image.width, image.height), (224, 224));
        let decode = median_of(|| decode_rgb(&bytes, DEFAULT_MAX_PIXELS).unwrap());
        let to_tensor = median_of(|| same_size.tensor_from_rgb(&image));
        let to_tensor_resized = median_of(|| smaller.tensor_from_rgb(&image));
        let resize = median_of(|| resize_bilinear(&image.pixels, 224, 224, 3, 160, 160));
        let whole = median_of(|| same_size.tensor(&bytes).unwrap());
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            bytes.len(),
            us(decode),
            us(to_tensor),
            us(to_tensor_resized),
            us(resize),
            us(whole)
        );
    }
    against_models(&dir);
}

/// Bytes to tensor against the model's run on that tensor, for each image classifier found.
fn against_models(dir: &Path) {
    let mut models = vec![(
        "classifier_free (fixture)".to_owned(),
        dir.join("classifier_free.onnx"),
    )];
    for case in support::cases() {
        if case.name != "digits" {
            models.push((case.name.clone(), case.model.clone()));
        }
    }
    let jpeg = std::fs::read(dir.join("bench_224.jpg")).unwrap();
    let png = std::fs::read(dir.join("bench_224.png")).unwrap();
    println!(
        "\n| model | run on [1, 3, 224, 224] | JPEG to tensor | PNG to tensor | JPEG share of JPEG + run |"
    );
    println!("|---|---|---|---|---|");
    for (name, path) in models {
        let model = Model::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = image_input(&model.signature().inputs[0]).unwrap();
        let pipeline =
            ImagePipeline::new(input, &Preprocess::imagenet(), DEFAULT_MAX_PIXELS).unwrap();
        let tensor = pipeline.tensor(&jpeg).unwrap();
        assert_eq!(tensor.shape, [1, 3, 224, 224], "{name}");
        let run = median_of(|| model.run(vec![tensor.clone()], None).unwrap());
        let from_jpeg = median_of(|| pipeline.tensor(&jpeg).unwrap());
        let from_png = median_of(|| pipeline.tensor(&png).unwrap());
        let share = from_jpeg.as_secs_f64() / (from_jpeg + run).as_secs_f64();
        println!(
            "| {name} | {} | {} | {} | {:.0}% |",
            us(run),
            us(from_jpeg),
            us(from_png),
            share * 100.0
        );
    }
}
