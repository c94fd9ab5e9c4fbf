"""Helpers for the batch scoring tests: a two-input ONNX model built in place, and reading output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.dataset as ds
from onnx import TensorProto, helper

from oneneuron.schema import Signature
from tests.manifest_helpers import onnx_entry, spec, write_manifest

W = np.array([[1.5, -2.0]], dtype=np.float32)


def two_io_model_dir(directory: Path) -> Path:
    """An artifacts directory with `two_io`: a float32 [N, 2], b int64 [N, 1] ->
    s = a @ [1.5, -2] + b  [N, 1] and v = 2 * a  [N, 2], named in a manifest with its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes = [
        helper.make_node("Mul", ["a", "w"], ["aw"]),
        helper.make_node("ReduceSum", ["aw", "axes"], ["sum"], keepdims=1),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["sum", "bf"], ["s"]),
        helper.make_node("Mul", ["a", "two"], ["v"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [1, 2], W.ravel().tolist()),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("two", TensorProto.FLOAT, [1, 1], [2.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # its self-test, as an exporter writes it for any signature (serve/selftest.py): 1.5 - 4 + 3
    selftest = {"inputs": {"a": [[1.0, 2.0]], "b": [[3]]}, "outputs": {"s": [[0.5]], "v": [[2.0, 4.0]]}}
    helper.set_model_props(
        model, {"model": "two_io", "selftest": json.dumps(selftest | {"atol": 0, "rtol": 0})}
    )
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    (directory / "two_io.onnx").write_bytes(data)
    signature = Signature(
        (spec("a", "float32", "batch", 2), spec("b", "int64", "batch", 1)),
        (spec("s", "float32", "batch", 1), spec("v", "float32", "batch", 2)),
    )
    write_manifest(directory, [onnx_entry(directory, "two_io", signature)])
    return directory


def read_output(directory: Path) -> pa.Table:
    """Every part of an output directory, in part-name order (input order)."""
    files = sorted(str(p) for p in Path(directory).iterdir() if p.name.startswith("part-"))
    fmt = "csv" if files and files[0].endswith(".csv") else "parquet"
    return ds.dataset(files, format=fmt).to_table()


def one_input_model_bytes(dtype: str = "float32", scale: float | None = 2.0) -> bytes:
    """`x` [N, 1] of `dtype` -> `y`: x * scale (float32, with its own self-test in the metadata,
    as an exporter writes it), or x itself when `scale` is None (any dtype, the general self-test)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if scale is None:
        one = [[True]] if dtype == "bool" else [[1]]
        selftest = {"inputs": {"x": one}, "outputs": {"y": [[1]]}, "atol": 0, "rtol": 0}
        nodes, inits, out = [helper.make_node("Identity", ["x"], ["y"])], [], elem
        props = {"selftest": json.dumps(selftest)}
    else:
        nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]
        inits, out = [helper.make_tensor("w", TensorProto.FLOAT, [1, 1], [scale])], TensorProto.FLOAT
        props = {"selftest_x": "[[10.0]]", "selftest_y": repr(10.0 * scale)}
    graph = helper.make_graph(
        nodes,
        "one_input",
        [helper.make_tensor_value_info("x", elem, ["batch", 1])],
        [helper.make_tensor_value_info("y", out, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"model": "one", **props})
    return model.SerializeToString()


def one_input_model_dir(directory: Path, dtype: str = "float32", scale: float | None = 2.0) -> Path:
    """An artifacts directory with model `one` (`one_input_model_bytes`) named in a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "one.onnx").write_bytes(one_input_model_bytes(dtype, scale))
    out = "float32" if scale is not None else dtype
    signature = Signature((spec("x", dtype, "batch", 1),), (spec("y", out, "batch", 1),))
    write_manifest(directory, [onnx_entry(directory, "one", signature)])
    return directory
