"""export.triton: the repository layout, and config.pbtxt parsed with Triton's own ModelConfig protobuf."""

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from core.errors import IntegrityError
from export.triton import export_triton
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def repo(exported_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton")
    export_triton(exported_dir, out)
    return out


def test_repository_has_every_onnx_model(repo, exported_dir):
    assert sorted(p.name for p in repo.iterdir()) == ["keras_linear", "torch_linear"]
    for name in ("keras_linear", "torch_linear"):
        copied = (repo / name / "1" / "model.onnx").read_bytes()
        assert copied == (exported_dir / f"{name}.onnx").read_bytes()


@pytest.mark.parametrize("name", ["keras_linear", "torch_linear"])
def test_config_parses_and_agrees_with_onnx_signature(repo, name):
    config = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    model = onnx.load(repo / name / "1" / "model.onnx")
    (x,), (y,) = model.graph.input, model.graph.output
    assert config.name == name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert [(i.name, i.data_type) for i in config.input] == [(x.name, model_config_pb2.TYPE_FP32)]
    assert [(o.name, o.data_type) for o in config.output] == [(y.name, model_config_pb2.TYPE_FP32)]
    # dims exclude the batch dimension when max_batch_size > 0; the ONNX batch dim is symbolic
    x_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in x.type.tensor_type.shape.dim]
    y_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in y.type.tensor_type.shape.dim]
    assert x_dims[0] == -1 and y_dims[0] == -1
    assert list(config.input[0].dims) == x_dims[1:] and x_dims[1] >= 1
    assert list(config.output[0].dims) == y_dims[1:] == [1]
    assert x.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cli_default_out_and_tampered_model(exported_copy):
    result = run_cli("-m", "export.triton", "--artifacts", str(exported_copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(str(exported_copy / "triton"))
    assert (exported_copy / "triton" / "torch_linear" / "config.pbtxt").is_file()
    (exported_copy / "keras_linear.onnx").write_bytes(b"not onnx")
    with pytest.raises(IntegrityError, match=r"keras_linear\.[0-9a-f]{12}\.onnx: sha256"):
        export_triton(exported_copy)


def test_missing_manifest_exits_2(tmp_path):
    result = run_cli("-m", "export.triton", "--artifacts", str(tmp_path))
    assert result.returncode == 2
    assert "manifest.json: not found" in result.stderr


def test_config_for_two_inputs_and_two_outputs(tmp_path):
    """Any signature: every input and output with its TYPE_* and dims without the batch dim."""
    from export.triton import export_triton
    from tests.anysig_helpers import NAME, anysig_dir

    artifacts = anysig_dir(tmp_path / "artifacts")
    (model_dir,) = export_triton(artifacts, tmp_path / "triton")
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == NAME and config.max_batch_size > 0
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("features", model_config_pb2.TYPE_FP32, [3]),
        ("ids", model_config_pb2.TYPE_INT64, [1]),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("score", model_config_pb2.TYPE_FP32, [1]),
        ("pair", model_config_pb2.TYPE_FP32, [2]),
    ]
    assert (model_dir / "1" / "model.onnx").read_bytes() == (artifacts / f"{NAME}.onnx").read_bytes()
