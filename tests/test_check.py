import json

from serve.check import Tolerances, run_check
from tests.conftest import run_cli


def test_every_artifact_passes_in_every_runtime(exported_dir):
    rows, _ = run_check(exported_dir)
    seen = {(r.artifact, r.runtime) for r in rows}
    assert seen == {
        ("keras_linear.onnx", "onnxruntime"),
        ("keras_linear.onnx", "onnx.reference"),
        ("torch_linear.onnx", "onnxruntime"),
        ("torch_linear.onnx", "onnx.reference"),
        ("keras_linear.savedmodel", "tensorflow"),
        ("torch_linear.torchscript.pt", "torch"),
    }
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    for r in rows:
        assert r.max_diff_source <= 1e-5 and r.diff_analytic <= 0.05


def test_tight_analytic_tolerance_fails_keras(exported_dir):
    rows, _ = run_check(exported_dir, Tolerances(analytic=0.001))
    failed = {r.artifact for r in rows if not r.ok}
    assert failed == {"keras_linear.onnx", "keras_linear.savedmodel"}  # 18.98 is 0.018 short of 19


def test_cli_table_and_json(exported_dir):
    result = run_cli("-m", "serve.check", "--artifacts", str(exported_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[ok]") == 6 and "all 6 checks passed" in result.stdout
    # the article's headline bound stays the absolute 0.05 (its scale is 1, not std(y) = 3.4)
    assert "probe rows; |y(10) - 19| <= 0.05\n" in result.stdout and "triton/" not in result.stdout
    result = run_cli("-m", "serve.check", "--artifacts", str(exported_dir), "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is True and len(report["rows"]) == 6
    assert report["tolerances"]["analytic_scale"] == 1.0 and report["tolerances"]["analytic_bound"] == 0.05
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    assert manifest["probe"]["headline_tolerance_scale"] == 1.0


def test_flipped_byte_fails_with_sha256_message(exported_copy):
    path = exported_copy / "torch_linear.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_cli("-m", "serve.check", "--artifacts", str(exported_copy))
    assert result.returncode == 1
    fail_lines = [line for line in result.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(fail_lines) == 2 and all("torch_linear.onnx" in line for line in fail_lines)
    assert (
        "sha256" in fail_lines[0] and "!= manifest" in fail_lines[0] and "python -m export" in fail_lines[0]
    )


def test_manifest_naming_a_missing_file_fails_clearly(exported_copy):
    manifest = json.loads((exported_copy / "manifest.json").read_text())
    stored = next(e["path"] for e in manifest["artifacts"] if e["name"] == "keras_linear.onnx")
    (exported_copy / stored).unlink()
    result = run_cli("-m", "serve.check", "--artifacts", str(exported_copy))
    assert result.returncode == 2  # a missing input, like every command (README "Entry points")
    assert f"{stored}: named in" in result.stderr and "but missing" in result.stderr


def test_missing_artifacts_exit_2_with_fix(tmp_path):
    result = run_cli("-m", "serve.check", "--artifacts", str(tmp_path / "nope"))
    assert result.returncode == 2 and "python -m train.all" in result.stderr
    result = run_cli("-m", "serve.check", "--artifacts", str(tmp_path))
    assert (
        result.returncode == 2
        and "manifest.json" in result.stderr
        and "python -m export.all" in result.stderr
    )
    (tmp_path / "manifest.json").write_text("{not json")
    result = run_cli("-m", "serve.check", "--artifacts", str(tmp_path))
    assert result.returncode == 2 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr
