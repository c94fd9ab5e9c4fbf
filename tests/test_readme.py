"""The README's commands exist: every `python -m <module>` it (or docs/) shows answers `--help` (exit 0)."""

import re
import runpy
import sys

import pytest

from oneneuron.scripts import SCRIPTS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = "\n".join(
    p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))
)  # detail moved out of the README
MODULES = sorted(
    {m.rstrip(".") for m in re.findall(r"python -m ([a-z_][\w.]*)", README + DOCS)}
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


def _scripts() -> dict[str, str]:
    """[project.scripts] of pyproject.toml: console script -> "module:function"."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_readme_console_scripts_exist_and_match_their_modules():
    # not console scripts: the npm package's bins, and bench.peers' cache directory (~/.cache/oneneuron-peers)
    named = set(re.findall(r"\boneneuron-[a-z]+\b", README)) - {
        "oneneuron-embed",
        "oneneuron-predict",
        "oneneuron-peers",
    }
    scripts = _scripts()
    assert named and named <= set(scripts), named - set(scripts)
    assert set(scripts) <= named, f"console scripts the README does not mention: {set(scripts) - named}"
    # The README says which `python -m` command each script is: check every pair it states.
    listed = re.search(r"`\.venv/bin/(oneneuron-train)`,(.*?)\(the same commands as (.*?)\)", README, re.S)
    names = [listed.group(1), *re.findall(r"`(oneneuron-[a-z]+)`", listed.group(2))]
    modules = re.findall(r"`(?:python -m )?([a-z_.]+)`", listed.group(3))
    assert len(names) == len(modules) == len(scripts)
    for name, module in zip(names, modules, strict=True):
        target = SCRIPTS[name][0]  # each script runs this module's main() (oneneuron/scripts.py)
        assert target in (module, f"{module}.__main__", f"oneneuron.{module}"), (name, module, target)


@pytest.mark.parametrize("script", sorted(_scripts()))
def test_console_script_answers_help_under_its_own_name(script, monkeypatch, capsys):
    import importlib

    module, function = _scripts()[script].split(":")
    monkeypatch.setattr(sys, "argv", [f"/some/venv/bin/{script}", "--help"])
    with pytest.raises(SystemExit) as info:
        getattr(importlib.import_module(module), function)()
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {script} "), script
