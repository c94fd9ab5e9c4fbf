"""Shared fixtures: seeded models trained and exported once per test run into a tmp dir.

`make test` runs the suite on two workers (pytest-xdist, `-n 2`): a costly session fixture is
built by the first worker that asks for it and reused by the other (`shared`), not built twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def run_cli(*args: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m ...` from the repository root and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def shared(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], None]) -> Path:
    """A read-only directory `build` fills once per test run. Under xdist the workers share pytest's
    base temp directory's parent; the first one builds under a file lock, the others wait and
    reuse it (the pattern of pytest-xdist's docs, "Making session-scoped fixtures execute only once")."""
    if worker_id == "master":  # no xdist
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(path, ignore_errors=True)  # what a worker that failed half-way left
            path.mkdir()
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, worker_id) -> Path:
    """Both models trained with the article's setup (seed 0), no exports. Treat as read-only."""

    def build(artifacts: Path) -> None:
        from train.all import train_all
        from train.config import TrainConfig
        from train.data import article_data

        train_all(TrainConfig(artifacts=artifacts, seed=SEED), article_data())

    return shared(tmp_path_factory, worker_id, "trained", build)


@pytest.fixture(scope="session")
def exported_dir(trained_dir, tmp_path_factory, worker_id) -> Path:
    """`trained_dir` plus every export format and the manifest. Treat as read-only."""

    def build(artifacts: Path) -> None:
        from export.all import export_all

        shutil.copytree(trained_dir, artifacts, dirs_exist_ok=True)
        export_all(artifacts)

    return shared(tmp_path_factory, worker_id, "exported", build)


def copy_artifacts(source: Path, target: Path) -> Path:
    """Copy an exported directory; copytree copies hard links as separate files: link the aliases again."""
    from oneneuron.fsio import Root
    from oneneuron.manifest import refresh_aliases
    from oneneuron.schema import Manifest

    shutil.copytree(source, target, symlinks=True)
    refresh_aliases(Root(target), Manifest.load(target))
    return target


@pytest.fixture
def exported_copy(exported_dir, tmp_path) -> Path:
    """A private, writable copy of `exported_dir` for tests that damage it."""
    return copy_artifacts(exported_dir, tmp_path / "artifacts")


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory) -> dict[str, Path]:
    """Two key pairs from `python -m export.keys`'s code: "trusted" and "other" (dirs with *.pem)."""
    from export.keys import make_keys

    root = tmp_path_factory.mktemp("keys")
    for name in ("trusted", "other"):
        make_keys(root / name)
    return {"trusted": root / "trusted", "other": root / "other"}


@pytest.fixture(scope="session")
def signed_dir(exported_dir, signing_keys, tmp_path_factory) -> Path:
    """`exported_dir` signed with the trusted key (model.sig). Treat as read-only."""
    from export.sign import sign_artifacts

    target = copy_artifacts(exported_dir, tmp_path_factory.mktemp("signed") / "artifacts")
    sign_artifacts(target, signing_keys["trusted"] / "private.pem")
    return target


@pytest.fixture
def signed_copy(signed_dir, tmp_path) -> Path:
    """A private, writable copy of `signed_dir` (aliases linked again, as after an export)."""
    return copy_artifacts(signed_dir, tmp_path / "signed")
