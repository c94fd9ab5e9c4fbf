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
