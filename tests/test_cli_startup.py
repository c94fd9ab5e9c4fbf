"""Every command's `--help` and argument errors answer before TensorFlow or torch is imported.

Timing is not asserted (a loaded machine makes any bound flaky); what makes `--help` take
6-11 s is importing TensorFlow (~2 s), torch (~1 s) and tf2onnx, so this asserts that they
are not in `sys.modules` after `--help`, an unknown flag, a bad number and a missing
`--artifacts` directory (or `--data` file), and that the usage line and the error line name
the real command (`python -m train.all`, not `all.py` or `__main__.py`). Each command runs in
a fresh interpreter, as `python -m` runs it, so nothing imported by pytest itself can hide
an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("tensorflow", "torch", "keras", "tf2onnx", "onnxscript", "onnx", "matplotlib")

# command -> the arguments of one failing run that must fail before any training or export.
# Training commands create --artifacts, so for them a missing --data file is the missing input.
COMMANDS = {
    "train.all": ["--data", "{tmp}/missing.csv", "--artifacts", "{tmp}/out"],
    "train.keras": ["--data", "{tmp}/missing.csv", "--artifacts", "{tmp}/out"],
    "train.torch": ["--data", "{tmp}/missing.csv", "--artifacts", "{tmp}/out"],
    "pipeline": ["--data", "{tmp}/missing.csv", "--artifacts", "{tmp}/out"],
    "train.report": ["--artifacts", "{tmp}/missing"],
    "export.all": ["--artifacts", "{tmp}/missing"],
    "export.onnx": ["--artifacts", "{tmp}/missing"],
    "export.savedmodel": ["--artifacts", "{tmp}/missing"],
    "export.torchscript": ["--artifacts", "{tmp}/missing"],
    "export.triton": ["--artifacts", "{tmp}/missing"],
    "serve.check": ["--artifacts", "{tmp}/missing"],
    "serve": ["--artifacts", "{tmp}/missing"],
    "serve.web": ["--artifacts", "{tmp}/missing"],
    "bench.soak": ["--artifacts", "{tmp}/missing"],
}
HELP_ONLY = ["bench", "bench.serving"]  # bench runs without an artifacts directory

# Runs in the child: each case as `python -m` would (runpy, alter_sys), then reports what it
# printed and which heavy modules were loaded by then.
RUNNER = r"""
import contextlib, io, json, runpy, sys
module, cases, heavy = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].split(",")
report = []
for args in cases:
    sys.argv = [module, *args]
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
    loaded = sorted(m for m in heavy if m in sys.modules)
    report.append({"args": args, "code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": loaded})
print(json.dumps(report))
"""


def run_cases(module: str, cases: list[list[str]], tmp_path) -> list[dict]:
    cases = [[a.format(tmp=tmp_path) for a in args] for args in cases]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, module, json.dumps(cases), ",".join(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", sorted(COMMANDS) + HELP_ONLY)
def test_help_and_argument_errors_import_no_framework(module, tmp_path):
    cases = [["--help"], ["--no-such-flag"]] + ([COMMANDS[module]] if module in COMMANDS else [])
    help_run, flag_run, *missing = run_cases(module, cases, tmp_path)
    prog = f"python -m {module}"

    assert help_run["code"] == 0, help_run
    assert help_run["out"].startswith(f"usage: {prog} "), help_run["out"][:200]
    assert "example:" in help_run["out"]

    assert flag_run["code"] == 2
    assert "--no-such-flag" in flag_run["err"] and f"see {prog} --help" in flag_run["err"], flag_run["err"]
    for run in (help_run, flag_run, *missing):
        assert run["heavy"] == [], f"{module} {run['args']}: imported {run['heavy']}"
        assert "Traceback" not in run["err"], run["err"]

    for run in missing:
        # one error line (a "config: ..." progress line may precede it)
        errors = [line for line in run["err"].splitlines() if line.startswith("error: ")]
        assert run["code"] == 2 and len(errors) == 1, run["err"]
        assert "missing" in errors[0], errors[0]  # names the input it could not find
    assert not (tmp_path / "out").exists(), "a failed run left an artifacts directory behind"


def test_tensorflow_start_up_logs_only_with_verbose():
    """TensorFlow's C++ start-up lines (written to fd 2, not through Python) show only with -v."""
    code = (
        "import logging, sys; from oneneuron.frameworks import quiet_tensorflow; "
        "logging.basicConfig(level=logging.DEBUG if sys.argv[1] == 'v' else logging.WARNING); "
        "tf = quiet_tensorflow(); print(tf.constant([2.0]).numpy()[0])"
    )
    runs = {
        flag: subprocess.run(
            [sys.executable, "-c", code, flag], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        for flag in ("q", "v")
    }
    assert runs["q"].returncode == 0 and runs["q"].stdout.strip() == "2.0"
    assert runs["q"].stderr == "", runs["q"].stderr
    # With -v the held-back start-up lines are replayed (TensorFlow 2.21 prints its oneDNN notice).
    assert "oneDNN" in runs["v"].stderr or "absl" in runs["v"].stderr, runs["v"].stderr


# command -> texts its --help must contain (whitespace-normalised; issue 21's help-text items).
HELP_TEXTS = {
    "export.all": ["Export the trained models in every format (SavedModel, TorchScript, ONNX)"],
    "export.onnx": [
        "Export the trained models as ONNX",
        "--artifacts DIR artifacts directory to read and write",
    ],
    "export.triton": [
        "--out DIR repository directory (default: ARTIFACTS/triton) --max-batch-size",
        "--max-batch-size ROWS rows per batch Triton may form",
    ],
    "export.keys": ["usage: python -m export.keys ", "example: python -m export.keys --out keys"],
    "export.sign": ["usage: python -m export.sign ", "example: python -m export.sign --artifacts"],
    "serve": ["--artifacts DIR artifacts directory to read (default: artifacts)"],
    "serve.check": ["--artifacts DIR artifacts directory to read (default: artifacts)"],
}


@pytest.mark.parametrize("module", sorted(HELP_TEXTS))
def test_help_texts_say_what_each_flag_does(module, tmp_path):
    (run,) = run_cases(module, [["--help"]], tmp_path)
    text = " ".join(run["out"].split())
    for expected in HELP_TEXTS[module]:
        assert expected in text, (expected, text)
    assert "(default: None)" not in text and "as all" not in text
    assert run["code"] == 0 and run["heavy"] == [], run
