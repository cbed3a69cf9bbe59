"""Put the tree-ensemble benchmark models (a 100-tree random forest and a 100-tree LightGBM
model, both on 30 features: tests/fixtures/trees/bench_*.onnx) where the peer benchmark
finds its models, with bodies from the same rows benches/trees.rs uses, so that
`compare.sh --models bench_rf100,bench_lgbm100` serves them with onnx-serve, Flask and
FastAPI side by side (docs/benchmarks.md).

    python3 benches/tabular_peers.py [--cache ~/.cache/onnx-serve-bench]

The load body holds one row (an internal tool asks for one prediction at a time); the check
body 16. Both models are classifiers: the peers answer their first output (the label), and
the harness compares onnx-serve's first output with it.
"""

import argparse
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "trees")
MODELS = ["bench_rf100", "bench_lgbm100"]


def main():
    default = os.environ.get("BENCH_CACHE") or os.path.expanduser("~/.cache/onnx-serve-bench")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=default)
    cache = parser.parse_args().cache
    os.makedirs(os.path.join(cache, "models"), exist_ok=True)
    os.makedirs(os.path.join(cache, "bodies"), exist_ok=True)
    with open(os.path.join(FIXTURES, "cases.json")) as f:
        cases = {c["name"]: c for c in json.load(f)["cases"]}
    for name in MODELS:
        case = cases[name]
        rows, width = case["input"]["shape"]
        values = [float(v) for v in case["input"]["values"]]
        table = [values[r * width : (r + 1) * width] for r in range(rows)]
        shutil.copyfile(os.path.join(FIXTURES, case["model"]), os.path.join(cache, "models", f"{name}.onnx"))
        for suffix, count in ((".json", 1), (".check.json", 16)):
            with open(os.path.join(cache, "bodies", f"{name}{suffix}"), "w") as f:
                json.dump({"inputs": table[:count]}, f)
        print(f"{name}: {width} features, bodies of 1 and 16 rows in {cache}")


if __name__ == "__main__":
    main()
