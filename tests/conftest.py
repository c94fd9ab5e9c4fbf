"""Shared fixtures: seeded models trained and exported once per test run into a tmp dir.

`make test` runs the suite on two workers (pytest-xdist, `-n 2`): a costly session fixture is
built by the first worker that asks for it and reused by the other (`shared`), not built twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
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


# -- a writer swapping a stored file under a consumer (tests/test_verify_bytes.py; issue 19) ----------
def evil_onnx(genuine: bytes) -> bytes:
    """A model of the same signature with other weights (every float initializer + 5) and a self-test
    rewritten to match them: it loads and passes its self-test, but is not what the manifest hashed."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from oneneuron.selftest import article_metadata

    model = onnx.load_from_string(genuine)
    for i, init in enumerate(model.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr + 5, init.name))
    meta = {p.key: p.value for p in model.metadata_props}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = json.loads(meta["selftest_x"])[0]
    y = float(session.run(None, {"x": np.asarray([x], dtype=np.float32)})[0][0, 0])
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta | article_metadata(x, y))
    return model.SerializeToString()


def evil_torchscript(genuine: bytes) -> bytes:
    """The TorchScript module with every parameter + 5."""
    import io

    import torch

    from oneneuron.frameworks import torch_jit_quiet

    with torch_jit_quiet():
        module = torch.jit.load(io.BytesIO(genuine), map_location="cpu")
        with torch.no_grad():
            for p in module.parameters():
                p.add_(5)
        out = io.BytesIO()
        torch.jit.save(module, out)
    return out.getvalue()


def evil_savedmodel(genuine: Path, out: Path) -> dict[str, bytes]:
    """The SavedModel directory `genuine` with every variable + 5, saved to `out`; returns its files'
    bytes by relative path (the same files as `genuine`'s)."""
    from oneneuron.frameworks import quiet_tensorflow

    tf = quiet_tensorflow()
    loaded = tf.saved_model.load(str(genuine))
    for v in loaded.variables:
        v.assign(v + 5)
    tf.saved_model.save(loaded, str(out), signatures=loaded.signatures["serving_default"])
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def swapping(pairs: list[tuple[Path, bytes, bytes]], scratch: Path) -> Iterator[list[int]]:
    """A writer thread flipping each `target` between its `genuine` and `evil` bytes (os.replace of
    prepared hard-linked copies, as an attacker with write access to the directory would) until the
    block ends; every target is genuine again afterwards. Yields [swaps done]."""
    scratch.mkdir(parents=True, exist_ok=True)
    prepared = []
    for i, (target, genuine, evil) in enumerate(pairs):
        (scratch / f"{i}.genuine").write_bytes(genuine)
        (scratch / f"{i}.evil").write_bytes(evil)
        prepared.append((target, scratch / f"{i}.genuine", scratch / f"{i}.evil"))
    stop, swaps = threading.Event(), [0]

    def put(source: Path, target: Path) -> None:
        tmp = scratch / "next"  # staged outside the target's directory: only the rename shows there
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a rename onto a link to the same file, which POSIX makes a no-op
        os.link(source, tmp)
        os.replace(tmp, target)

    def run() -> None:
        while not stop.is_set():
            for target, genuine, evil in prepared:
                put(evil if swaps[0] % 2 == 0 else genuine, target)
            swaps[0] += 1
            time.sleep(0.0002)  # let the consumer run: the GIL is held by whoever does not sleep

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join()
        for target, genuine, _ in prepared:
            put(genuine, target)
