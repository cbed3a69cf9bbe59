//! From pixels to labels over real sockets: the real binary takes PNG, JPEG and multipart
//! bodies for the fixture classifiers and answers as onnxruntime did on Pillow's pixels
//! (tests/fixtures/make_images.py), names the top classes from a labels file or from what
//! the model carries, refuses bad images with clear errors and goes on serving, answers
//! Triton's classification and statistics extensions, and warms the model up before it
//! reports ready.

use crate::common;

use common::{Reply, Server, binary, fixture, fixture_model, read_json, repo};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HEADER_LENGTH: &str = "Inference-Header-Content-Length";
/// Fed the same pixels (PNG decodes exactly as Pillow), only tract and onnxruntime differ.
const ENGINE_TOLERANCE: f64 = 1e-5;
/// Our JPEG pixels differ from libjpeg-turbo's by a few levels (see tests/images.rs).
const JPEG_TOLERANCE: f64 = 1e-2;

fn images() -> PathBuf {
    fixture("images")
}

fn image_model(name: &str) -> String {
    images().join(name).display().to_string()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(images().join(name)).unwrap()
}

fn expected() -> Value {
    read_json(&images().join("expected.json"))
}

fn labels() -> Vec<String> {
    expected()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

fn floats(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        number => vec![number.as_f64().unwrap()],
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A server for a fixture classifier, with the flags given.
fn classifier(model: &str, flags: &[&str]) -> Server {
    Server::builder()
        .args(["--model", &image_model(model)])
        .args(flags.iter().copied())
        .start()
}

/// `POST path` with a body of this content type.
fn post_as(server: &Server, path: &str, content_type: &str, body: &[u8]) -> Reply {
    server.post_with(path, &[("Content-Type", content_type)], body)
}

fn content_type(image: &str) -> &'static str {
    if image.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// The preprocessing make_images.py used for each model.
const MODELS: [(&str, &[&str]); 4] = [
    (
        "classifier_nchw.onnx",
        &[
            "--image-mean",
            "0.485,0.456,0.406",
            "--image-std",
            "0.229,0.224,0.225",
        ],
    ),
    ("classifier_nhwc.onnx", &[]),
    (
        "classifier_free.onnx",
        &[
            "--image-mean",
            "0.485,0.456,0.406",
            "--image-std",
            "0.229,0.224,0.225",
        ],
    ),
    (
        "classifier_grey.onnx",
        &["--image-mean", "0.5", "--image-std", "0.5"],
    ),
];

#[test]
fn png_jpeg_and_multipart_bodies_answer_as_onnxruntime() {
    let expected = expected();
    let mut worst = Vec::new();
    for (model, flags) in MODELS {
        let server = classifier(model, flags);
        let key = model.trim_end_matches(".onnx");
        let (mut worst_png, mut worst_jpeg) = (0.0f64, 0.0f64);
        for (image, answers) in expected["images"].as_object().unwrap() {
            let reply = post_as(&server, "/predict", content_type(image), &read(image));
            let got = floats(&reply.outputs());
            let diff = max_diff(&got, &floats(&answers[key]));
            if image.ends_with(".png") {
                assert!(diff <= ENGINE_TOLERANCE, "{model} {image}: {diff}");
                worst_png = worst_png.max(diff);
            } else {
                assert!(diff <= JPEG_TOLERANCE, "{model} {image}: {diff}");
                worst_jpeg = worst_jpeg.max(diff);
            }
        }
        // curl's own form body (`curl -F image=@palette4.png -F top_k=3`): the same answer,
        // byte for byte, as the PNG sent raw.
        let form_type = String::from_utf8(read("curl_form.content-type")).unwrap();
        let form = post_as(&server, "/predict", &form_type, &read("curl_form.body"));
        let raw = post_as(&server, "/predict", "image/png", &read("palette4.png"));
        assert_eq!(form.status, 200, "{}", form.text());
        assert_eq!(form.json()["outputs"], raw.json()["outputs"], "{model}");
        worst.push(format!("{key}: PNG {worst_png:.1e}, JPEG {worst_jpeg:.1e}"));
    }
    println!("max |onnx-serve - onnxruntime|: {}", worst.join("; "));
}

/// The ranking onnxruntime's probabilities make, best first, ties by index.
fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Checks the answer's `"labels"` against its own outputs: k classes, best first, each
/// with its index's score and label.
fn check_labels(answer: &Value, k: usize, names: &[String]) {
    let outputs = floats(&answer["outputs"]);
    let rows = answer["labels"].as_array().expect("the answer has labels");
    assert_eq!(rows.len(), 1);
    let top = rows[0].as_array().unwrap();
    assert_eq!(top.len(), k);
    for (rank, (class, expected_index)) in top.iter().zip(ranking(&outputs)).enumerate() {
        let index = class["index"].as_u64().unwrap() as usize;
        assert_eq!(index, expected_index, "rank {rank}");
        assert_eq!(class["label"], names[index].as_str());
        assert_eq!(class["score"].as_f64().unwrap(), outputs[index]);
        assert_eq!(
            class.as_object().unwrap().len(),
            3,
            "label, index, score: {class}"
        );
    }
}

#[test]
fn labels_from_the_models_metadata_with_top_k() {
    // classifier_nchw carries its labels as Ultralytics writes them (`names`).
    let server = classifier("classifier_nchw.onnx", MODELS[0].1);
    assert!(
        server
            .log()
            .contains("10 class labels, from the labels in the model's metadata 'names'"),
        "{}",
        server.log()
    );
    let names = labels();
    let png = read("rgb.png");
    let answer = post_as(&server, "/predict", "image/png", &png).json();
    check_labels(&answer, 5, &names);
    // The best class is onnxruntime's.
    let reference = floats(&expected()["images"]["rgb.png"]["classifier_nchw"]);
    assert_eq!(
        answer["labels"][0][0]["index"],
        json!(ranking(&reference)[0])
    );
    for (query, k) in [
        ("?top_k=3", 3),
        ("?top_k=1", 1),
        ("?top_k=10", 10),
        ("?top_k=99", 10),
    ] {
        let answer = post_as(&server, &format!("/predict{query}"), "image/png", &png).json();
        check_labels(&answer, k, &names);
    }
    // A JSON body gets labels too.
    let zeros = json!({"inputs": vec![vec![vec![vec![0.0; 32]; 32]; 3]; 1]});
    let answer = server.post_json("/predict?top_k=2", &zeros).json();
    check_labels(&answer, 2, &names);
    for query in [
        "?top_k=0",
        "?top_k=-1",
        "?top_k=abc",
        "?top_k=",
        "?top_k=2&top_k=3",
    ] {
        let reply = post_as(&server, &format!("/predict{query}"), "image/png", &png);
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.error().contains("top_k"),
            "{query}: {}",
            reply.error()
        );
    }
    assert_eq!(
        post_as(&server, "/predict", "image/png", &png).status,
        200,
        "still serving"
    );
}

#[test]
fn labels_from_a_file_or_from_the_models_classifier() {
    // classifier_nhwc carries no labels: none in its answers, and top_k says why.
    let unlabelled = classifier("classifier_nhwc.onnx", &[]);
    let answer = post_as(&unlabelled, "/predict", "image/png", &read("rgb.png")).json();
    assert!(answer.get("labels").is_none(), "{answer}");
    let reply = post_as(
        &unlabelled,
        "/predict?top_k=3",
        "image/png",
        &read("rgb.png"),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("--labels FILE"), "{}", reply.error());
    drop(unlabelled);

    let labels_file = images().join("labels.txt").display().to_string();
    let labelled = Server::builder()
        .args(["--model", &image_model("classifier_nhwc.onnx")])
        .env("ONNX_SERVE_LABELS", &labels_file)
        .start();
    let answer = post_as(
        &labelled,
        "/predict?top_k=4",
        "image/jpeg",
        &read("baseline.jpg"),
    );
    check_labels(&answer.json(), 4, &labels());
    drop(labelled);

    // skl2onnx's LogisticRegression without ZipMap: the classifier's class labels.
    let tabular = Server::builder()
        .args([
            "--model",
            &fixture("tabular/logreg_multi_nozipmap.onnx")
                .display()
                .to_string(),
        ])
        .start();
    let answer = tabular
        .predict(json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))
        .json();
    let rows = answer["labels"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let probabilities = answer["outputs"]["probabilities"].as_array().unwrap();
    for (row, scores) in rows.iter().zip(probabilities) {
        let best = ranking(&floats(scores))[0];
        assert_eq!(row[0]["label"], best.to_string());
        assert_eq!(row.as_array().unwrap().len(), 3, "capped at the 3 classes");
    }
}

/// Runs the binary with these arguments until it exits (it should not start).
fn start_up_failure(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(binary())
        .args(args)
        .args(["--port", "0"])
        .current_dir(repo())
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("onnx-serve-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn labels_that_fit_no_output_or_several_stop_start_up_with_one_line() {
    let three = temp_file("three-labels.txt", "cat\ndog\nbird\n");
    let nhwc = image_model("classifier_nhwc.onnx");
    let (code, log) = start_up_failure(&["--model", &nhwc, "--labels", &three]);
    assert_eq!(code, Some(2), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!(
            "--labels {three}: 3 labels, but no output ends in a dimension of 3 numbers"
        )),
        "{log}"
    );

    // two_io's outputs `sum` and `product` both end in 3: the flag picks one.
    let two_io = fixture_model("two_io.onnx");
    let (code, log) = start_up_failure(&["--model", &two_io, "--labels", &three]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("outputs 'sum' and 'product' both end in 3 numbers"),
        "{log}"
    );
    let server = Server::builder()
        .args(["--model", &two_io, "--labels", &three])
        .args(["--labels-output", "product"])
        .start();
    let answer = server
        .predict(json!({"a": [[1.0, 2.0, 3.0]], "b": [[3.0, 1.0, 2.0]]}))
        .json();
    // product = [3, 2, 6]: bird, cat, dog.
    let names: Vec<&str> = (answer["labels"][0].as_array().unwrap().iter())
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bird", "cat", "dog"]);

    // Image preprocessing for a model that takes no image.
    let (code, log) = start_up_failure(&["--image-mean", "0.5"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("is not an image input"), "{log}");
    let _ = std::fs::remove_file(three);
}

/// A PNG whose header declares `width` x `height` RGB pixels, with almost no data.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    // A zlib stream of a few zero bytes: far fewer rows than declared.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn bad_images_are_clear_errors_and_the_server_goes_on() {
    let server = classifier("classifier_nchw.onnx", MODELS[0].1);
    let png = read("rgb.png");
    let jpeg = read("baseline.jpg");
    let refused = |content_type: &str, body: &[u8], status: u16, says: &str| {
        let reply = post_as(&server, "/predict", content_type, body);
        assert_eq!(reply.status, status, "{says}: {}", reply.text());
        let error = reply.error();
        assert!(error.contains(says), "{error}");
        // The server goes on.
        assert_eq!(post_as(&server, "/predict", "image/png", &png).status, 200);
    };
    refused("image/png", &png[..png.len() / 2], 400, "corrupt PNG");
    refused("image/jpeg", &jpeg[..jpeg.len() / 2], 400, "corrupt JPEG");
    refused(
        "image/png",
        b"hello, I am text",
        400,
        "not a PNG or JPEG image",
    );
    refused("image/jpeg", b"{\"inputs\": []}", 400, "it looks like JSON");
    refused(
        "image/png",
        b"GIF89a\x01\x00\x01\x00",
        400,
        "it looks like a GIF image",
    );
    refused(
        "image/gif",
        b"GIF89a",
        415,
        "Content-Type image/gif is not supported",
    );
    refused("image/png", b"", 400, "not a PNG or JPEG image");
    let boundary = "multipart/form-data; boundary=XyZ";
    let text_only =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n3\r\n--XyZ--\r\n";
    refused(boundary, text_only, 400, "multipart body has no file part");
    refused(boundary, b"not multipart at all", 400, "no boundary line");
    // A decompression bomb: 100000 x 100000 declared in 57 bytes, refused from its header.
    let bomb = png_declaring(100_000, 100_000);
    assert!(bomb.len() < 100);
    refused(
        "image/png",
        &bomb,
        413,
        "image of 100000x100000 pixels is over the limit of 40000000 pixels (--max-image-pixels)",
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
    assert_eq!(server.metric("onnx_serve_panics_caught_total"), 0.0);
}

#[test]
fn the_pixel_cap_is_a_flag() {
    // rgb.png is 64 x 48 = 3072 pixels.
    let server = classifier("classifier_nhwc.onnx", &["--max-image-pixels", "3000"]);
    let reply = post_as(&server, "/predict", "image/png", &read("rgb.png"));
    assert_eq!(reply.status, 413);
    assert!(
        reply
            .error()
            .contains("64x48 pixels is over the limit of 3000 pixels"),
        "{}",
        reply.error()
    );
    let small = png_declaring(50, 50);
    let reply = post_as(&server, "/predict", "image/png", &small);
    assert_eq!(reply.status, 400, "under the cap, then found truncated");
}

#[test]
fn an_image_for_a_model_without_an_image_input_is_415() {
    let digits = Server::digits();
    let reply = post_as(&digits, "/predict", "image/png", &read("rgb.png"));
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.error(),
        "this model takes no image: input 'input' FP32 [batch, 64] is not an image input: an \
         image input has 4 dimensions, [batch, channels, height, width] or [batch, height, \
         width, channels]; send JSON {\"inputs\": ...} instead"
    );
    let form_type = String::from_utf8(read("curl_form.content-type")).unwrap();
    let reply = post_as(&digits, "/predict", &form_type, &read("curl_form.body"));
    assert_eq!(reply.status, 415);
    let two_io = Server::with_model("two_io.onnx");
    let reply = post_as(&two_io, "/predict", "image/jpeg", &read("baseline.jpg"));
    assert_eq!(reply.status, 415);
    assert!(
        reply.error().contains("the model has 2 inputs (a, b)"),
        "{}",
        reply.error()
    );
    // JSON still works on both.
    assert_eq!(
        digits.predict(json!([vec![0.0; 64]])).status,
        200,
        "{}",
        digits.log()
    );
}

/// classifier_nchw's input for rgb.png after the ImageNet normalisation (make_images.py).
fn rgb_nchw() -> Vec<f32> {
    std::fs::read(images().join("expected/rgb.nchw.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn infer_body(input_rows: usize, outputs: Value) -> Value {
    let data: Vec<f32> = (0..input_rows).flat_map(|_| rgb_nchw()).collect();
    json!({
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [input_rows, 3, 32, 32], "data": data}],
        "outputs": outputs,
    })
}

/// `"score:index:label"` (or `"score:index"`) split up.
fn parse_class(text: &str) -> (f64, usize, Option<String>) {
    let mut parts = text.splitn(3, ':');
    let score = parts.next().unwrap().parse().unwrap();
    let index = parts.next().unwrap().parse().unwrap();
    (score, index, parts.next().map(str::to_owned))
}

/// BYTES in the binary extension: each element's length (u32, little-endian), then it.
fn bytes_elements(mut raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let length = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(raw[4..4 + length].to_vec()).unwrap());
        raw = &raw[4 + length..];
    }
    out
}

#[test]
fn v2_classification_answers_the_best_classes_as_triton_does() {
    let server = classifier("classifier_nchw.onnx", &[]);
    let names = labels();
    let reference = floats(&expected()["images"]["rgb.png"]["classifier_nchw"]);
    let path = "/v2/models/classifier_nchw/infer";
    let classify = |k: u64, binary: bool| json!([{"name": "probabilities", "parameters": {"classification": k, "binary_data": binary}}]);
    let check = |classes: &[String], k: usize| {
        assert_eq!(classes.len(), k);
        for (text, expected_index) in classes.iter().zip(ranking(&reference)) {
            let (score, index, label) = parse_class(text);
            assert_eq!(index, expected_index, "{text}");
            assert!((score - reference[index]).abs() < 1e-5, "{text}");
            assert_eq!(label.as_deref(), Some(names[index].as_str()), "{text}");
            // Six decimals, as C++'s std::to_string writes a float.
            assert_eq!(
                text.split(':')
                    .next()
                    .unwrap()
                    .split('.')
                    .nth(1)
                    .unwrap()
                    .len(),
                6
            );
        }
    };

    // JSON: the model has no batch dimension ([1, 10]), so the whole output is one row: [k].
    let reply = server.post_json(path, &infer_body(1, classify(3, false)));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let output = &reply.json()["outputs"][0];
    assert_eq!(output["datatype"], "BYTES");
    assert_eq!(output["shape"], json!([3]));
    let classes: Vec<String> = (output["data"].as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    check(&classes, 3);

    // Binary, and k past the number of classes: all 10.
    let reply = server.post_json(path, &infer_body(1, classify(50, true)));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let length: usize = reply.header(HEADER_LENGTH).unwrap().parse().unwrap();
    let header: Value = serde_json::from_slice(&reply.body[..length]).unwrap();
    assert_eq!(header["outputs"][0]["shape"], json!([10]));
    check(&bytes_elements(&reply.body[length..]), 10);

    // 0 asks for the output itself.
    let reply = server.post_json(path, &infer_body(1, classify(0, false)));
    assert_eq!(reply.json()["outputs"][0]["datatype"], "FP32");
    let reply = server.post_json(path, &infer_body(1, classify(u64::MAX, false)));
    assert_eq!(reply.status, 200);

    // A model with a batch dimension: [batch, k], and no labels there: "score:index".
    let free = classifier("classifier_free.onnx", &[]);
    let path = "/v2/models/classifier_free/infer";
    let plain = free.post_json(path, &infer_body(2, json!([{"name": "probabilities"}])));
    let scores = floats(&plain.json()["outputs"][0]["data"]);
    let reply = free.post_json(path, &infer_body(2, classify(2, false)));
    let output = &reply.json()["outputs"][0];
    assert_eq!(output["shape"], json!([2, 2]));
    for (row, classes) in output["data"].as_array().unwrap().chunks(2).enumerate() {
        let row_scores = &scores[row * 10..row * 10 + 10];
        for (class, expected_index) in classes.iter().zip(ranking(row_scores)) {
            let (score, index, label) = parse_class(class.as_str().unwrap());
            assert_eq!((index, label), (expected_index, None));
            assert!((score - row_scores[index]).abs() < 1e-6);
        }
    }

    // An output of strings has no scores.
    let dtypes = Server::with_model("dtypes.onnx");
    let request = json!({
        "inputs": [
            {"name": "in_bool", "datatype": "BOOL", "shape": [1], "data": [true]},
            {"name": "in_uint8", "datatype": "UINT8", "shape": [1], "data": [1]},
            {"name": "in_uint16", "datatype": "UINT16", "shape": [1], "data": [1]},
            {"name": "in_uint32", "datatype": "UINT32", "shape": [1], "data": [1]},
            {"name": "in_uint64", "datatype": "UINT64", "shape": [1], "data": [1]},
            {"name": "in_int8", "datatype": "INT8", "shape": [1], "data": [1]},
            {"name": "in_int16", "datatype": "INT16", "shape": [1], "data": [1]},
            {"name": "in_int32", "datatype": "INT32", "shape": [1], "data": [1]},
            {"name": "in_int64", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "in_fp16", "datatype": "FP16", "shape": [1], "data": [1]},
            {"name": "in_fp32", "datatype": "FP32", "shape": [1], "data": [1]},
            {"name": "in_fp64", "datatype": "FP64", "shape": [1], "data": [1]},
            {"name": "in_string", "datatype": "BYTES", "shape": [1], "data": ["a"]},
        ],
        "outputs": [{"name": "out_string", "parameters": {"classification": 1}}],
    });
    let reply = dtypes.post_json("/v2/models/dtypes/infer", &request);
    assert_eq!(reply.status, 400);
    assert!(
        reply.error().contains("output 'out_string' is BYTES"),
        "{}",
        reply.error()
    );
}

fn stats(server: &Server, path: &str) -> Value {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    let body = reply.json();
    let all = body["model_stats"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    all[0].clone()
}

fn count(stats: &Value, step: &str) -> u64 {
    stats["inference_stats"][step]["count"].as_u64().unwrap()
}

fn ns(stats: &Value, step: &str) -> u64 {
    stats["inference_stats"][step]["ns"].as_u64().unwrap()
}

#[test]
fn statistics_move_by_exactly_the_requests_sent() {
    let server = classifier("classifier_free.onnx", &[]);
    let path = "/v2/models/classifier_free/stats";
    let before = stats(&server, path);
    assert_eq!(before["name"], "classifier_free");
    assert_eq!(before["version"], "1");
    // The warm-up run is no prediction.
    assert_eq!(before["execution_count"], 0);
    assert_eq!(before["inference_count"], 0);
    assert_eq!(before["last_inference"], 0);

    let png = read("rgb.png");
    for _ in 0..3 {
        assert_eq!(post_as(&server, "/predict", "image/png", &png).status, 200);
    }
    let infer = infer_body(2, json!(null));
    for _ in 0..2 {
        let reply = server.post_json("/v2/models/classifier_free/infer", &infer);
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let instance: Vec<Vec<Vec<f32>>> = rgb_nchw()
        .chunks(32 * 32)
        .map(|plane| plane.chunks(32).map(<[f32]>::to_vec).collect())
        .collect();
    let v1 = server.post_json(
        "/v1/models/classifier_free:predict",
        &json!({"instances": [instance]}),
    );
    assert_eq!(v1.status, 200, "{}", v1.text());
    // Two failures, and two requests that never reach the model: not counted.
    assert_eq!(
        post_as(&server, "/predict", "image/png", b"junk").status,
        400
    );
    assert_eq!(server.post("/predict", "{\"inputs\": [[1]]}").status, 400);
    assert_eq!(
        server.post_json("/v2/models/other/infer", &infer).status,
        404
    );
    assert_eq!(server.get("/predict").status, 405);

    let after = stats(&server, path);
    let delta = |step: &str| count(&after, step) - count(&before, step);
    assert_eq!(delta("success"), 6);
    assert_eq!(delta("fail"), 2);
    for step in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert_eq!(delta(step), 6, "{step}");
        assert!(ns(&after, step) > 0, "{step}");
    }
    assert_eq!(count(&after, "cache_hit") + count(&after, "cache_miss"), 0);
    // Rows: 3 images, 2 batches of 2, 1 instance.
    assert_eq!(after["inference_count"], 3 + 4 + 1);
    assert_eq!(after["execution_count"], 6);
    let steps: u64 = ["queue", "compute_input", "compute_infer", "compute_output"]
        .iter()
        .map(|s| ns(&after, s))
        .sum();
    assert!(ns(&after, "success") >= steps, "{after}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let last = after["last_inference"].as_u64().unwrap();
    assert!(last <= now && now - last < 60_000, "{last} vs {now}");

    // Every form of the route answers the same counters.
    let mut all = stats(&server, "/v2/models/stats");
    let mut versioned = stats(&server, "/v2/models/classifier_free/versions/1/stats");
    for form in [&mut all, &mut versioned] {
        assert_eq!(form["inference_stats"]["success"]["count"], 6);
        assert_eq!(form["execution_count"], 6);
    }
    assert_eq!(server.get("/v2/models/nope/stats").status, 404);
    assert_eq!(
        server
            .get("/v2/models/classifier_free/versions/2/stats")
            .status,
        404
    );
    let extensions = server.get("/v2").json()["extensions"].clone();
    for extension in ["classification", "statistics"] {
        assert!(
            extensions.as_array().unwrap().contains(&json!(extension)),
            "{extensions}"
        );
    }
}

#[test]
fn warm_up_comes_before_readiness_and_health_answers_during_it() {
    // slow.onnx runs for tens of milliseconds: 20 runs leave time to look.
    let server = Server::builder()
        .args(["--model", &fixture_model("slow.onnx"), "--warmup", "20"])
        .no_wait()
        .start();
    assert!(
        server.wait_for_log("warming up: 20 run(s)", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    // Loaded, warming up: alive, not ready.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/v2/health/live").status, 200);
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 503, "{}", server.log());
    assert_eq!(server.get("/v2/health/ready").status, 503);
    server.wait_until_ready(Duration::from_secs(60));
    assert!(server.wait_for_log("] ready", Duration::from_secs(10)));
    let log = server.log();
    let done = log.find("warm-up done: 20 run(s)").expect("warm-up done");
    let ready_line = log.find("] ready").expect("ready");
    assert!(done < ready_line, "{log}");
    // Warm-up runs are not predictions.
    assert_eq!(
        server.metric("onnx_serve_inference_duration_seconds_count"),
        0.0
    );

    let none = Server::builder()
        .args(["--model", &fixture_model("slow.onnx"), "--warmup", "0"])
        .start();
    assert!(!none.log().contains("warming up"), "{}", none.log());
}

#[test]
fn a_failed_warm_up_is_a_warning_and_the_server_still_serves() {
    // pyramid.onnx needs sides that are multiples of 32: zeros of 1 x 1 fail.
    let server = Server::with_model("pyramid.onnx");
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("warm-up run 1 of 1 failed"),
        "{log}"
    );
    let answers = read_json(&fixture("free_size_answers.json"));
    let case = &answers["pyramid"][0];
    let reply = server.predict(case["input"].clone());
    let diff = max_diff(
        &floats(&reply.outputs()),
        &floats(&case["outputs"]["boxes"]),
    );
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn the_api_documents_describe_images_labels_and_statistics() {
    let server = classifier("classifier_nchw.onnx", MODELS[0].1);
    let document = server.get("/openapi.json").json();
    let predict = &document["paths"]["/predict"]["post"];
    let content = predict["requestBody"]["content"].as_object().unwrap();
    for media in [
        "application/json",
        "image/png",
        "image/jpeg",
        "multipart/form-data",
    ] {
        assert!(content.contains_key(media), "{media}");
    }
    let parameters = predict["parameters"].as_array().unwrap();
    assert!(
        parameters.iter().any(|p| p["name"] == "top_k"),
        "{parameters:?}"
    );
    assert!(predict["responses"].get("415").is_some());
    let response = &document["components"]["schemas"]["PredictResponse"];
    assert_eq!(response["required"], json!(["outputs", "labels"]));
    let classification = &document["components"]["schemas"]["InferRequest"]["properties"]["outputs"]
        ["items"]["properties"]["parameters"]["properties"]["classification"];
    assert!(classification.get("maximum").is_none(), "{classification}");
    for path in [
        "/v2/models/stats",
        "/v2/models/{model}/stats",
        "/v2/models/{model}/versions/{version}/stats",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path}");
    }

    let page = server.get("/docs");
    assert!(
        page.header("Content-Security-Policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text();
    assert!(html.contains("id=\"image-file\""));
    assert!(
        html.contains("\"image\":\"image\""),
        "the page knows the image input"
    );
    assert!(html.contains("\"labels\":{\"classes\":10,\"output\":\"probabilities\"}"));

    // A model without images or labels: none of it.
    let digits = Server::digits();
    let document = digits.get("/openapi.json").json();
    let predict = &document["paths"]["/predict"]["post"];
    assert!(predict["requestBody"]["content"].get("image/png").is_none());
    assert!(predict.get("parameters").is_none());
    assert!(digits.get("/docs").text().contains("\"image\":null"));
}

#[test]
fn the_predict_command_answers_with_labels_too() {
    use std::io::Write;
    let mut child = Command::new(binary())
        .args(["predict", "--model", &image_model("classifier_nhwc.onnx")])
        .args([
            "--labels",
            &images().join("labels.txt").display().to_string(),
        ])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = json!({"inputs": vec![vec![vec![vec![0.5; 3]; 32]; 32]; 1]});
    let stdin = serde_json::to_vec(&body).unwrap();
    child.stdin.take().unwrap().write_all(&stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    check_labels(&answer, 5, &labels());
}
