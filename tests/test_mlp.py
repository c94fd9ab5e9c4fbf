"""More than one neuron: `--model mlp:8,8 --activation tanh` on a nonlinear CSV, end to end.

The CSV: y = sin(a) + b², a and b ~ U(-2, 2), 300 rows, numpy seed 7 (written by the test).
Trained with the CLI in both frameworks, exported, checked, loaded with the Python loader and
served in-process; every prediction is compared with the source framework's on fresh rows.
"""

import json
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.serve_app import client

ROWS = 300
HIDDEN = (8, 8)
# (2 inputs + 1) x 8 + (8 + 1) x 8 + (8 + 1) x 1
PARAMETERS = 3 * 8 + 9 * 8 + 9
MODELS = {"keras_mlp": "train.keras", "torch_mlp": "train.torch"}
ATOL, RTOL = 1e-5, 1e-6  # the check's same-model tolerance


def make_csv(path):
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (ROWS, 2))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2
    lines = ["a,b,y"] + [f"{a:.6f},{b:.6f},{t:.6f}" for (a, b), t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return x, y


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """Trained with the CLI (--model mlp:8,8 --activation tanh --standardize), exported in-process."""
    from export.all import export_all

    root = tmp_path_factory.mktemp("mlp")
    x, y = make_csv(root / "data.csv")
    artifacts = root / "artifacts"
    result = run_cli(
        "-m",
        "train.all",
        "--data",
        str(root / "data.csv"),
        "--model",
        "mlp:8,8",
        "--activation",
        "tanh",
        "--standardize",
        "--test-fraction",
        "0",  # every row trains: the record's fitted curve covers the whole file
        "--epochs",
        "300",
        "--lr",
        "0.1",
        "--artifacts",
        str(artifacts),
    )
    assert result.returncode == 0, result.stderr
    export_all(artifacts)
    return {"artifacts": artifacts, "x": x, "y": y, "stdout": result.stdout}


def fresh_rows(n=16):
    """Rows nobody trained or probed on, inside and beyond the data's range."""
    rng = np.random.default_rng(123)
    return np.vstack([rng.uniform(-2, 2, (n - 2, 2)), [[-6.0, 5.0], [9.0, -7.5]]]).astype(np.float32)


def in_source(artifacts, name, x):
    """The trained model's own prediction, in Keras or torch (rebuilt from the record)."""
    import importlib

    from oneneuron.record import TrainingRecord

    info = TrainingRecord.load(artifacts).models[name]
    trainer = importlib.import_module(MODELS[name])
    model = trainer.load(artifacts / info.model_file, 2, info.architecture)
    return np.asarray(trainer.predict(model, x), dtype=np.float64)[:, 0]


def assert_same_model(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert np.all(np.abs(actual - expected) <= ATOL + RTOL * np.abs(expected)), (actual, expected)


def test_record_has_the_architecture_and_no_weights(mlp):
    record = json.loads((mlp["artifacts"] / "training.json").read_text())
    assert sorted(record["models"]) == sorted(MODELS)
    for model in record["models"].values():
        assert model["architecture"] == {"kind": "mlp", "hidden": list(HIDDEN), "activation": "tanh"}
        assert model["parameters"] == PARAMETERS
        assert "weights" not in model and "bias" not in model
        assert len(model["fitted"]["y"]) == ROWS  # predictions on the data rows, for the report
        assert model["config"]["model"] == "mlp:8,8" and model["config"]["activation"] == "tanh"
        assert model["loss"].startswith("mean")  # --loss article is the mean in both for an MLP
    # the table: architecture and parameter count instead of weights
    assert "mlp:8,8 tanh" in mlp["stdout"] and f"{PARAMETERS}" in mlp["stdout"]
    assert "w[a]" not in mlp["stdout"]


def test_the_mlp_fits_what_a_line_cannot(mlp):
    """Both frameworks beat least squares on the training rows by a wide margin (b² is not linear)."""
    from oneneuron.record import TrainingRecord

    record = TrainingRecord.load(mlp["artifacts"])
    design = np.hstack([mlp["x"], np.ones((ROWS, 1))])
    coef, *_ = np.linalg.lstsq(design, mlp["y"], rcond=None)
    linear_mse = float(np.mean((design @ coef - mlp["y"]) ** 2))
    for model in record.models.values():
        fitted = np.asarray(model.fitted.y)
        mse = float(np.mean((fitted - mlp["y"]) ** 2))
        assert mse < 0.5 * linear_mse, (model.model, mse, linear_mse)


def test_exports_keep_the_mlp_graph_and_pass_the_check(mlp, capsys):
    import onnx

    from serve.check import report

    manifest = json.loads((mlp["artifacts"] / "manifest.json").read_text())
    names = sorted(e["name"] for e in manifest["artifacts"])
    assert names == ["keras_mlp.onnx", "keras_mlp.savedmodel", "torch_mlp.onnx", "torch_mlp.torchscript.pt"]
    for entry in manifest["artifacts"]:
        assert entry["architecture"]["hidden"] == list(HIDDEN)
        # the check's per-row magnitude: at least |y| (the network with |weights| bounds the output)
        magnitude, source = np.asarray(entry["source_probe_magnitude"]), np.asarray(entry["source_probe_y"])
        assert len(magnitude) == len(source) and np.all(magnitude >= np.abs(source) - 1e-4)
        if entry["format"] == "onnx":
            assert entry["graph"].count("Tanh") == 2  # canonical_affine left the graph alone
            proto = onnx.load(str(mlp["artifacts"] / entry["path"]))
            assert "rewritten" not in proto.doc_string
            assert json.loads(entry["metadata"]["architecture"])["activation"] == "tanh"
    assert report(mlp["artifacts"]) == 0
    out = capsys.readouterr().out
    assert "all 6 checks passed" in out and "not linear, so |y(10)" in out
    assert report(mlp["artifacts"], as_json=True) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(r["ok"] and r["architecture"] == "mlp:8,8 tanh" for r in rows)


def test_loader_and_server_equal_the_source_framework(mlp):
    from serve import load

    x = fresh_rows()
    api = client(mlp["artifacts"])
    for name in MODELS:
        expected = in_source(mlp["artifacts"], name, x)
        model = load(name, artifacts=mlp["artifacts"])  # sha256 + embedded self-test
        assert_same_model(model.predict(x)[:, 0], expected)
        assert_same_model(model.run({"x": x})["y"][:, 0], expected)
        body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
        r = api.post(f"/v2/models/{name}/infer", content=json.dumps(body).encode())
        assert r.status_code == 200, r.text
        assert_same_model(r.json()["outputs"][0]["data"], expected)
        r = api.post(f"/v1/models/{name}:predict", content=json.dumps({"instances": x[:3].tolist()}).encode())
        assert r.status_code == 200, r.text
        assert_same_model(np.asarray(r.json()["predictions"])[:, 0], expected[:3])


def test_report_plots_predicted_vs_actual_without_weights(mlp, tmp_path):
    from train.report import build_report

    files = {p.name for p in build_report(mlp["artifacts"], tmp_path / "report")}
    assert files == {"predicted_vs_actual.png", "loss.png", "index.html"}
    html = (tmp_path / "report" / "index.html").read_text()
    assert "mlp:8,8 tanh" in html and 'data-key="models.keras_mlp.parameters"' in html
    assert "w[a]" not in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "mlp:0,4"], "expected 1 to 8 hidden layers of 1 to 4096 units"),
        (["--model", "mlp:"], "is not a model; give linear, or mlp:H1,H2"),
        (["--model", "cnn"], "is not a model"),
        (["--activation", "tanh"], "pass --model mlp:H1,H2,... as well"),
        (["--model", "mlp:4", "--activation", "sigmoid"], "invalid choice: 'sigmoid'"),
    ],
)
def test_bad_model_flags_are_one_line_exit_2(tmp_path, args, message):
    result = run_cli("-m", "train.all", *args, "--artifacts", str(tmp_path / "art"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "art").exists()


def test_check_fails_an_mlp_whose_onnx_file_differs_slightly(mlp, tmp_path):
    """The MLP's bound is not vacuous: an output bias moved by 1e-3 fails onnxruntime and onnx.reference."""
    import onnx
    from onnx import numpy_helper

    from oneneuron.fsio import sha256_path
    from serve.check import run_check
    from tests.conftest import copy_artifacts

    artifacts = copy_artifacts(mlp["artifacts"], tmp_path / "artifacts")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    entry = next(e for e in manifest["artifacts"] if e["name"] == "torch_mlp.onnx")
    path = artifacts / entry["path"]
    proto = onnx.load(str(path))
    biases = [i for i in proto.graph.initializer if numpy_helper.to_array(i).size == 1]
    assert len(biases) == 1  # the output layer's bias
    biases[0].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biases[0]) + 1e-3, biases[0].name))
    path.unlink()  # the stored version is a hard link of the alias: write a new file
    path.write_bytes(proto.SerializeToString())
    entry["sha256"], entry["size"] = sha256_path(path), path.stat().st_size
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    rows, _ = run_check(artifacts)
    failed = {(r.artifact, r.runtime) for r in rows if not r.ok}
    assert failed == {("torch_mlp.onnx", "onnxruntime"), ("torch_mlp.onnx", "onnx.reference")}, rows
    # onnxruntime runs the file's embedded self-test first (which the changed bias fails); the
    # reference evaluator compares the probe rows with the source framework's outputs
    assert all((r.worst_excess or 0) > 0 or "self-test" in (r.error or "") for r in rows if not r.ok), rows


def test_one_framework_retrained_as_an_mlp_keeps_the_others_linear_model(trained_dir, tmp_path):
    """`train.keras --model mlp:4` after the article's run: the record holds keras_mlp and torch_linear,
    both export and pass the check, the least-squares bound applied to the linear model only."""
    import shutil

    from export.all import export_all
    from oneneuron.record import TrainingRecord
    from serve.check import run_check
    from train.all import train_all
    from train.config import TrainConfig
    from train.data import article_data

    artifacts = tmp_path / "artifacts"
    shutil.copytree(trained_dir, artifacts)
    train_all(TrainConfig(artifacts=artifacts, model="mlp:4"), article_data(), frameworks=("keras",))
    record = TrainingRecord.load(artifacts)
    assert sorted(record.models) == ["keras_mlp", "torch_linear"]
    assert record.models["torch_linear"].weights is not None and record.models["keras_mlp"].weights is None
    assert record.models["keras_mlp"].parameters == (1 + 1) * 4 + (4 + 1)
    export_all(artifacts)
    rows, _ = run_check(artifacts)
    assert all(r.ok for r in rows), rows
    assert {r.architecture for r in rows if r.artifact.startswith("torch_linear")} == {"linear"}
    assert {r.architecture for r in rows if r.artifact.startswith("keras_mlp")} == {"mlp:4 relu"}
    assert max(r.diff_analytic for r in rows if r.architecture == "linear") <= 0.05


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found: install Node.js 20+ to run it")
def test_node_cli_equals_the_source_framework(mlp):
    """The Node CLI loads each MLP (sha256 beside the manifest, embedded self-test) and predicts rows."""
    from tests.conftest import ROOT

    if not (ROOT / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.fail(
            "node_modules/onnxruntime-node is missing: run `npm ci --ignore-scripts` (make test does)"
        )
    x = fresh_rows(4)
    rows = [",".join(repr(float(v)) for v in row) for row in x]
    for name in MODELS:
        result = subprocess.run(
            ["node", "serve/node/predict.mjs", str(mlp["artifacts"] / f"{name}.onnx"), *rows],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "self-test ok" in result.stderr
        assert_same_model([float(v) for v in result.stdout.split()], in_source(mlp["artifacts"], name, x))
