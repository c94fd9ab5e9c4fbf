"""Availability while a directory is rewritten: `train.all` then `export.all` on a directory that
apps are reading never exposes a manifest without the previous ONNX entries (README "Reliability").

Readers loop in the background: the Python loader by name and by alias path, a server registry
being created (what `python -m serve` does at start), and the Node CLI. Every read must succeed.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from oneneuron.errors import ToolkitError
from serve.engine.registry import Registry
from serve.loader import load
from tests.conftest import ROOT, run_cli

NODE = shutil.which("node")


class Readers:
    """Background threads that read the directory in a loop, counting successes and failures."""

    def __init__(self, artifacts):
        self.artifacts = artifacts
        self.stop = threading.Event()
        self.ok: dict[str, int] = {}
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(name, fn), daemon=True)
            for name, fn in self._readers().items()
        ]

    def _readers(self):
        art = self.artifacts

        def by_name():
            load("keras_linear", artifacts=art)

        def by_alias():
            load(art / "torch_linear.onnx")

        def server_start():
            registry = Registry(art)
            assert registry.load_all(), {n: s.error for n, s in registry.states.items()}

        readers = {"by_name": by_name, "by_alias": by_alias, "server_start": server_start}
        if NODE is not None and (ROOT / "node_modules" / "onnxruntime-node").is_dir():

            def node_cli():
                result = subprocess.run(
                    [NODE, "serve/node/predict.mjs", str(art / "keras_linear.onnx"), "10"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert result.returncode == 0, result.stderr

            readers["node_cli"] = node_cli
        return readers

    def _loop(self, name, fn):
        while not self.stop.is_set():
            try:
                fn()
                self.ok[name] = self.ok.get(name, 0) + 1
            except (ToolkitError, AssertionError, OSError) as exc:
                self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            time.sleep(0.02)  # leave the writers (and the other tests) some CPU on a 2-core machine

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.mark.slow
def test_retrain_and_reexport_while_reading(exported_copy):
    with Readers(exported_copy) as readers:
        time.sleep(1.0)
        trained = run_cli("-m", "train.all", "--artifacts", str(exported_copy), "--seed", "3")
        exported = run_cli("-m", "export.all", "--artifacts", str(exported_copy))
        time.sleep(1.0)
    assert trained.returncode == 0, trained.stderr
    assert exported.returncode == 0, exported.stderr
    print(f"\navailability: reads per reader {readers.ok}, failures {len(readers.failures)}")
    assert readers.failures == []
    assert all(readers.ok.get(name, 0) >= 3 for name in ("by_name", "by_alias", "server_start")), readers.ok
    # the readers saw the new models at the end: the loader now gives the seed-3 prediction
    assert load("keras_linear", artifacts=exported_copy).metadata["training_record_sha256"] != ""
