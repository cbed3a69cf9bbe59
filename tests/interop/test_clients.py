"""Interoperability: the real Python clients of Triton and KServe against onnx-serve.

Starts target/release/onnx-serve (or $ONNX_SERVE_BIN) on free loopback ports, talks to it
with tritonclient.http and the kserve SDK's REST client (V2 and V1), and compares every
answer with onnxruntime's on the same inputs.

Run it after `cargo build` (or `cargo test`):
    python tests/interop/test_clients.py        # plain asserts, prints a summary
    python -m pytest tests/interop               # or under pytest
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ONNX_SERVE_BIN", REPO / "target/release/onnx-serve"))
MODELS = {
    "digits": REPO / "model.onnx",
    "dtypes": REPO / "tests/fixtures/models/dtypes.onnx",
    "two_io": REPO / "tests/fixtures/models/two_io.onnx",
}
TOLERANCE = 1e-5


class Server:
    """One onnx-serve process on a free port, serving MODELS[name] under that name."""

    def __init__(self, name):
        self.name = name
        self.process = subprocess.Popen(
            [str(BINARY), "--model", str(MODELS[name]), "--model-name", name,
             "--host", "127.0.0.1", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.address = self._wait_for_address()
        self.url = f"http://{self.address}"
        self._wait_until_ready()

    def _wait_for_address(self, timeout=30):
        found = []
        ready = threading.Event()

        def read_log():
            # Keep draining stderr for the life of the process, so it never blocks on it.
            for line in self.process.stderr:
                if not found and "listening on http://" in line:
                    found.append(line.split("listening on http://")[1].split()[0])
                    ready.set()

        threading.Thread(target=read_log, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"onnx-serve did not start for {self.name}")
        return found[0]

    def _wait_until_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready") as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"onnx-serve was not ready for {self.name}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def onnxruntime_outputs(name, feeds):
    """onnxruntime's outputs by name for MODELS[name]."""
    session = ort.InferenceSession(str(MODELS[name]), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def digits_inputs(rows=100):
    holdout = json.loads((REPO / "tests/fixtures/digits_holdout.json").read_text())
    return np.array(holdout["inputs"][:rows], dtype=np.float32)


def digits_reference():
    """Hold-out rows of the digits model and onnxruntime's probabilities for them."""
    x = digits_inputs()
    return x, onnxruntime_outputs("digits", {"input": x})["probabilities"]


def every_datatype():
    """One value list per dtypes.onnx input, extremes included."""
    return {
        "in_bool": np.array([True, False, True]),
        "in_uint8": np.array([0, 7, 255], dtype=np.uint8),
        "in_uint16": np.array([0, 7, 65535], dtype=np.uint16),
        "in_uint32": np.array([0, 7, 2**32 - 1], dtype=np.uint32),
        "in_uint64": np.array([0, 7, 2**64 - 1], dtype=np.uint64),
        "in_int8": np.array([-128, 0, 127], dtype=np.int8),
        "in_int16": np.array([-32768, 0, 32767], dtype=np.int16),
        "in_int32": np.array([-2**31, 0, 2**31 - 1], dtype=np.int32),
        "in_int64": np.array([-2**63, 0, 2**63 - 1], dtype=np.int64),
        "in_fp16": np.array([0.5, -65504.0, 6e-8], dtype=np.float16),
        "in_fp32": np.array([0.1, -0.0, 3.4e38], dtype=np.float32),
        "in_fp64": np.array([1e-300, 0.1, -2.5], dtype=np.float64),
        "in_string": np.array(["", "héllo", 'a"b\n'], dtype=np.object_),
    }


def triton_datatype(array):
    return triton.np_to_triton_dtype(array.dtype) if array.dtype != np.object_ else "BYTES"


def assert_close(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    assert diff < TOLERANCE, f"{what}: max |onnx-serve - onnxruntime| = {diff}"


def assert_same(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    if expected.dtype == np.object_:
        got = np.array([g.decode() if isinstance(g, bytes) else g for g in got.ravel()],
                       dtype=np.object_).reshape(got.shape)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert np.array_equal(got, expected), f"{what}: {got!r} != {expected!r}"


# --- tritonclient.http ---------------------------------------------------------------

def test_triton_health_and_metadata(servers):
    client = triton.InferenceServerClient(servers["digits"].address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("digits", "2")
    metadata = client.get_server_metadata()
    for extension in ("binary_tensor_data", "classification", "statistics"):
        assert extension in metadata["extensions"], metadata
    model = client.get_model_metadata("digits")
    assert model["name"] == "digits" and model["versions"] == ["1"], model
    assert model["inputs"][0]["shape"] == [-1, 64], model
    config = client.get_model_config("digits")
    assert config["max_batch_size"] > 0, config
    assert config["input"][0] == {"name": "input", "data_type": "TYPE_FP32", "dims": [64]}
    assert config["output"][0]["dims"] == [10], config


def triton_digits(client, x, binary):
    infer_input = triton.InferInput("input", list(x.shape), "FP32")
    infer_input.set_data_from_numpy(x, binary_data=binary)
    # With no outputs named, tritonclient asks for every output in binary.
    outputs = None if binary else [triton.InferRequestedOutput("probabilities", binary_data=False)]
    return client.infer("digits", [infer_input], outputs=outputs, request_id="r-1")


def test_triton_infer_binary_and_json(servers):
    client = triton.InferenceServerClient(servers["digits"].address)
    x, expected = digits_reference()
    for binary in (True, False):
        result = triton_digits(client, x, binary)
        response = result.get_response()
        assert response["model_name"] == "digits" and response["id"] == "r-1", response
        assert ("data" in response["outputs"][0]) != binary, response
        assert_close(result.as_numpy("probabilities"), expected, f"triton binary={binary}")


def test_triton_every_datatype(servers):
    client = triton.InferenceServerClient(servers["dtypes"].address)
    values = every_datatype()
    expected = onnxruntime_outputs("dtypes", values)
    for binary in (True, False):
        inputs = []
        for name, array in values.items():
            infer_input = triton.InferInput(name, list(array.shape), triton_datatype(array))
            infer_input.set_data_from_numpy(array, binary_data=binary)
            inputs.append(infer_input)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in expected]
        result = client.infer("dtypes", inputs, outputs=outputs)
        for name, want in expected.items():
            assert_same(result.as_numpy(name), want, f"triton {name} binary={binary}")


def test_triton_chosen_outputs(servers):
    client = triton.InferenceServerClient(servers["two_io"].address)
    a = np.array([[1.0, 2.0, 3.0], [-1.5, 0.0, 4.25]], dtype=np.float32)
    b = np.array([[0.5, 0.5, 0.5], [2.0, 3.0, -1.0]], dtype=np.float32)
    inputs = []
    for name, array in (("a", a), ("b", b)):
        infer_input = triton.InferInput(name, list(array.shape), "FP32")
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    result = client.infer("two_io", inputs, outputs=[triton.InferRequestedOutput("product")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["product"]
    expected = onnxruntime_outputs("two_io", {"a": a, "b": b})
    assert_close(result.as_numpy("product"), expected["product"], "triton product")


def test_triton_classification(servers):
    """tritonclient's class_count asks for Triton's classification extension: the k best
    classes of each row as "score:index" (the digits model has no labels)."""
    client = triton.InferenceServerClient(servers["digits"].address)
    x, expected = digits_reference()
    infer_input = triton.InferInput("input", list(x[:4].shape), "FP32")
    infer_input.set_data_from_numpy(x[:4])
    for binary in (True, False):
        wanted = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
        result = client.infer("digits", [infer_input], outputs=[wanted])
        classes = result.as_numpy("probabilities")
        assert classes.shape == (4, 3), classes.shape
        for row, scores in zip(classes, expected[:4]):
            # Binary BYTES come back as bytes, JSON ones as str.
            parsed = [(c.decode() if isinstance(c, bytes) else c).split(":") for c in row]
            assert [int(index) for _, index in parsed] == list(np.argsort(-scores, kind="stable")[:3])
            for score, index in parsed:
                assert abs(float(score) - scores[int(index)]) < 1e-5, (score, scores[int(index)])


def test_triton_statistics(servers):
    """get_inference_statistics reads Triton's statistics extension; its counters move by
    exactly the inferences sent."""
    client = triton.InferenceServerClient(servers["digits"].address)

    def digits_stats(**kwargs):
        (stats,) = client.get_inference_statistics(**kwargs)["model_stats"]
        assert stats["name"] == "digits" and stats["version"] == "1", stats
        return stats

    before = digits_stats(model_name="digits")
    x, _ = digits_reference()
    for binary in (True, False):
        triton_digits(client, x[:5], binary)
    after = digits_stats(model_name="digits")
    # Every form of the route reads the same counters (reading them counts nothing).
    assert digits_stats() == after
    assert digits_stats(model_name="digits", model_version="1") == after
    assert after["inference_count"] - before["inference_count"] == 10, (before, after)
    assert after["execution_count"] - before["execution_count"] == 2, (before, after)
    steps = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    for step in steps:
        moved = after["inference_stats"][step]["count"] - before["inference_stats"][step]["count"]
        assert moved == 2, (step, before, after)
        assert after["inference_stats"][step]["ns"] > before["inference_stats"][step]["ns"], step
    assert after["inference_stats"]["fail"] == before["inference_stats"]["fail"]
    assert after["last_inference"] >= max(before["last_inference"], 1), (before, after)


# --- kserve SDK, REST, V2 and V1 ------------------------------------------------------

def run_kserve(protocol, use):
    """Runs `use(client)` with a kserve REST client of that protocol, then closes it."""
    async def run():
        client = InferenceRESTClient(RESTConfig(protocol=protocol, retries=0))
        try:
            await use(client)
        finally:
            await client.close()
    asyncio.run(run())


def test_kserve_v2(servers):
    url = servers["digits"].url
    x, expected = digits_reference()

    async def use(client):
        assert await client.is_server_live(url)
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, "digits")
        for binary in (False, True):
            infer_input = InferInput("input", list(x.shape), "FP32")
            infer_input.set_data_from_numpy(x, binary_data=binary)
            request = InferRequest("digits", [infer_input], request_id="k-1",
                                   parameters={"binary_data_output": binary})
            response = await client.infer(url, request, model_name="digits")
            assert response.model_name == "digits" and response.id == "k-1"
            assert_close(response.outputs[0].as_numpy(), expected, f"kserve v2 binary={binary}")

    run_kserve("v2", use)


def test_kserve_v1(servers):
    url = servers["digits"].url
    x, expected = digits_reference()

    async def use(client):
        assert await client.is_server_live(url)
        assert await client.is_model_ready(url, "digits")
        answer = await client.infer(url, {"instances": x.tolist()}, model_name="digits")
        assert_close(answer["predictions"], expected, "kserve v1 instances")
        answer = await client.infer(url, {"inputs": x.tolist()}, model_name="digits")
        assert_close(answer["outputs"], expected, "kserve v1 inputs")

    run_kserve("v1", use)


# --- running -----------------------------------------------------------------------

def start_servers():
    return {name: Server(name) for name in MODELS}


try:
    import pytest

    @pytest.fixture(scope="module")
    def servers():
        started = start_servers()
        yield started
        for server in started.values():
            server.stop()
except ImportError:
    pass


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} does not exist: run `cargo build` first")
    tests = [(name, f) for name, f in globals().items() if name.startswith("test_")]
    servers = start_servers()
    failed = 0
    try:
        for name, test in tests:
            try:
                test(servers)
                print(f"ok     {name}")
            except Exception:  # a failed assert or a client error: report, go on
                failed += 1
                print(f"FAILED {name}")
                traceback.print_exc()
    finally:
        for server in servers.values():
            server.stop()
    print(f"interop: {len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
