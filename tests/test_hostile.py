"""Hostile artifacts directories x every consumer (issue 10): one table, tests/hostile_cases.json.

Each case (tests/hostile.py applies its damage to a copy of the session's exported directory,
beside a sentinel directory) runs against every consumer: the loader by name and by alias path,
`serve.check`, the server's `Registry` + `load_all`, the web server (`build_app` / `onnx_files`),
`export.triton`, `train.report`, the Node CLI (`node serve/node/predict.mjs DIR/keras_linear.onnx
10`, which runs serve/node/manifest.mjs and core.mjs, the page's rules) and the exporters.
Exporters: all four (savedmodel, torchscript, onnx, all) on the cases marked "exporters": "all"
(paths and aliases leaving the directory, symlinked or FIFO stored versions and manifests,
re-hashed model content, the journal and the lock: what a writer reads, links, renames or
deletes); only export.torchscript (the fastest) on the manifest-shape cases, which every writer
handles through the same `load_or_none` / `commit`.

Outcomes (the case's "expect", else the table's defaults):
- refuse: a ToolkitError (the message names the artifacts directory); the server: an error at
  start or the model not READY; the web server: an error at start or the entry never served; the
  Node CLI: exit != 0, exactly one `error: ...` line naming the directory and no stack trace;
- ok: the consumer works as on an undamaged directory (it never reads what was damaged);
- refuse_or_rebuild (writers): a ToolkitError, or success with a manifest that parses and whose
  every entry and stable name verifies;
- page (web server): the entry is served (its hash matches); the page's core.mjs refuses it, as
  the Node CLI does for the same case.
Always: the sentinel is byte-for-byte unchanged (names, contents, link counts, mtimes), nothing
appears beside the artifacts directory, and readers leave the artifacts directory unchanged.
Python consumers run in-process under a hard SIGALRM deadline, so a FIFO can never hang the suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from oneneuron.errors import ToolkitError
from tests.conftest import ROOT
from tests.hostile import CASES, WRITERS, Damage, expectation, matrix, snapshot

NODE = shutil.which("node")
READERS = ("loader", "loader_alias", "check", "server", "web", "node")  # share one damaged copy per case
TARGET = "keras_linear.onnx"


@contextlib.contextmanager
def deadline(seconds: int, what: str):
    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s (blocked on a FIFO?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def reader_copies(exported_dir, tmp_path_factory):
    """case id -> (base, Damage, artifacts snapshot, sentinel snapshot): one damaged copy per case, shared
    by the readers (each must leave it unchanged)."""
    cache = {}

    def get(case_id):
        if case_id not in cache:
            base = tmp_path_factory.mktemp(f"hostile-{case_id}")
            damage = Damage(base, exported_dir)
            damage.apply(CASES[case_id])
            cache[case_id] = (base, damage, snapshot(damage.art), snapshot(damage.sentinel))
        return cache[case_id]

    return get


def run_loader(art, damage, by_alias=False):
    from serve.loader import load

    model = load(art / TARGET) if by_alias else load("keras_linear", artifacts=art)
    # by its stable name, the loader opens the stored version the manifest names, whatever the name holds
    assert model.verified and model.metadata["model"] == "keras_linear"
    return None


def run_check(art, damage):
    from serve.check import run_check

    rows, _ = run_check(art)
    failed = [r.error or f"{r.artifact} ({r.runtime}) out of tolerance" for r in rows if not r.ok]
    return "; ".join(failed) or None


def run_server(art, damage):
    from serve.engine.registry import Registry

    registry = Registry(art)
    registry.load_all()
    failed = [s.error for s in registry.states.values() if s.state != "READY"]
    return "; ".join(failed) or None


def run_web(art, damage):
    """Start the web app; everything it serves must be a confined regular file with a manifest hash."""
    from oneneuron.schema import Manifest
    from serve.web.app import WebConfig, build_app, onnx_files

    build_app(WebConfig(artifacts=art))
    served = onnx_files(art) - {"manifest.json"}
    expected = {n: e.sha256 for e in Manifest.load(art).artifacts for n in (e.path, e.alias)}
    expected |= {e.probe.path: e.probe.sha256 for e in Manifest.load(art).artifacts if e.probe}
    for name in served:
        real = os.path.realpath(art / name)
        assert real.startswith(str(os.path.realpath(art)) + os.sep), f"serves {name} from {real}"
        assert stat.S_ISREG(os.stat(real).st_mode), f"serves {name}, not a regular file"
        actual = hashlib.sha256(Path(real).read_bytes()).hexdigest()
        assert actual == expected[name], f"serves {name} with sha256 {actual}, manifest {expected[name]}"
    damaged = {TARGET, damage.stored[TARGET]} & served
    return None if damaged else "not served"


def run_node(art, damage):
    result = subprocess.run(
        [NODE, "serve/node/predict.mjs", str(art / TARGET), "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode == 0:
        return None
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "    at " not in result.stderr and result.stdout == "", result.stderr
    assert str(art) in errors[0], errors[0]
    return errors[0]


def run_report(art, damage):
    from train.report import build_report

    build_report(art)


def run_triton(art, damage):
    from export.triton import export_triton

    export_triton(art, damage.art.parent / "triton")


def run_writer(consumer):
    def run(art, damage):
        import importlib

        module = importlib.import_module(consumer)
        (module.export_all if consumer == "export.all" else module.export)(art)

    return run


CONSUMERS = {
    "loader": run_loader,
    "loader_alias": lambda art, damage: run_loader(art, damage, by_alias=True),
    "check": run_check,
    "server": run_server,
    "web": run_web,
    "node": run_node,
    "train.report": run_report,
    "export.triton": run_triton,
} | {w: run_writer(w) for w in WRITERS}


def assert_rebuilt(art):
    """A writer that did not refuse left a manifest whose every entry and stable name verifies."""
    from oneneuron.fsio import Root, sha256_path
    from oneneuron.manifest import verify
    from oneneuron.schema import Manifest

    root = Root(art)
    for entry in Manifest.load(art).artifacts:
        verify(root, entry)
        assert sha256_path(root.existing(entry.alias, "dir" if entry.format == "savedmodel" else "file")) == (
            entry.sha256
        )


@pytest.mark.parametrize(("case_id", "consumer"), matrix(), ids=[f"{c}-{k}" for c, k in matrix()])
def test_hostile(case_id, consumer, reader_copies, exported_dir, tmp_path):
    if consumer == "node" and NODE is None:
        pytest.skip("node not found: install Node.js 20+ to run the Node CLI cases")
    case, expected = CASES[case_id], expectation(CASES[case_id], consumer)
    if consumer in READERS:
        base, damage, art_before, sentinel_before = reader_copies(case_id)
    else:
        damage = Damage(tmp_path, exported_dir)
        damage.apply(case)
        base, art_before, sentinel_before = tmp_path, None, snapshot(damage.sentinel)
    art = damage.art
    refusal = None
    with deadline(120 if consumer in WRITERS else 30, f"{consumer} on {case_id}"):
        try:
            refusal = CONSUMERS[consumer](art, damage)
        except ToolkitError as exc:
            refusal = str(exc)
            assert str(art) in refusal or str(art.resolve()) in refusal, f"message names no input: {refusal}"
    assert snapshot(damage.sentinel) == sentinel_before, "the sentinel directory changed"
    assert {p.name for p in base.iterdir()} <= {"artifacts", "sentinel", "triton"}, (
        "wrote beside the directory"
    )
    if art_before is not None:
        assert snapshot(art) == art_before, f"{consumer} changed the artifacts directory"
    if expected == "refuse":
        assert refusal, f"{consumer} accepted {case_id} ({case['about']})"
    elif expected == "ok" or (expected == "page" and consumer == "web"):
        assert refusal is None, f"{consumer} refused {case_id}: {refusal}"
    elif expected == "refuse_or_rebuild" and refusal is None:
        assert_rebuilt(art)
