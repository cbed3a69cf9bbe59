"""Write the ONNX backend node test cases for tests/conformance.rs.

Run from anywhere, with the pinned onnx (1.23.2, see below) installed:

    python tests/conformance/make_cases.py

The `onnx` package builds these cases in Python (`onnx.backend.test.case.node`): each is a
one-node model (or its function expansion, `*_expanded`), inputs, and the outputs the ONNX
reference implementation computes. Its wheel ships no data for them, so this script writes
each case as two files under tests/conformance/cases/:

* ``<case>.onnx``: the model, as the onnx package builds it;
* ``<case>.tensors``: one line of JSON, then the tensors' bytes, back to back:

      {"rtol": 0.001, "atol": 1e-07,
       "inputs":  [{"name": "x", "datatype": "FP32", "shape": [3, 4], "bytes": 48}, ...],
       "outputs": [{"name": "y", "unsupported": "a sequence of tensors"}, ...]}

  The bytes of each tensor follow the Open Inference Protocol's binary tensor data
  extension (what src/tensor/binary.rs reads): little-endian, row-major, BOOL one byte,
  BYTES each element as a 4-byte little-endian length and its UTF-8 bytes. A value that is
  not a tensor of a datatype that travels over HTTP (a sequence, a map, an optional, a
  bfloat16 or float8 tensor...) has no bytes, only the reason it has none.

A second model is written for each case that takes parameters at run time (axes, pads,
scales, shapes, a bias...): ``<case>_with_constants.onnx`` holds every input after the
first with at most 64 elements as an initializer, the way exported models carry them, so
the operators tract only types for constant parameters are run too. It shares its case's
``.tensors`` file; the inputs it holds are not sent.

A few cases of our own follow, named ``serve_*``, for what tract got wrong beyond the
ONNX node tests (a fully masked attention row, long FP16 convolutions, maxima and
argmaxes of -inf values, Celu below zero) and for a configuration we refuse (a recurrent
activation other than the default): one-node models made with ``onnx.helper``, expected
outputs from the ONNX reference implementation (``onnx.reference``), as for the node
tests.

The output is deterministic: numpy's generator is seeded before the cases are built (many
of them draw random inputs), so running the script twice writes byte-identical files.
Files of cases that no longer exist are removed.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.case import node as node_cases
from onnx.reference import ReferenceEvaluator

PINNED_ONNX = "1.23.2"
CASES_DIR = Path(__file__).resolve().parent / "cases"
SEED = 0

# numpy dtype -> the protocol's datatype name (src/tensor/mod.rs, DataType::name).
DATATYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}


def describe_value(name, value):
    """The header entry and the bytes of one input or output."""
    if isinstance(value, dict):
        return {"name": name, "unsupported": "a map"}, b""
    if isinstance(value, list):
        return {"name": name, "unsupported": "a sequence of tensors"}, b""
    if value is None:
        return {"name": name, "unsupported": "an empty optional"}, b""
    if isinstance(value, TensorProto):
        elem = TensorProto.DataType.Name(value.data_type)
        if value.data_type not in (
            TensorProto.BOOL,
            TensorProto.UINT8,
            TensorProto.UINT16,
            TensorProto.UINT32,
            TensorProto.UINT64,
            TensorProto.INT8,
            TensorProto.INT16,
            TensorProto.INT32,
            TensorProto.INT64,
            TensorProto.FLOAT16,
            TensorProto.FLOAT,
            TensorProto.DOUBLE,
            TensorProto.STRING,
        ):
            return {"name": name, "unsupported": f"element type {elem}"}, b""
        value = numpy_helper.to_array(value)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in "US":
        strings = [
            s if isinstance(s, bytes) else str(s).encode("utf-8")
            for s in array.reshape(-1)
        ]
        data = b"".join(len(s).to_bytes(4, "little") + s for s in strings)
        datatype = "BYTES"
    elif array.dtype in DATATYPES:
        datatype = DATATYPES[array.dtype]
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        data = np.ascontiguousarray(little).tobytes()
    else:
        return {"name": name, "unsupported": f"element type {array.dtype}"}, b""
    entry = {
        "name": name,
        "datatype": datatype,
        "shape": [int(d) for d in array.shape],
        "bytes": len(data),
    }
    return entry, data


def tensors_file(case):
    """The `.tensors` file of a case: its header line and its data."""
    (inputs, outputs), *more = case.data_sets
    assert not more, f"{case.name}: one data set per node case"
    graph = case.model.graph
    header = {"rtol": case.rtol, "atol": case.atol, "inputs": [], "outputs": []}
    blobs = []
    for kind, values, declared in (
        ("inputs", inputs, graph.input),
        ("outputs", outputs, graph.output),
    ):
        assert len(values) == len(declared), f"{case.name}: {kind} match the graph's"
        for value, info in zip(values, declared):
            entry, data = describe_value(info.name, value)
            header[kind].append(entry)
            blobs.append(data)
    line = json.dumps(header, separators=(",", ":"), sort_keys=True)
    return line.encode("utf-8") + b"\n" + b"".join(blobs)


class OwnCase:
    """One of our own cases, shaped like the onnx package's TestCase."""

    def __init__(self, name, node, inputs, opset):
        graph = helper.make_graph(
            [node],
            name,
            [
                helper.make_tensor_value_info(
                    key, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
                )
                for key, value in inputs.items()
            ],
            [helper.make_tensor_value_info(out, 0, None) for out in node.output],
        )
        model = helper.make_model(
            graph,
            producer_name="onnx-serve",
            opset_imports=[helper.make_opsetid("", opset)],
        )
        outputs = ReferenceEvaluator(model).run(None, inputs)
        for info, value in zip(model.graph.output, outputs):
            info.CopyFrom(
                helper.make_tensor_value_info(
                    info.name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
                )
            )
        self.name = name
        self.model = model
        self.data_sets = [(list(inputs.values()), outputs)]
        self.rtol = 1e-3
        self.atol = 1e-7


def own_cases():
    """Our cases (see the module docstring), from a generator of their own."""
    rng = np.random.default_rng(SEED)

    def floats(*shape, dtype=np.float32):
        return rng.random(shape).astype(dtype)

    hidden_row = np.zeros((3, 5), np.float32)
    hidden_row[1, :] = -np.inf
    head_mask = np.zeros((1, 2, 3, 5), np.float32)
    head_mask[0, 1, 2, :] = -np.inf
    # Under the causal mask the first query sees the first key only; this hides it.
    first_key = np.zeros((3, 5), np.float32)
    first_key[0, 0] = -np.inf
    some_minus_inf = floats(3, 4)
    some_minus_inf[1, :] = -np.inf
    some_minus_inf[2, 0] = -np.inf
    window_of_minus_inf = floats(1, 2, 4, 4)
    window_of_minus_inf[0, 0, :2, :2] = -np.inf
    channel_of_minus_inf = floats(1, 2, 3, 3)
    channel_of_minus_inf[0, 1] = -np.inf
    attention = lambda **attrs: helper.make_node(  # noqa: E731
        "Attention", ["Q", "K", "V", "mask"], ["Y"], **attrs
    )
    rnn = lambda **attrs: helper.make_node(  # noqa: E731
        "RNN", ["X", "W", "R"], ["Y", "Y_h"], hidden_size=3, **attrs
    )
    return [
        OwnCase(
            "serve_attention_hidden_row_4d",
            attention(),
            {"Q": floats(1, 2, 3, 4), "K": floats(1, 2, 5, 4), "V": floats(1, 2, 5, 4),
             "mask": hidden_row},
            23,
        ),
        OwnCase(
            "serve_attention_hidden_row_3d_head_mask",
            attention(q_num_heads=2, kv_num_heads=2),
            {"Q": floats(2, 3, 8), "K": floats(2, 5, 8), "V": floats(2, 5, 8),
             "mask": head_mask},
            23,
        ),
        OwnCase(
            "serve_attention_hidden_row_causal_and_mask",
            attention(is_causal=1),
            {"Q": floats(1, 2, 3, 4), "K": floats(1, 2, 5, 4), "V": floats(1, 2, 5, 4),
             "mask": first_key},
            23,
        ),
        OwnCase(
            "serve_conv_fp16_64_channels",
            helper.make_node("Conv", ["x", "w"], ["y"]),
            {"x": floats(1, 64, 8, 8, dtype=np.float16),
             "w": floats(4, 64, 3, 3, dtype=np.float16)},
            17,
        ),
        OwnCase(
            "serve_conv_fp16_depthwise_4096_ones",
            helper.make_node("Conv", ["x", "w"], ["y"], group=2),
            {"x": np.ones((1, 2, 4096), np.float16), "w": np.ones((2, 1, 4096), np.float16)},
            17,
        ),
        OwnCase(
            "serve_reduce_max_minus_inf",
            helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0),
            {"x": some_minus_inf},
            13,
        ),
        OwnCase(
            "serve_reduce_min_plus_inf",
            helper.make_node("ReduceMin", ["x"], ["y"], axes=[1], keepdims=0),
            {"x": -some_minus_inf},
            13,
        ),
        OwnCase(
            "serve_max_pool_minus_inf",
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
            {"x": window_of_minus_inf},
            12,
        ),
        OwnCase(
            "serve_global_max_pool_minus_inf",
            helper.make_node("GlobalMaxPool", ["x"], ["y"]),
            {"x": channel_of_minus_inf},
            1,
        ),
        OwnCase(
            "serve_arg_max_last_minus_inf",
            helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1),
            {"x": some_minus_inf},
            13,
        ),
        OwnCase(
            "serve_arg_min_last_plus_inf",
            helper.make_node("ArgMin", ["x"], ["y"], axis=1, select_last_index=1),
            {"x": -some_minus_inf},
            13,
        ),
        OwnCase(
            "serve_celu_below_zero",
            helper.make_node("Celu", ["x"], ["y"], alpha=2.0),
            {"x": floats(2, 5) * 6 - 3},
            12,
        ),
        OwnCase(
            "serve_rnn_affine_activation",
            rnn(activations=["Affine"], activation_alpha=[0.5], activation_beta=[0.1]),
            {"X": floats(4, 2, 3), "W": floats(1, 3, 3) - 0.5, "R": floats(1, 3, 3) - 0.5},
            14,
        ),
    ]


VARIANT_SUFFIX = "_with_constants"
# The largest input (in elements) a variant holds as a constant: a parameter, not data.
PARAMETER_ELEMENTS = 64


def with_constants(case):
    """The case's model with its small inputs after the first as initializers, or None
    when it has none."""
    inputs, _ = case.data_sets[0]
    graph = case.model.graph
    constant = [
        ix
        for ix in range(1, len(graph.input))
        if isinstance(inputs[ix], np.ndarray)
        and inputs[ix].size <= PARAMETER_ELEMENTS
        and graph.input[ix].type.HasField("tensor_type")
    ]
    if not constant:
        return None
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    model.graph.name += VARIANT_SUFFIX
    for ix in constant:
        name = graph.input[ix].name
        model.graph.initializer.append(numpy_helper.from_array(inputs[ix], name))
    kept = [i for ix, i in enumerate(graph.input) if ix not in constant]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model


def main():
    if onnx.__version__ != PINNED_ONNX:
        sys.exit(
            f"onnx {PINNED_ONNX} is pinned, found {onnx.__version__}: "
            "another version builds other cases"
        )
    np.random.seed(SEED)
    # The reference implementations warn about the infinities some cases expect.
    with np.errstate(all="ignore"):
        cases = node_cases.collect_testcases() + own_cases()
    CASES_DIR.mkdir(parents=True, exist_ok=True)
    names = {case.name for case in cases}
    written = set()
    for case in sorted(cases, key=lambda c: c.name):
        model = CASES_DIR / f"{case.name}.onnx"
        tensors = CASES_DIR / f"{case.name}.tensors"
        model.write_bytes(case.model.SerializeToString(deterministic=True))
        tensors.write_bytes(tensors_file(case))
        written.update((model.name, tensors.name))
        variant = with_constants(case)
        if variant is not None:
            assert case.name + VARIANT_SUFFIX not in names, f"{case.name}: a name clash"
            path = CASES_DIR / f"{case.name}{VARIANT_SUFFIX}.onnx"
            path.write_bytes(variant.SerializeToString(deterministic=True))
            written.add(path.name)
    for stale in CASES_DIR.iterdir():
        if stale.name not in written:
            stale.unlink()
    total = sum((CASES_DIR / name).stat().st_size for name in written)
    models = sum(name.endswith(".onnx") for name in written)
    print(f"{len(cases)} cases, {models} models, {total / 1e6:.1f} MB in {CASES_DIR}")


if __name__ == "__main__":
    main()
