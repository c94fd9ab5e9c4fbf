"""Verified bytes are the bytes run (issue 19 items 1 and 3): every consumer reads an artifact once,
hashes those bytes and runs them, so a writer swapping the stored file between a genuine and an
evil model (not hashed, not signed) never gets the evil one run; and a bare file name with
artifacts=DIR resolves inside DIR.

Each race test loads in a loop while tests/conftest.py `swapping` flips the file, bounded by a
count and a time: the loader and the server's loading stop after 1,000 loads or 20 s, the check
and the Triton writer (slower per iteration) after 10 s. On the code before the fix (three runs):
the loader ran the evil model with `verified=True` in 9-28 (sha256) and 76-111 (trust key) of 1,000
loads, the server's loading in 311-386 (sha256) and 179-279 (trust key) of 1,000; the check
reported 1,221-1,512 ONNX/torch rows computed by an evil model and 103-124 SavedModel rows (raced
file by file inside the stored directory); the Triton writer already wrote the bytes it had hashed
(0 every time: a regression guard).
"""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest

from oneneuron.errors import IntegrityError
from oneneuron.fsio import Root
from oneneuron.schema import Manifest
from serve import load
from tests.conftest import evil_onnx, evil_savedmodel, evil_torchscript, swapping

X = np.array([[10.0]], dtype=np.float32)
LOADS, LOAD_SECONDS = 1000, 20.0  # loader and server loading: stop at whichever comes first
SLOW_SECONDS = 10.0  # the check and the Triton writer


def stored(artifacts, model="keras_linear", fmt="onnx"):
    """The stored version (what the manifest hashes) of `model` in `fmt`, and its entry."""
    entry = Manifest.load(artifacts).find(model, fmt)
    return artifacts / entry.path, entry


def race(consume, seconds, most=None):
    """Call `consume()` until `most` calls or `seconds`; returns (calls, refused: IntegrityError)."""
    calls = refused = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (most is None or calls < most):
        calls += 1
        try:
            consume()
        except IntegrityError:
            refused += 1
    return calls, refused


def assert_loads_only_genuine(load_once, genuine_y, tmp_path, target, genuine, evil):
    """`load_once()` -> a model (or IntegrityError) in a loop while `target` flips; evil never runs."""
    evil_runs = []

    def consume():
        model = load_once()
        y = model.predict(X)
        if not np.array_equal(y, genuine_y):
            evil_runs.append((y.ravel().tolist(), getattr(model, "verified", None)))

    with swapping([(target, genuine, evil)], tmp_path / "swap") as swaps:
        loads, refused = race(consume, LOAD_SECONDS, LOADS)
    print(f"{loads} loads, {refused} refused, {swaps[0]} swaps, {len(evil_runs)} ran the evil model")
    assert swaps[0] > 10, "the writer never ran"
    assert loads >= 200, f"only {loads} loads in {LOAD_SECONDS:g} s: the machine is too busy to tell"
    assert not evil_runs, f"{len(evil_runs)} of {loads} loads ran the evil model: {evil_runs[:3]}"


def test_loader_sha256_race(exported_copy, tmp_path):
    target, _ = stored(exported_copy)
    genuine = target.read_bytes()
    genuine_y = load("keras_linear", exported_copy).predict(X)
    assert_loads_only_genuine(
        lambda: load("keras_linear", exported_copy),
        genuine_y,
        tmp_path,
        target,
        genuine,
        evil_onnx(genuine),
    )


def test_loader_trust_key_race(signed_copy, signing_keys, tmp_path):
    key = signing_keys["trusted"] / "public.pem"
    target, _ = stored(signed_copy)
    genuine = target.read_bytes()
    genuine_y = load("keras_linear", signed_copy, trust_key=key).predict(X)
    assert_loads_only_genuine(
        lambda: load("keras_linear", signed_copy, trust_key=key),
        genuine_y,
        tmp_path,
        target,
        genuine,
        evil_onnx(genuine),
    )


@pytest.mark.parametrize("signed", [False, True], ids=["sha256", "trust_key"])
def test_server_loading_race(signed, exported_copy, signed_copy, signing_keys, tmp_path):
    from serve.engine.registry import Registry

    artifacts = signed_copy if signed else exported_copy
    key = signing_keys["trusted"] / "public.pem" if signed else None
    target, _ = stored(artifacts)
    genuine = target.read_bytes()
    genuine_y = load("keras_linear", artifacts).predict(X)

    def server_load():
        registry = Registry(artifacts, trust_key=key)
        registry.load_all()  # a version that fails its checks is FAILED, never served
        state = registry.states["keras_linear"]
        if state.default is None:
            raise IntegrityError(state.error or "not ready")
        return state.default.model

    assert_loads_only_genuine(server_load, genuine_y, tmp_path, target, genuine, evil_onnx(genuine))


def test_check_race(exported_copy, tmp_path):
    """serve.check's rows for the ONNX model (onnxruntime, onnx.reference) and the TorchScript file
    (torch: code-bearing) while both stored files flip: no row reports an evil model's numbers."""
    from serve.check import Tolerances, check_artifact

    manifest, root = Manifest.load(exported_copy), Root(exported_copy)
    onnx_path, onnx_entry = stored(exported_copy)
    ts_path, ts_entry = stored(exported_copy, "torch_linear", "torchscript")
    genuine = {
        row.runtime: row.headline_y
        for entry in (onnx_entry, ts_entry)
        for row in check_artifact(root, manifest, entry, Tolerances())
    }
    assert all(v is not None for v in genuine.values()), genuine
    onnx_bytes, ts_bytes = onnx_path.read_bytes(), ts_path.read_bytes()
    pairs = [(onnx_path, onnx_bytes, evil_onnx(onnx_bytes)), (ts_path, ts_bytes, evil_torchscript(ts_bytes))]
    evil_rows, rows_run = [], [0]

    def consume():
        for entry in (onnx_entry, ts_entry):
            for row in check_artifact(root, manifest, entry, Tolerances()):
                if row.error is not None:
                    assert "sha256" in row.error, row.error  # refused before running, nothing else
                    continue
                rows_run[0] += 1
                if row.headline_y != genuine[row.runtime]:
                    evil_rows.append((row.runtime, row.headline_y))

    with swapping(pairs, tmp_path / "swap") as swaps:
        checks, _ = race(consume, SLOW_SECONDS)
    print(f"{checks} checks, {rows_run[0]} rows run, {swaps[0]} swaps, {len(evil_rows)} evil rows")
    assert swaps[0] > 10 and checks >= 10, (checks, swaps)
    assert not evil_rows, f"{len(evil_rows)} rows ran an evil model: {evil_rows[:3]}"


def test_check_savedmodel_race(exported_copy, tmp_path):
    """serve.check's TensorFlow row while every file of the stored SavedModel directory flips (one
    os.replace each): TensorFlow loads a private copy whose hash was checked, so it never runs the
    evil model nor a mix of the two."""
    from serve.check import Tolerances, check_artifact

    manifest, root = Manifest.load(exported_copy), Root(exported_copy)
    path, entry = stored(exported_copy, "keras_linear", "savedmodel")
    (genuine,) = [row.headline_y for row in check_artifact(root, manifest, entry, Tolerances())]
    assert genuine is not None
    evil = evil_savedmodel(path, tmp_path / "evil.savedmodel")
    assert set(evil) == {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    pairs = [(path / rel, (path / rel).read_bytes(), data) for rel, data in evil.items()]
    bad_rows, rows_run = [], [0]

    def consume():
        for row in check_artifact(root, manifest, entry, Tolerances()):
            if row.error is not None and "sha256" in row.error:
                continue  # refused before running
            rows_run[0] += 1
            if row.headline_y != genuine:
                bad_rows.append(row.error or row.headline_y)

    with swapping(pairs, tmp_path / "swap") as swaps:
        checks, _ = race(consume, SLOW_SECONDS)
    print(f"{checks} checks, {rows_run[0]} rows run, {swaps[0]} swaps, {len(bad_rows)} evil or mixed rows")
    assert swaps[0] > 10 and checks >= 5, (checks, swaps)
    assert not bad_rows, f"{len(bad_rows)} rows ran an evil or half-swapped model: {bad_rows[:3]}"


def test_triton_writer_race(exported_copy, tmp_path):
    """export.triton writes the bytes it verified: the repository never holds the evil model."""
    from export.triton import export_triton

    target, _ = stored(exported_copy)
    genuine = target.read_bytes()
    out = tmp_path / "triton"
    published_evil = []

    def consume():
        export_triton(exported_copy, out)
        if (out / "keras_linear" / "1" / "model.onnx").read_bytes() != genuine:
            published_evil.append(1)

    with swapping([(target, genuine, evil_onnx(genuine))], tmp_path / "swap") as swaps:
        writes, refused = race(consume, SLOW_SECONDS)
    print(f"{writes} repository writes, {refused} refused, {swaps[0]} swaps, {len(published_evil)} evil")
    assert swaps[0] > 10 and writes >= 10, (writes, swaps)
    assert not published_evil, f"{len(published_evil)} of {writes} writes published the evil model"


def test_savedmodel_runs_from_a_private_verified_copy(exported_copy):
    """TensorFlow loads a copy in a 0700 temporary directory, hashed after copying; a symlink inside
    the stored directory is refused, not followed."""
    from oneneuron.manifest import verified_copy

    path, entry = stored(exported_copy, "keras_linear", "savedmodel")
    with verified_copy(Root(exported_copy), entry) as copy:
        assert copy.is_dir() and copy != path
        assert stat.S_IMODE(os.stat(copy.parent).st_mode) == 0o700
        assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == sorted(
            p.relative_to(path) for p in path.rglob("*")
        )
    assert not copy.exists()  # removed after the block
    (path / "evil.link").symlink_to("/etc/passwd")
    with pytest.raises(IntegrityError, match="symlink"), verified_copy(Root(exported_copy), entry):
        pass


@pytest.mark.parametrize("name", ["keras_linear.onnx", "keras_linear.onnx/Path"])
def test_bare_file_name_resolves_inside_artifacts(name, exported_copy, tmp_path, monkeypatch):
    """A decoy of the stable name in the working directory is never what `artifacts=DIR` loads."""
    from pathlib import Path

    genuine = (exported_copy / "keras_linear.onnx").read_bytes()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "keras_linear.onnx").write_bytes(evil_onnx(genuine))
    monkeypatch.chdir(cwd)
    genuine_y = load("keras_linear", exported_copy).predict(X)
    model = load(Path("keras_linear.onnx") if name.endswith("/Path") else name, artifacts=exported_copy)
    assert model.verified
    assert model.path.parent == exported_copy
    np.testing.assert_array_equal(model.predict(X), genuine_y)
    # a path with a directory component keeps today's rule: that file (a lone one, unverified)
    decoy = load("./keras_linear.onnx", artifacts=exported_copy)
    assert not decoy.verified and not np.array_equal(decoy.predict(X), genuine_y)
