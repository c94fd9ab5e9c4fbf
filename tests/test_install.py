"""The project installs and its README snippets work from another directory, offline.

Python: a fresh venv (`--without-pip`) sees the project venv's packages through a `.pth`
file (the dependencies; nothing is downloaded), then `pip install --no-deps --no-index
--no-build-isolation` installs a copy of the checkout (a copy, so the build's `build/` and
`*.egg-info` never land in the working tree). The README's embedding snippet then runs from
an app's directory that has its own `core.py` and `pipeline.py` (the toolkit claims only
`train`, `export`, `serve` and `oneneuron`), and every console script answers `--help` there.
A second venv without the dependencies has each script name the extra it needs.

Node: `npm install --offline --ignore-scripts <checkout>/serve/node` from another directory.
npm installs a directory as a symlink, so `onnxruntime-node` resolves from the checkout's
`node_modules` (which `npm ci` fills); nothing is fetched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from oneneuron.scripts import EXTRAS, SCRIPTS, needs_extra
from tests.conftest import ROOT, copy_artifacts

README = (ROOT / "README.md").read_text()
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "pipeline.py", "oneneuron", "train", "export", "serve"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TOP_LEVEL = {"train", "export", "serve", "oneneuron"}  # the design's stages and the shared code


def readme_block(lang: str, marker: str) -> str:
    """The README's fenced `lang` block that contains `marker`."""
    blocks = [b for b in re.findall(rf"```{lang}\n(.*?)```", README, re.S) if marker in b]
    assert len(blocks) == 1, f"expected one ```{lang} block with {marker!r} in README.md"
    return blocks[0]


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed copy must be found without the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def make_venv(where: Path) -> Path:
    """A venv with no packages of its own that reads the project venv's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "project_venv_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip_install(python: Path, source: Path, *extra: str) -> None:
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
        + [*extra, str(source)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("checkout")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    return src


@pytest.fixture
def app_dir(exported_dir, tmp_path) -> Path:
    """Another project's directory, with its own `core.py` and `pipeline.py` (generic names the
    toolkit must not claim) and the exported artifacts as `artifacts/`, as the README's snippet
    expects."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "core.py").write_text('NAME = "the app\'s core"\n')
    (app / "pipeline.py").write_text('NAME = "the app\'s pipeline"\n')
    (app / "artifacts").symlink_to(exported_dir, target_is_directory=True)
    return app


def app_env(app: Path) -> dict[str, str]:
    """The app's modules first on the path, as when the app runs its own code."""
    return {**clean_env(), "PYTHONPATH": str(app)}


def top_level_names(venv: Path) -> set[str]:
    """The import names the installed distribution claims, from its RECORD (every file it wrote)."""
    (record,) = venv.glob("lib/python*/site-packages/oneneuron_toolkit-*.dist-info/RECORD")
    names = set()
    for line in record.read_text().splitlines():
        path = line.split(",")[0]
        first = path.split("/")[0]
        if first.endswith((".dist-info", ".pth")) or first == ".." or first == "__pycache__":
            continue  # metadata, scripts in bin/
        names.add(first.removesuffix(".py"))
    return names


def test_pip_install_runs_the_readme_snippet_and_console_scripts(source_copy, app_dir, tmp_path):
    python = make_venv(tmp_path / "venv")
    pip_install(python, source_copy)
    assert top_level_names(tmp_path / "venv") == TOP_LEVEL
    snippet = readme_block("python", "from serve import load")
    (app_dir / "snippet.py").write_text(snippet + "import core, pipeline\nprint(core.NAME, pipeline.NAME)\n")
    proc = subprocess.run(
        [str(python), "snippet.py"], cwd=app_dir, capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first_print = re.search(r"print\(.*\)\s+# (.+)", snippet).group(1)  # the README's stated output
    assert proc.stdout.splitlines()[0] == first_print
    assert proc.stdout.splitlines()[1].endswith("tensorflow")
    assert proc.stdout.splitlines()[-1] == "the app's core the app's pipeline"
    where = subprocess.run(
        [str(python), "-c", "import serve; print(serve.__file__)"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where  # the installed copy, not the checkout

    static = Path(where).parent / "web" / "static"
    assert {"index.html", "app.mjs", "style.css"} <= {p.name for p in static.iterdir()}
    assert (Path(where).parent / "node" / "package.json").is_file()

    for script in PYPROJECT["scripts"]:
        run = subprocess.run(
            [str(tmp_path / "venv" / "bin" / script), "--help"],
            cwd=app_dir,
            capture_output=True,
            text=True,
            env=app_env(app_dir),
            timeout=60,
        )
        assert run.returncode == 0, (script, run.stderr[-1000:])
        assert run.stdout.startswith(f"usage: {script} "), (script, run.stdout[:200])

    # one real command, from the app's directory, on a copy it may write to
    copy_artifacts(app_dir / "artifacts", app_dir / "exported")
    check = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "oneneuron-check"), "--artifacts", "exported"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=app_env(app_dir),
        timeout=300,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert "[FAIL]" not in check.stdout and "[ok]" in check.stdout


def test_extras_match_the_console_scripts():
    """pyproject.toml's extras and scripts are the ones oneneuron/scripts.py names and runs."""
    extras = PYPROJECT["optional-dependencies"]
    assert set(extras) == set(EXTRAS) | {"all"}
    assert extras["all"] == [f"oneneuron-toolkit[{','.join(EXTRAS)}]"]
    assert set(PYPROJECT["scripts"]) == set(SCRIPTS)
    for script, target in PYPROJECT["scripts"].items():
        assert target == "oneneuron.scripts:" + script.removeprefix("oneneuron-"), script
    for module in ("uvicorn", "grpc", "tritonclient", "prometheus_client", "orjson"):  # oneneuron-serve's
        assert module in EXTRAS["serve"]


def test_each_console_script_without_its_extra_names_the_extra(source_copy, tmp_path):
    """A venv with the toolkit and nothing else: each script exits 2 with one line naming its extra."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
        + ["-w", str(wheels), str(source_copy)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    (wheel,) = wheels.glob("*.whl")
    install = subprocess.run(  # pip from the project venv, installing into the bare one
        [sys.executable, "-m", "pip", "--python", str(bare / "bin" / "python"), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    for script, (_, extra) in SCRIPTS.items():
        run = subprocess.run(
            [str(bare / "bin" / script), "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert run.returncode == 2 and run.stdout == "", (script, run.stdout, run.stderr)
        assert run.stderr == needs_extra(script, extra, EXTRAS[extra][0]) + "\n", (script, run.stderr)


def test_editable_install_imports_from_the_source_tree(source_copy, app_dir, tmp_path):
    python = make_venv(tmp_path / "venv")
    pip_install(python, source_copy, "-e")
    proc = subprocess.run(
        [str(python), "-c", "import serve; print(serve.__file__)"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(source_copy / "serve" / "__init__.py")


NPM = shutil.which("npm")


@pytest.mark.skipif(NPM is None or shutil.which("node") is None, reason="npm/node not found")
def test_npm_install_serve_node_from_another_directory(app_dir):
    if not (ROOT / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.fail(
            "node_modules/onnxruntime-node is missing: run `npm ci --ignore-scripts` (make test does)"
        )
    (app_dir / "package.json").write_text('{"name": "app", "private": true, "type": "module"}\n')
    install = subprocess.run(
        [
            NPM,
            "install",
            "--offline",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            str(ROOT / "serve" / "node"),
        ],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    snippet = readme_block("js", 'from "oneneuron-embed"')
    (app_dir / "app.mjs").write_text(snippet)
    run = subprocess.run(["node", "app.mjs"], cwd=app_dir, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    expected = re.search(r"\n// (.+)", snippet).group(1)  # the README's stated output
    assert run.stdout.strip() == expected

    cli = subprocess.run(
        [str(app_dir / "node_modules" / ".bin" / "oneneuron-predict"), "artifacts/keras_linear.onnx", "10"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert cli.stdout.strip() == "18.981693267822266"
    assert "self-test ok" in cli.stderr


def test_a_module_imported_late_names_its_extra(monkeypatch, capsys):
    """cryptography is imported only for --trust-key: missing, oneneuron-serve names [sign], exit 2."""
    import argparse

    from oneneuron import cli

    def main(args):
        raise ModuleNotFoundError("No module named 'cryptography'", name="cryptography")

    monkeypatch.setattr(sys, "argv", ["/venv/bin/oneneuron-serve"])
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, argparse.Namespace(verbose=False))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == needs_extra("oneneuron-serve", "sign", "cryptography") + "\n"


def test_make_install_and_run_install_the_toolkit_editable():
    """`make run` leaves the console scripts working from any directory (the editable install that
    test_editable_install_imports_from_the_source_tree exercises), re-run when pyproject.toml changes."""
    makefile = (ROOT / "Makefile").read_text()
    rule = makefile.split("\n$(EDITABLE): ", 1)[1].split("\n\n", 1)[0]
    assert rule.startswith("pyproject.toml $(STAMP)\n"), rule
    assert "-m pip install" in rule and "--no-deps --no-build-isolation -e ." in rule, rule
    for target in ("install", "run", "test"):
        line = next(x for x in makefile.splitlines() if x.startswith(f"{target}:"))
        assert "$(EDITABLE)" in line, line
