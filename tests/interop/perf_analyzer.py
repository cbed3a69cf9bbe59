"""Interoperability: perf_analyzer, Triton's load tool, against onnx-serve.

Installs perf_analyzer 2.51.0 into target/perf-analyzer/ (the tritonclient wheel and the CUDA
runtime it loads, pinned by version and sha256 in perf_analyzer-wheels.txt; libb64 from
Debian's packages), starts $ONNX_SERVE_BIN (default target/release/onnx-serve) on free
loopback ports, and runs perf_analyzer over the V2 protocol:
- the digits model (model.onnx) at 1, 4 and 16 concurrent clients, binary and JSON tensors;
- two_io.onnx (two inputs, two outputs) at 4 and 16 clients, binary and JSON, with
  perf_analyzer checking every answer byte for byte against onnxruntime's.
Each run is bounded (small count windows, a timeout that fails it) and must finish with
exit code 0, print its figures and no error; the server must answer every request with
200. Prints a table of the figures (docs/perf-analyzer.md records them).

As root, the script raises the priority of perf_analyzer's main thread (only that thread,
once its workers have started): on a 2-core machine that thread is otherwise starved by the
workers and the server, and its passes grow without end at 16 clients and more
(docs/perf-analyzer.md, "A limit of perf_analyzer").

    python tests/interop/perf_analyzer.py     # needs numpy and onnxruntime (requirements.txt)
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ONNX_SERVE_BIN", REPO / "target/release/onnx-serve"))
WHEELS = Path(__file__).with_name("perf_analyzer-wheels.txt")
TOOL = REPO / "target/perf-analyzer"
PERF_ANALYZER = TOOL / "bin/perf_analyzer"
MODELS = {
    "digits": REPO / "model.onnx",
    "two_io": REPO / "tests/fixtures/models/two_io.onnx",
}
# (model, concurrent clients, tensor format)
RUNS = [
    *[("digits", c, f) for f in ("binary", "json") for c in (1, 4, 16)],
    *[("two_io", c, f) for f in ("binary", "json") for c in (4, 16)],
]
# Windows of at least 2000 requests (perf_analyzer waits in steps of one second, so a
# window lasts a second or more), stable when throughput and latency stay within a factor of
# two over three windows: a check that it finishes, not a benchmark.
MEASUREMENT = [
    "--measurement-mode", "count_windows", "--measurement-request-count", "2000",
    "--stability-percentage", "100", "--max-trials", "6",
]
RUN_TIMEOUT = 60  # seconds; a run that takes longer fails


def install():
    """perf_analyzer in target/perf-analyzer/bin, libcudart.so.12 in target/perf-analyzer/lib."""
    if PERF_ANALYZER.exists():
        return
    wheels = TOOL / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", str(WHEELS),
         "-d", str(wheels)],
        check=True,
    )
    extract(wheels, "tritonclient-*.whl", "tritonclient-2.51.0.data/data/bin/perf_analyzer",
            PERF_ANALYZER)
    extract(wheels, "nvidia_cuda_runtime_cu12-*.whl", "nvidia/cuda_runtime/lib/libcudart.so.12",
            TOOL / "lib/libcudart.so.12")
    PERF_ANALYZER.chmod(PERF_ANALYZER.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def extract(wheels, pattern, member, to):
    [wheel] = wheels.glob(pattern)
    to.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(to, "wb") as dst:
        shutil.copyfileobj(src, dst)


def tool_env():
    return {**os.environ, "LD_LIBRARY_PATH": str(TOOL / "lib")}


def ensure_libb64():
    """perf_analyzer links libb64.so.0d, which Debian ships as libb64-0d."""
    linked = subprocess.run(["ldd", str(PERF_ANALYZER)], env=tool_env(), capture_output=True,
                            text=True, check=True).stdout
    if "not found" not in linked:
        return
    missing = [line.split()[0] for line in linked.splitlines() if "not found" in line]
    if missing != ["libb64.so.0d"] or os.geteuid() != 0:
        sys.exit(f"perf_analyzer lacks {', '.join(missing)}: install libb64-0d (Debian) as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "libb64-0d"],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def may_raise_priority():
    return os.geteuid() == 0


def favour_main_thread(pid, workers):
    """Raises the priority of perf_analyzer's main thread, whose id is the process id, once
    its `workers` threads have started (threads inherit their creator's priority, and the
    workers must not outrank the server)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if len(os.listdir(f"/proc/{pid}/task")) > workers:
                # On Linux, PRIO_PROCESS with a thread id sets that one thread's priority.
                os.setpriority(os.PRIO_PROCESS, pid, -10)
                return
        except (FileNotFoundError, ProcessLookupError):
            return  # it has exited; its output says why
        time.sleep(0.01)


class Server:
    """One onnx-serve process on a free port; keeps the statuses of its answers to
    perf_analyzer's inferences (not those to our own readiness probes, which are 503 while
    the model loads)."""

    def __init__(self, name):
        command = [str(BINARY), "--model", str(MODELS[name]), "--model-name", name,
                   "--host", "127.0.0.1", "--port", "0"]
        self.name = name
        self.statuses = {}
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": "info"},
        )
        listening = threading.Event()
        self.address = None

        def read_log():
            # Drains stderr for the life of the process, so it never blocks on it.
            for line in self.process.stderr:
                if "listening on http://" in line and self.address is None:
                    self.address = line.split("listening on http://")[1].split()[0]
                    listening.set()
                elif "onnx_serve::access]" in line:
                    # `... onnx_serve::access] POST /v2/models/m/infer 200 197B 6us id`
                    _, path, status = line.split("onnx_serve::access]")[1].split()[:3]
                    if path.endswith("/infer"):
                        self.statuses[status] = self.statuses.get(status, 0) + 1

        threading.Thread(target=read_log, daemon=True).start()
        if not listening.wait(30) or not self.ready(30):
            self.stop()
            raise RuntimeError(f"onnx-serve did not start for {name}")

    def ready(self, timeout):
        """Waits for readiness: it listens before the model is loaded, and answers 503
        to perf_analyzer's first question until then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                url = f"http://{self.address}/v2/health/ready"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        return False

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def input_data():
    """perf_analyzer's --input-data files: real digits; two_io's inputs with onnxruntime's
    answers as validation data, which perf_analyzer compares byte for byte."""
    data = TOOL / "data"
    data.mkdir(parents=True, exist_ok=True)
    holdout = json.loads((REPO / "tests/fixtures/digits_holdout.json").read_text())
    rows = np.asarray(holdout["inputs"][:16], dtype=np.float32)
    digits = {"data": [{"input": row.tolist()} for row in rows]}
    (data / "digits.json").write_text(json.dumps(digits))

    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 3)).astype(np.float32)
    b = rng.standard_normal((16, 3)).astype(np.float32)
    session = ort.InferenceSession(str(MODELS["two_io"]))
    sums, products = session.run(["sum", "product"], {"a": a, "b": b})
    two_io = {
        "data": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(len(a))],
        "validation_data": [
            {"sum": sums[i].tolist(), "product": products[i].tolist()} for i in range(len(a))
        ],
    }
    (data / "two_io.json").write_text(json.dumps(two_io))
    return data


FIGURES = {
    "requests": r"Request count: (\d+)",
    "infer_per_s": r"Throughput: ([\d.]+) infer/sec",
    "p50_us": r"p50 latency: (\d+) usec",
    "p99_us": r"p99 latency: (\d+) usec",
}


def run(server, concurrency, tensor_format, data):
    """One perf_analyzer run; returns its figures, raises with its output on any failure."""
    command = [
        str(PERF_ANALYZER), "-m", server.name, "-u", server.address, "-i", "http",
        "--concurrency-range", str(concurrency), *MEASUREMENT,
        "--input-data", str(data / f"{server.name}.json"),
        "--input-tensor-format", tensor_format, "--output-tensor-format", tensor_format,
        "-v",
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, env=tool_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if may_raise_priority():
            favour_main_thread(process.pid, concurrency)
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"did not finish within {RUN_TIMEOUT} s:\n{output}") from None
    if process.returncode != 0 or re.search(r"error|fail", output, re.IGNORECASE):
        raise AssertionError(f"exit code {process.returncode}:\n{output}")
    figures = {}
    for name, pattern in FIGURES.items():
        found = re.search(pattern, output)
        if not found:
            raise AssertionError(f"no {name} in the output:\n{output}")
        figures[name] = float(found.group(1))
    figures["passes"] = len(re.findall(r"Pass \[\d+\]", output))
    figures["seconds"] = time.monotonic() - started
    return figures


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} does not exist: run `cargo build --release` first")
    began = time.monotonic()
    if not may_raise_priority():
        print("not root: perf_analyzer's main thread keeps its priority, and on a 2-core "
              "machine runs at 16 clients may not finish (docs/perf-analyzer.md)")
    install()
    ensure_libb64()
    data = input_data()
    servers = {name: Server(name) for name in MODELS}
    rows, failed = [], 0
    try:
        for model, concurrency, tensor_format in RUNS:
            what = f"{model} c={concurrency} {tensor_format}"
            try:
                figures = run(servers[model], concurrency, tensor_format, data)
                rows.append((model, concurrency, tensor_format, figures))
                print(f"ok     {what}: {figures['infer_per_s']:.0f} infer/s, "
                      f"p50 {figures['p50_us']:.0f} us, p99 {figures['p99_us']:.0f} us, "
                      f"{figures['passes']} passes in {figures['seconds']:.1f} s")
            except AssertionError as e:
                failed += 1
                print(f"FAILED {what}: {e}")
    finally:
        for server in servers.values():
            server.stop()
    for server in servers.values():
        others = {s: n for s, n in server.statuses.items() if s != "200"}
        if others or not server.statuses:
            failed += 1
            print(f"FAILED {server.name}: the server answered {server.statuses}")

    print("\n| model | clients | tensors | infer/s | p50 (us) | p99 (us) |")
    print("|---|---:|---|---:|---:|---:|")
    for model, concurrency, tensor_format, f in rows:
        print(f"| {model} | {concurrency} | {tensor_format} | {f['infer_per_s']:.0f} "
              f"| {f['p50_us']:.0f} | {f['p99_us']:.0f} |")
    print(f"\n{len(RUNS)} runs in {time.monotonic() - began:.0f} s")
    print(f"perf_analyzer: {len(rows)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
