//! Tree ensembles: our engine against onnxruntime, in process, one thread, on the committed
//! 100-tree models (a RandomForestClassifier and a LightGBM classifier on breast_cancer's 30
//! features), at batch 1 and batch 64.
//!
//! `cargo bench --bench trees` times, per model and batch, the median of one call of:
//! - `tract plan`: the optimized tract plan with our operators (what a request's run costs);
//! - `Model::run`: the same through `onnx_serve::engine::Model` (conversions included), for
//!   models it can load;
//! - `onnxruntime`: `InferenceSession.run` from Python (`benches/trees_ort.py`, which this
//!   bench starts with `$PYTHON`, default `/work/venv/bin/python`).
//!
//! Both sides are measured in turn for a few rounds, and each keeps its best median, so a
//! busy moment of a shared machine does not land on one side only. The inputs are the first
//! rows of the models' cases in tests/fixtures/trees/cases.json.

use onnx_serve::engine::Model;
use onnx_serve::tensor::{Tensor as Rows, TensorData};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

const MODELS: [&str; 2] = ["bench_rf100", "bench_lgbm100"];
const BATCHES: [usize; 2] = [1, 64];
const ROUNDS: usize = 3;
const SAMPLES: usize = 31;
const SAMPLE_TIME: Duration = Duration::from_millis(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

struct Bench {
    name: &'static str,
    batch: usize,
    plan: Arc<TypedRunnableModel>,
    input: Tensor,
    model: Option<(Model, Rows)>,
}

/// The median time of one call.
fn median_call(mut call: impl FnMut()) -> Duration {
    for _ in 0..50 {
        call();
    }
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < SAMPLE_TIME {
        call();
        calls += 1;
    }
    let per_sample = calls.max(1);
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_sample {
                call();
            }
            started.elapsed() / per_sample
        })
        .collect();
    times.sort();
    times[SAMPLES / 2]
}

fn setup(cases: &HashMap<String, Value>) -> Vec<Bench> {
    let mut benches = vec![];
    for name in MODELS {
        let case = &cases[name];
        let path = fixtures().join(case["model"].as_str().unwrap());
        let features = case["input"]["shape"][1].as_u64().unwrap() as usize;
        let values: Vec<f32> = case["input"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        for batch in BATCHES {
            let rows = values[..batch * features].to_vec();
            let mut model = onnx_serve::engine::onnx().model_for_path(&path).unwrap();
            model
                .set_input_fact(0, f32::fact([batch, features]).into())
                .unwrap();
            let plan = model.into_optimized().unwrap().into_runnable().unwrap();
            let input = tract_ndarray::Array2::from_shape_vec((batch, features), rows.clone())
                .unwrap()
                .into_tensor();
            let model = Model::load(&path).ok().map(|m| {
                let rows = Rows::new(vec![batch, features], TensorData::Fp32(rows)).unwrap();
                (m, rows)
            });
            benches.push(Bench {
                name,
                batch,
                plan,
                input,
                model,
            });
        }
    }
    benches
}

/// onnxruntime's medians, by (model, batch), or why there are none.
fn onnxruntime() -> Result<HashMap<(String, usize), Duration>, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "/work/venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/trees_ort.py");
    let out = Command::new(&python)
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot start {python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut medians = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let key = (
            v["model"].as_str().unwrap().to_owned(),
            v["batch"].as_u64().unwrap() as usize,
        );
        medians.insert(key, Duration::from_secs_f64(v["seconds"].as_f64().unwrap()));
    }
    Ok(medians)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let cases: HashMap<String, Value> = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    let benches = setup(&cases);

    let mut ours: Vec<(Duration, Option<Duration>)> = vec![(Duration::MAX, None); benches.len()];
    let mut theirs: HashMap<(String, usize), Duration> = HashMap::new();
    let mut ort_error = None;
    for _ in 0..ROUNDS {
        for (bench, best) in benches.iter().zip(ours.iter_mut()) {
            let plan = median_call(|| {
                let out = bench
                    .plan
                    .run(tvec![bench.input.clone().into_tvalue()])
                    .unwrap();
                std::hint::black_box(out);
            });
            best.0 = best.0.min(plan);
            if let Some((model, rows)) = &bench.model {
                let run = median_call(|| {
                    std::hint::black_box(model.run(vec![rows.clone()], None).unwrap());
                });
                best.1 = Some(best.1.map_or(run, |b: Duration| b.min(run)));
            }
        }
        match onnxruntime() {
            Ok(medians) => {
                for (key, d) in medians {
                    let best = theirs.entry(key).or_insert(d);
                    *best = (*best).min(d);
                }
            }
            Err(e) => ort_error = Some(e),
        }
    }

    println!("best of {ROUNDS} rounds of {SAMPLES}-sample medians, one thread\n");
    println!(
        "| model | batch | tract plan | Model::run | onnxruntime | plan / onnxruntime | Model::run / onnxruntime |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (bench, (plan, run)) in benches.iter().zip(&ours) {
        let ort = theirs.get(&(bench.name.to_owned(), bench.batch));
        let ratio = |d: Duration| {
            ort.map_or("-".into(), |o| {
                format!("{:.2}", d.as_secs_f64() / o.as_secs_f64())
            })
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            bench.name,
            bench.batch,
            us(*plan),
            run.map_or("(cannot load: TDim label)".into(), us),
            ort.map_or("-".into(), |o| us(*o)),
            ratio(*plan),
            run.map_or("-".into(), ratio),
        );
    }
    if let Some(e) = ort_error {
        println!("\nonnxruntime: {e}");
    }
}
