import json

from oneneuron.fsio import sha256_file
from tests.conftest import run_cli


def test_training_record_has_everything(trained_dir):
    record = json.loads((trained_dir / "training.json").read_text())
    assert (
        record["config"]["seed"] == 0 and record["config"]["epochs"] == 500 and record["config"]["lr"] == 0.01
    )
    assert record["data"]["rows"] == 6 and len(record["data"]["sha256"]) == 64
    assert set(record["library_versions"]) >= {"python", "numpy", "tensorflow", "keras", "torch"}
    for name, framework in [("keras_linear", "tensorflow"), ("torch_linear", "torch")]:
        model = record["models"][name]
        assert model["framework"] == framework
        assert len(model["loss_history"]) == 500
        assert model["final_loss"] == model["loss_history"][-1]
        assert abs(model["headline_y"] - 19) < 0.05
        assert model["model_sha256"] == sha256_file(trained_dir / model["model_file"])


def test_cli_trains_prints_table_and_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    first = run_cli("-m", "train.all", "--artifacts", str(a), "--seed", "5")
    assert first.returncode == 0, first.stderr
    assert "least squares" in first.stdout and "y(x=10)" in first.stdout
    assert "update  500/500" in first.stderr  # progress while training
    assert first.stdout.strip().splitlines()[-1].startswith("wrote ")
    assert run_cli("-m", "train.all", "--artifacts", str(b), "--seed", "5").returncode == 0
    ra, rb = (json.loads((d / "training.json").read_text())["models"] for d in (a, b))
    for name in ("keras_linear", "torch_linear"):
        assert (ra[name]["weights"], ra[name]["bias"]) == (rb[name]["weights"], rb[name]["bias"])


def test_single_framework_keeps_the_other(tmp_path):
    assert run_cli("-m", "train.all", "--artifacts", str(tmp_path), "--epochs", "5").returncode == 0
    result = run_cli("-m", "train.torch", "--artifacts", str(tmp_path), "--epochs", "7")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "training.json").read_text())
    assert len(record["models"]["torch_linear"]["loss_history"]) == 7
    assert len(record["models"]["keras_linear"]["loss_history"]) == 5


def test_divergence_stops_with_advice(tmp_path):
    result = run_cli("-m", "train.torch", "--artifacts", str(tmp_path), "--lr", "5")
    assert result.returncode == 2
    assert "diverged" in result.stderr and "smaller learning rate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "training.json").exists()


def test_bad_flags_exit_2(tmp_path):
    for args in (["--epochs", "-3"], ["--lr", "abc"], ["--bogus"]):
        result = run_cli("-m", "train.all", "--artifacts", str(tmp_path), *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
    (tmp_path / "file").write_text("x")
    result = run_cli("-m", "train.all", "--artifacts", str(tmp_path / "file"))
    assert result.returncode == 2 and "not a directory" in result.stderr
