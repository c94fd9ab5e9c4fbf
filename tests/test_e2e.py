"""The CLIs in sequence on a fresh artifacts dir, as `make run` runs them."""

import json

from tests.conftest import run_cli


def test_train_export_check(tmp_path):
    artifacts = str(tmp_path / "artifacts")
    train = run_cli("-m", "train.all", "--artifacts", artifacts)
    assert train.returncode == 0, train.stderr
    export = run_cli("-m", "export.all", "--artifacts", artifacts)
    assert export.returncode == 0, export.stderr
    assert export.stdout.count("[ok]") == 4
    check = run_cli("-m", "serve.check", "--artifacts", artifacts)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all 6 checks passed" in check.stdout
    manifest = json.loads((tmp_path / "artifacts" / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == 4


def test_pipeline_runs_all_stages_in_one_process(tmp_path):
    artifacts = tmp_path / "artifacts"
    result = run_cli("-m", "pipeline", "--artifacts", str(artifacts), "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.index("least squares") < out.index("[ok] keras_linear.onnx") < out.index("all 6 checks passed")
    assert out.strip().splitlines()[-1] == "all 6 checks passed"
    record = json.loads((artifacts / "training.json").read_text())
    assert record["config"]["seed"] == 3
