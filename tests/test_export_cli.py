import json
import os

from oneneuron.fsio import atomic_write_bytes
from tests.conftest import run_cli


def test_missing_training_output_exits_2_with_the_fix(tmp_path):
    for fmt in ("onnx", "savedmodel", "torchscript", "all"):
        result = run_cli("-m", f"export.{fmt}", "--artifacts", str(tmp_path))
        assert result.returncode == 2, (fmt, result.stderr)
        line = result.stderr.strip().splitlines()[-1]
        assert "training.json" in line and "python -m train.all" in line, line
        assert "Traceback" not in result.stderr


def test_missing_model_file_names_it(exported_copy):
    (exported_copy / "torch_linear.pt").unlink()
    result = run_cli("-m", "export.torchscript", "--artifacts", str(exported_copy))
    assert result.returncode == 2
    assert "torch_linear.pt" in result.stderr and "python -m train.all" in result.stderr


def test_onnx_export_alone_after_training(trained_dir, tmp_path):
    import shutil

    shutil.copytree(trained_dir, tmp_path, dirs_exist_ok=True)
    result = run_cli("-m", "export.onnx", "--artifacts", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "DeprecationWarning" not in result.stderr and "torchvision" not in result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(e["name"] for e in manifest["artifacts"]) == ["keras_linear.onnx", "torch_linear.onnx"]
    assert result.stdout.strip().splitlines()[-1].startswith("wrote ")
    assert run_cli("-m", "serve.check", "--artifacts", str(tmp_path)).returncode == 0


def test_torchscript_export_hides_only_the_jit_deprecation(trained_dir, tmp_path):
    import shutil

    shutil.copytree(trained_dir, tmp_path, dirs_exist_ok=True)
    result = run_cli("-W", "default", "-m", "export.torchscript", "--artifacts", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "is deprecated" not in result.stderr


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"one")
    atomic_write_bytes(tmp_path / "a.bin", b"two")
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_retraining_drops_stale_entries(exported_copy):
    assert run_cli("-m", "train.all", "--artifacts", str(exported_copy), "--seed", "9").returncode == 0
    result = run_cli("-m", "export.onnx", "--artifacts", str(exported_copy))
    assert result.returncode == 0 and "exported from an earlier training run" in result.stderr
    manifest = json.loads((exported_copy / "manifest.json").read_text())
    assert {e["format"] for e in manifest["artifacts"]} == {"onnx"}


def test_stale_aliases_and_versions_are_removed_but_nothing_else(exported_copy):
    (exported_copy / "notes.0123456789ab.txt").write_text("a user's file that looks versioned")
    assert run_cli("-m", "train.all", "--artifacts", str(exported_copy), "--seed", "4").returncode == 0
    assert run_cli("-m", "export.onnx", "--artifacts", str(exported_copy)).returncode == 0
    # the previous generation's files are kept until the next export (a reader may still open them)
    assert run_cli("-m", "export.onnx", "--artifacts", str(exported_copy)).returncode == 0
    manifest = json.loads((exported_copy / "manifest.json").read_text())
    # the newest version of each artifact and the older kept ones (--keep-versions)
    stored = {e["path"] for e in manifest["artifacts"] + manifest.get("previous_versions", [])}
    names = {p.name for p in exported_copy.iterdir()}
    # the dropped SavedModel/TorchScript entries lose their aliases and stored versions
    assert not {"keras_linear.savedmodel", "torch_linear.torchscript.pt"} & names
    assert not [n for n in names if ".savedmodel" in n or ".torchscript" in n]
    assert {n for n in names if n.endswith(".onnx")} == stored | {"keras_linear.onnx", "torch_linear.onnx"}
    assert "notes.0123456789ab.txt" in names
