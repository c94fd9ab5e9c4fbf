"""Shared fixtures: seeded models trained and exported once per session into a tmp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
# .ci/run sets this: there, Node.js and Chromium are installed, so an embedding test that skips
# (node, npm or /usr/bin/chromium not found) is a failure, never a silent pass.
REQUIRE_EMBEDDING = os.environ.get("ONENEURON_REQUIRE_EMBEDDING") == "1"
EMBEDDING_MODULES = ("test_node", "test_web", "test_signing_node", "test_signing_web")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    module = item.module.__name__.rpartition(".")[2] if item.module else ""
    if REQUIRE_EMBEDDING and report.skipped and module.startswith(EMBEDDING_MODULES):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped where ONENEURON_REQUIRE_EMBEDDING=1 (.ci/run installs Node.js and Chromium): {reason}"
        )


def run_cli(*args: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m ...` from the repository root and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """Both models trained with the article's setup (seed 0), no exports."""
    from train.all import train_all
    from train.config import TrainConfig
    from train.data import article_data

    artifacts = tmp_path_factory.mktemp("trained")
    train_all(TrainConfig(artifacts=artifacts, seed=SEED), article_data())
    return artifacts


@pytest.fixture(scope="session")
def exported_dir(trained_dir, tmp_path_factory) -> Path:
    """`trained_dir` plus every export format and the manifest. Treat as read-only."""
    from export.all import export_all

    artifacts = tmp_path_factory.mktemp("exported")
    shutil.copytree(trained_dir, artifacts, dirs_exist_ok=True)
    export_all(artifacts)
    return artifacts


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


@pytest.fixture(scope="session")
def architectures_dir(tmp_path_factory) -> Path:
    """Every model of tests/architectures.py (a CNN, a transformer, classifiers, int and bool outputs)
    saved as its source file (`<name>.pt2` / `<name>.keras`) in DIR, then exported through
    export.all's --from-* path (export/byom.py) into DIR/artifacts, all in one manifest. Treat as
    read-only; measured at ~10 s (issue 20)."""
    from export.byom import ByomConfig, export_byom
    from tests.architectures import ARCHITECTURES

    root = tmp_path_factory.mktemp("architectures")
    for name, (framework, build, suffix) in ARCHITECTURES.items():
        export_byom(root / "artifacts", ByomConfig(framework, build(root / f"{name}{suffix}"), name))
    return root
