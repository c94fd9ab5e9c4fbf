"""export.triton: the repository layout, and config.pbtxt parsed with Triton's own ModelConfig protobuf."""

import shutil

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.triton import export_triton
from oneneuron.errors import IntegrityError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def repo(exported_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton")
    export_triton(exported_dir, out)
    return out


def test_repository_has_every_onnx_model(repo, exported_dir):
    # one directory per model (Triton serves every subdirectory) and the marker export.all refreshes from
    assert sorted(p.name for p in repo.iterdir()) == [".made_from.json", "keras_linear", "torch_linear"]
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


def test_stale_repository_is_reported_and_refreshed_by_export_all(exported_copy):
    """Retrain torch (another seed) and re-export ONNX only: the check names both stale models (the
    keras file's metadata names the new record too) and the fix; export.all refreshes the repository."""
    import json

    from export.all import export_all
    from export.onnx import export as export_onnx
    from serve.check import run_check
    from train.all import train_all
    from train.config import TrainConfig
    from train.data import article_data

    export_triton(exported_copy)
    repo = exported_copy / "triton"
    rows, _ = run_check(exported_copy)
    (row,) = [r for r in rows if r.artifact == "triton/"]
    assert row.ok and "current (keras_linear, torch_linear)" in row.note
    # a model export.triton made earlier that is no longer exported (e.g. renamed)
    shutil.copytree(repo / "keras_linear", repo / "retired")
    marker = json.loads((repo / ".made_from.json").read_text())
    marker["models"]["retired"] = marker["models"]["keras_linear"]
    (repo / ".made_from.json").write_text(json.dumps(marker))

    train_all(TrainConfig(artifacts=exported_copy, seed=1), article_data(), frameworks=("torch",))
    new = {e.model: e for e in export_onnx(exported_copy)}
    result = run_cli("-m", "serve.check", "--artifacts", str(exported_copy))
    assert result.returncode == 1, result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("[") and "triton/" in line]
    assert line.startswith("[FAIL]") and "stale:" in line
    for model in ("keras_linear", "torch_linear"):
        assert f"{model}: made from {marker['models'][model]['path']}, the manifest now names" in line
        assert new[model].path in line
    assert "retired: no longer exported" in line
    assert f"re-run python -m export.triton --artifacts {exported_copy}" in line
    assert result.stdout.strip().endswith("checks FAILED: triton/ (Triton)")

    export_all(exported_copy)
    rows, manifest = run_check(exported_copy)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert sorted(p.name for p in repo.iterdir()) == [".made_from.json", "keras_linear", "torch_linear"]
    for entry in manifest.entries("onnx"):
        assert (repo / entry.model / "1" / "model.onnx").read_bytes() == (
            exported_copy / entry.path
        ).read_bytes()
    # a hand-edited copy is stale too
    (repo / "torch_linear" / "1" / "model.onnx").write_bytes(b"edited")
    rows, _ = run_check(exported_copy)
    (row,) = [r for r in rows if r.artifact == "triton/"]
    assert not row.ok and "torch_linear: triton/torch_linear/1/model.onnx differs from" in row.error


def test_export_all_leaves_a_repository_it_did_not_make(exported_copy):
    from export.all import export_all
    from serve.check import run_check

    own = exported_copy / "triton" / "mine" / "1"
    own.mkdir(parents=True)
    (own / "model.onnx").write_bytes(b"my own model")
    export_all(exported_copy)
    assert sorted(p.name for p in (exported_copy / "triton").iterdir()) == ["mine"]
    assert (own / "model.onnx").read_bytes() == b"my own model"
    rows, _ = run_check(exported_copy)
    (row,) = [r for r in rows if r.artifact == "triton/"]
    assert not row.ok and "not made by this toolkit's export.triton (no .made_from.json)" in row.error


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


def test_every_model_is_published_only_with_a_usable_selftest(tmp_path):
    """One rule for every signature (oneneuron/selftest.py, the loader's): a two-input model whose
    `selftest` is unusable, or that has no self-test at all, is refused like the article's would be."""
    from tests.anysig_helpers import NAME, SIGNATURE, anysig_dir, build, onnx_entry, write_manifest

    loose = {"inputs": {"features": [[1.0, 2.0, 3.0]], "ids": [[1]]}, "outputs": {"score": [[0.0]]}}
    bad = anysig_dir(tmp_path / "bad", loose | {"atol": 0.5, "rtol": 0.0})
    with pytest.raises(IntegrityError, match=r"no usable self-test \(tolerance 0.5 \+ 0.0·\|y\| is outside"):
        export_triton(bad, tmp_path / "triton_bad")
    none = tmp_path / "none"
    none.mkdir()
    proto = build()
    del proto.metadata_props[:]
    (none / f"{NAME}.onnx").write_bytes(proto.SerializeToString())
    write_manifest(none, [onnx_entry(none, NAME, SIGNATURE)])
    with pytest.raises(IntegrityError, match=r"no self-test: .*model inputs \['features', 'ids'\]"):
        export_triton(none, tmp_path / "triton_none")
