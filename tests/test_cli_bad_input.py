"""Bad input at every entry point: one `error:` line on stderr, exit 2, no traceback.

Every CLI x {unknown flag, missing / non-directory artifacts dir, non-numeric and negative
numbers, an input JSON that is not JSON, an input naming a missing file}. The CLIs run
in-process (`runpy`, as `python -m` does) so that TensorFlow and torch are imported once;
a server that would start instead of failing is an error (uvicorn is stubbed out).
Cases that do not apply to a command are left out, each for the reason given in `applies`.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
import warnings

import pytest
import uvicorn

# command -> (kind, numeric flag). Kinds: "train" writes the artifacts directory (creating it)
# and the training record; "export" reads training.json and the trained models; "report" reads
# training.json (and the manifest); "reader" reads manifest.json and the files it names; "sign" is a
# reader given a valid --key; "keys" only writes --out DIR; "batch" is a reader also given a valid
# Parquet --input and a new --output directory; "optimize" is a reader also given --model and a method.
CLIS = {
    "train.all": ("train", "--epochs"),
    "train.keras": ("train", "--epochs"),
    "train.torch": ("train", "--epochs"),
    "pipeline": ("train", "--epochs"),
    "train.report": ("report", None),
    "export.all": ("export", "--keep-versions"),
    "export.onnx": ("export", "--keep-versions"),
    "export.savedmodel": ("export", "--keep-versions"),
    "export.torchscript": ("export", "--keep-versions"),
    "export.triton": ("reader", "--max-batch-size"),
    "export.sign": ("sign", None),
    "export.keys": ("keys", None),
    "export.optimize": ("optimize", "--data-rows"),
    "serve.check": ("reader", "--atol"),
    "serve": ("reader", "--max-rows"),
    "serve.web": ("reader", "--port"),
    "serve.batch": ("batch", "--batch-rows"),
}
CASES = ["unknown_flag", "missing_dir", "not_a_dir", "non_numeric", "negative", "bad_json", "missing_file"]


def applies(kind: str, flag: str | None, case: str) -> bool:
    if kind == "keys":
        return case in ("unknown_flag", "not_a_dir")  # it reads nothing and creates its directory
    if kind in ("batch", "optimize"):
        return applies("reader", flag, case)
    if case == "missing_dir":
        return kind != "train"  # training creates its output directory
    if case in ("non_numeric", "negative"):
        return flag is not None  # no numeric flag to get wrong
    if case == "bad_json":
        return kind != "train"  # training writes the record and manifest afresh (a corrupt one is replaced)
    if case == "missing_file":
        return kind in ("export", "reader", "sign")  # the report reads no model files
    return True


def argv_for(case: str, kind: str, flag: str | None, exported_dir, tmp_path) -> list[str]:
    if kind == "sign":  # every case with a usable key, so that the case itself is what is refused
        from export.keys import make_keys

        private, _, _ = make_keys(tmp_path / "signing-key")
        return [*argv_for(case, "reader", flag, exported_dir, tmp_path), "--key", str(private)]
    if kind == "batch":  # a valid input and output, so that the case itself is what is refused
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "in.parquet")
        io = [
            "--model",
            "keras_linear",
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "o"),
        ]
        return [*argv_for(case, "reader", flag, exported_dir, tmp_path), *io]
    if kind == "optimize":  # a model and a method, so that the case itself is what is refused
        return [*argv_for(case, "reader", flag, exported_dir, tmp_path), "--model", "keras_linear", "--fp16"]
    if kind == "keys" and case == "not_a_dir":
        (tmp_path / "file").write_text("x")
        return ["--out", str(tmp_path / "file")]
    if case == "unknown_flag":
        return ["--no-such-flag"]
    if case == "missing_dir":
        return ["--artifacts", str(tmp_path / "absent")]
    if case == "not_a_dir":
        (tmp_path / "file").write_text("x")
        return ["--artifacts", str(tmp_path / "file")]
    if case == "non_numeric":
        return [flag, "abc"]
    if case == "negative":
        return [flag, "-5"]
    artifacts = tmp_path / "artifacts"
    shutil.copytree(exported_dir, artifacts)
    if case == "bad_json":  # the JSON this command reads first
        (artifacts / ("training.json" if kind in ("export", "report") else "manifest.json")).write_text(
            "{not json"
        )
    elif kind == "export":  # missing_file: what the command's input names
        for name in ("keras_linear.keras", "torch_linear.pt"):
            (artifacts / name).unlink()
    else:  # the manifest names the stored version (keras_linear.<sha12>.onnx); its alias goes too
        manifest = json.loads((artifacts / "manifest.json").read_text())
        entry = next(e for e in manifest["artifacts"] if e["name"] == "keras_linear.onnx")
        for name in (entry["path"], entry["alias"]):
            (artifacts / name).unlink()
    return ["--artifacts", str(artifacts)]


PARAMS = [
    pytest.param(cmd, case, id=f"{cmd}-{case}")
    for cmd, (kind, flag) in CLIS.items()
    for case in CASES
    if applies(kind, flag, case)
]


@pytest.mark.parametrize("command, case", PARAMS)
def test_bad_input_is_one_line_exit_2(command, case, exported_dir, tmp_path, monkeypatch, capsys):
    kind, flag = CLIS[command]
    argv = argv_for(case, kind, flag, exported_dir, tmp_path)

    def no_server(*args, **kwargs):
        raise AssertionError("the server started instead of refusing its input")

    monkeypatch.setattr(uvicorn, "run", no_server)
    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    monkeypatch.setattr(sys, "argv", [command, *argv])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as info:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules" for re-run modules
        runpy.run_module(command, run_name="__main__", alter_sys=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


def test_every_entry_point_is_covered():
    """A new `python -m` command must be added to CLIS."""
    from tests.conftest import ROOT

    found = set()
    for path in [ROOT / "pipeline.py", *(ROOT / p for p in ("train", "export", "serve"))]:
        files = [path] if path.is_file() else path.rglob("*.py")
        for file in files:
            if 'if __name__ == "__main__"' in file.read_text():
                module = file.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
                found.add(module.removesuffix(".__main__"))
    assert found <= set(CLIS), found - set(CLIS)
