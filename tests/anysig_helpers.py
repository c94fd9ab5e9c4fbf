"""A two-input, two-output ONNX model built in place (no training, nothing downloaded), for the tests
of "any signature" through the server, Node, Triton and the page (issue 11, section 4).

    features float32 [batch, 3], ids int64 [batch, 1]
      -> score float32 [batch, 1] = features @ W + ids
         pair  float32 [batch, 2] = [sum(features), features[0] * ids]

Its ONNX metadata carries the general self-test (`selftest`: named inputs and the expected outputs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from oneneuron.schema import Signature
from tests.manifest_helpers import onnx_entry, spec, write_manifest

NAME = "two_in_two_out"
W = np.array([[0.5], [-1.25], [2.0]], dtype=np.float32)
SELFTEST_INPUTS = {"features": [[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0]], "ids": [[7], [-3]]}


def reference(features, ids) -> dict[str, np.ndarray]:
    """What the model computes, in numpy (float32 throughout, like onnxruntime)."""
    a = np.asarray(features, dtype=np.float32).reshape(-1, 3)
    b = np.asarray(ids, dtype=np.int64).reshape(-1, 1).astype(np.float32)
    return {
        "score": a @ W + b,
        "pair": np.concatenate([a.sum(axis=1, keepdims=True), a[:, :1] * b], axis=1),
    }


def build(selftest: dict | None = None) -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["fw"]),
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["fw", "idsf"], ["score"]),
        helper.make_node("ReduceSum", ["features", "axes"], ["total"], keepdims=1),
        helper.make_node("Slice", ["features", "start", "end", "axes"], ["first"]),
        helper.make_node("Mul", ["first", "idsf"], ["scaled"]),
        helper.make_node("Concat", ["total", "scaled"], ["pair"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("pair", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [3, 1], W.ravel().tolist()),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("start", TensorProto.INT64, [1], [0]),
            helper.make_tensor("end", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if selftest is None:
        expected = reference(SELFTEST_INPUTS["features"], SELFTEST_INPUTS["ids"])
        selftest = {
            "inputs": SELFTEST_INPUTS,
            "outputs": {k: v.astype(np.float64).tolist() for k, v in expected.items()},
            "atol": 1e-5,
            "rtol": 1e-6,
        }
    props = {"model": NAME, "source_framework": "onnx", "selftest": json.dumps(selftest)}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


SIGNATURE = Signature(
    (spec("features", "float32", "batch", 3), spec("ids", "int64", "batch", 1)),
    (spec("score", "float32", "batch", 1), spec("pair", "float32", "batch", 2)),
)


def anysig_dir(directory: Path, selftest: dict | None = None) -> Path:
    """An artifacts directory holding `two_in_two_out.onnx`, named in a manifest with its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{NAME}.onnx").write_bytes(build(selftest).SerializeToString())
    write_manifest(directory, [onnx_entry(directory, NAME, SIGNATURE)])
    return directory
