"""Every format computes what its source model computes (parity), and the ONNX contract holds."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import FORMATS
from export.onnx import OPSET
from serve.runtimes import RUNTIMES, VerifiedArtifact
from train import keras as keras_trainer
from train import torch as torch_trainer

PARITY_TESTED = {"savedmodel", "torchscript", "onnx"}  # formats with a test_parity_<format> below
PROBE = np.array([[-1], [0], [1], [2], [3], [4], [10], [-1000], [1000], [0.125]], dtype=np.float32)


def source_predictions(trained_dir, model):
    if model == "keras_linear":
        return keras_trainer.predict(keras_trainer.load(trained_dir / "keras_linear.keras", 1), PROBE)[:, 0]
    return torch_trainer.predict(torch_trainer.load(trained_dir / "torch_linear.pt", 1), PROBE)[:, 0]


def verified_as_is(path):
    """A runtime's input for a trusted fixture file (serve.check reads and hashes it; here it is given)."""
    if path.is_dir():
        return VerifiedArtifact(path, copy=path)
    return VerifiedArtifact(path, data=path.read_bytes())


def assert_parity(exported_dir, name, fmt):
    source = source_predictions(exported_dir, name.split(".")[0])
    for runtime, factory in RUNTIMES[fmt]:
        got = factory(verified_as_is(exported_dir / name), ["y"])({"x": PROBE})["y"][:, 0]
        np.testing.assert_allclose(got, source, atol=1e-5, rtol=1e-6, err_msg=f"{name} in {runtime}")


def test_every_registered_format_has_a_parity_test():
    assert set(FORMATS) == PARITY_TESTED, f"formats without a parity test: {set(FORMATS) - PARITY_TESTED}"
    assert set(FORMATS) <= set(RUNTIMES)  # and exportedprogram, for brought-in torch models


def test_parity_savedmodel(exported_dir):
    assert_parity(exported_dir, "keras_linear.savedmodel", "savedmodel")


def test_parity_torchscript(exported_dir):
    assert_parity(exported_dir, "torch_linear.torchscript.pt", "torchscript")


@pytest.mark.parametrize("name", ["keras_linear.onnx", "torch_linear.onnx"])
def test_parity_onnx(exported_dir, name):
    assert_parity(exported_dir, name, "onnx")


@pytest.mark.parametrize("name", ["keras_linear.onnx", "torch_linear.onnx"])
def test_onnx_contract(exported_dir, name):
    model = onnx.load(exported_dir / name)
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("x", "y")
    for value, width in ((inp, 1), (out, 1)):
        t = value.type.tensor_type
        assert t.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in t.shape.dim] == ["batch", width]
    assert {op.domain: op.version for op in model.opset_import}[""] == OPSET
    assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    meta = ort.InferenceSession(str(exported_dir / name)).get_modelmeta().custom_metadata_map
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    assert meta["source_framework"] == ("tensorflow" if name.startswith("keras") else "torch")
    assert meta["training_record_sha256"] == manifest["training_record"]["sha256"]
    assert json.loads(meta["selftest_x"]) == [[10.0]]
    assert float(meta["selftest_y"]) == pytest.approx(
        source_predictions(exported_dir, name[:-5])[6], abs=1e-6
    )
    # the general self-test every model has, describing the same test as the keys Node reads
    assert json.loads(meta["selftest"]) == {
        "inputs": {"x": [[10.0]]},
        "outputs": {"y": [[float(meta["selftest_y"])]]},
        "atol": float(meta["selftest_atol"]),
        "rtol": float(meta["selftest_rtol"]),
    }


def test_savedmodel_signature(exported_dir):
    import tensorflow as tf

    fn = tf.saved_model.load(str(exported_dir / "keras_linear.savedmodel")).signatures["serving_default"]
    (spec,) = fn.structured_input_signature[1].values()
    assert spec.name == "x" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, 1]
    assert list(fn.structured_outputs) == ["y"]
    assert fn.structured_outputs["y"].shape.as_list() == [None, 1]


def test_manifest_entries(exported_dir):
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    names = {e["name"]: e for e in manifest["artifacts"]}
    assert set(names) == {
        "keras_linear.onnx",
        "torch_linear.onnx",
        "keras_linear.savedmodel",
        "torch_linear.torchscript.pt",
    }
    for e in names.values():
        assert {
            "path",
            "format",
            "framework",
            "sha256",
            "size",
            "signature",
            "producer",
            "headline_y",
        } <= e.keys()
        assert e["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 1]}]
        assert e["signature"]["outputs"] == [{"name": "y", "dtype": "float32", "shape": ["batch", 1]}]
        assert (exported_dir / e["path"]).exists() and e["size"] > 0
    assert names["keras_linear.onnx"]["opset"] == names["torch_linear.onnx"]["opset"] == OPSET
    assert "tf2onnx" in names["keras_linear.onnx"]["producer"]
    assert "onnxscript" in names["torch_linear.onnx"]["producer"]


@pytest.mark.parametrize("name", ["keras_linear.onnx", "torch_linear.onnx"])
def test_onnx_graph_is_canonical_affine(exported_dir, name):
    """Both converters' graphs become Mul + Add with [1, 1] constants (onnxruntime's fast path)."""
    model = onnx.load(exported_dir / name)
    assert [n.op_type for n in model.graph.node] == ["Mul", "Add"]
    assert [list(i.dims) for i in model.graph.initializer] == [[1, 1], [1, 1]]
    assert "rewritten as Mul+Add" in model.doc_string


def test_canonical_affine_keeps_other_graphs_and_handles_n_features():
    from onnx import helper, numpy_helper

    from export.onnx import canonical_affine

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 1])
    w = np.array([[1.0, 2.0, 3.0]], np.float32)
    gemm = helper.make_model(
        helper.make_graph(
            [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)],
            "g",
            [x],
            [y],
            [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([0.5], np.float32), "B")],
        )
    )
    assert canonical_affine(gemm) == ["Gemm"]
    assert [n.op_type for n in gemm.graph.node] == ["MatMul", "Add"]
    feed = np.array([[1, 1, 1], [0, 2, -1]], np.float32)
    got = ort.InferenceSession(gemm.SerializeToString()).run(None, {"x": feed})[0]
    np.testing.assert_allclose(got[:, 0], feed @ w[0] + 0.5)
    relu = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    assert canonical_affine(relu) == ["Relu"] and [n.op_type for n in relu.graph.node] == ["Relu"]
