"""onnxruntime's in-process time for the tree-ensemble benchmark models (benches/trees.rs).

Same models and rows as the Rust side: the first `batch` input rows of the bench_* cases in
tests/fixtures/trees/cases.json. One thread (intra_op_num_threads=1). Prints one JSON object
per line: {"model", "batch", "seconds"} with `seconds` the median time of one `run` call.

    /work/venv/bin/python benches/trees_ort.py [--samples N]
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "trees")
MODELS = ["bench_rf100", "bench_lgbm100"]
BATCHES = [1, 64]
SAMPLE_SECONDS = 0.02


def rows(case):
    values = [float(v) for v in case["input"]["values"]]
    return np.array(values, np.float32).reshape(case["input"]["shape"])


def median_call(call, samples):
    for _ in range(50):
        call()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < SAMPLE_SECONDS:
        call()
        calls += 1
    per_sample = max(1, calls)
    times = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        for _ in range(per_sample):
            call()
        times.append((time.perf_counter_ns() - start) / per_sample / 1e9)
    times.sort()
    return times[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=31)
    args = parser.parse_args()
    with open(os.path.join(FIXTURES, "cases.json")) as f:
        cases = {c["name"]: c for c in json.load(f)["cases"]}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    # LightGBM's model declares its label as [1]; the warning at every batch-64 run would
    # be timed too.
    options.log_severity_level = 3
    for name in MODELS:
        case = cases[name]
        session = ort.InferenceSession(
            os.path.join(FIXTURES, case["model"]), options, providers=["CPUExecutionProvider"]
        )
        input_name = session.get_inputs()[0].name
        x = rows(case)
        for batch in BATCHES:
            feed = {input_name: np.ascontiguousarray(x[:batch])}
            seconds = median_call(lambda: session.run(None, feed), args.samples)
            print(json.dumps({"model": name, "batch": batch, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
