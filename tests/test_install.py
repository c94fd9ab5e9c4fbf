"""The project installs and its README snippets work from another directory, offline.

Python: a fresh venv (`--without-pip`) sees the project venv's packages through a `.pth`
file (the dependencies; nothing is downloaded), then `pip install --no-deps --no-index
--no-build-isolation` installs a copy of the checkout (a copy, so the build's `build/` and
`*.egg-info` never land in the working tree). The README's embedding snippet then runs from
a directory that is not the checkout, and the console scripts answer `--help`.

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
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "pipeline.py", "oneneuron", "train", "export", "serve"]
SCRIPTS = ["oneneuron-train", "oneneuron-export", "oneneuron-check", "oneneuron-serve", "oneneuron-web"]
SCRIPTS += ["oneneuron-pipeline", "oneneuron-triton"]


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
    """Another directory with the exported artifacts as `artifacts/`, as the README's snippet expects."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "artifacts").symlink_to(exported_dir, target_is_directory=True)
    return app


def test_pip_install_runs_the_readme_snippet_and_console_scripts(source_copy, app_dir, tmp_path):
    python = make_venv(tmp_path / "venv")
    pip_install(python, source_copy)
    snippet = readme_block("python", "from serve import load")
    (app_dir / "snippet.py").write_text(snippet)
    proc = subprocess.run(
        [str(python), "snippet.py"], cwd=app_dir, capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first_print = re.search(r"print\(.*\)\s+# (.+)", snippet).group(1)  # the README's stated output
    assert proc.stdout.splitlines()[0] == first_print
    assert proc.stdout.splitlines()[1].endswith("tensorflow")
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

    for script in SCRIPTS:
        run = subprocess.run(
            [str(tmp_path / "venv" / "bin" / script), "--help"],
            cwd=app_dir,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert run.returncode == 0, (script, run.stderr[-1000:])
        assert run.stdout.startswith(f"usage: {script} "), (script, run.stdout[:200])


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
