"""The README's commands exist: every `python -m <module>` it shows answers `--help` (exit 0)."""

import re
import runpy
import sys

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
MODULES = sorted(
    {m.rstrip(".") for m in re.findall(r"python -m ([a-z_][\w.]*)", README)}
    - {"pytest", "pip", "venv", "http.server"}
)


def test_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
    assert {"train.all", "export.onnx", "serve.check", "serve", "pipeline", "bench"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_readme_command_answers_help(module, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert info.value.code == 0, module
    out = capsys.readouterr().out
    assert "usage:" in out and "example:" in out, module
