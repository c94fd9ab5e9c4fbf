"""SIGKILL at random points and concurrent exports never corrupt an artifacts directory."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from oneneuron.fsio import sha256_file
from serve import load
from serve.check import run_check
from tests.conftest import ROOT


def start(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_consistent(artifacts):
    """Manifest parses, every file matches its hash, the check passes, the loader loads."""
    rows, manifest = run_check(artifacts)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert {e.format for e in manifest.artifacts} == {"onnx", "savedmodel", "torchscript"}
    load("keras_linear", artifacts).predict(10)
    record = json.loads((artifacts / "training.json").read_text())
    for model in record["models"].values():
        assert sha256_file(artifacts / model["model_file"]) == model["model_sha256"]


@pytest.mark.parametrize("command", [("-m", "export.all"), ("-m", "train.all")])
def test_sigkill_at_random_points_leaves_previous_artifacts_intact(exported_copy, command):
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        proc = start(*command, "--artifacts", str(exported_copy))
        time.sleep(rng.uniform(0.3, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert_consistent(exported_copy)
    assert kills >= 2, "the random delays should interrupt most runs"
    # a re-run completes and cleans up what the killed runs left behind
    proc = start("-m", "pipeline", "--artifacts", str(exported_copy))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert_consistent(exported_copy)
    leftovers = [p.name for p in exported_copy.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_two_exports_at_once_serialise_on_the_lock(exported_copy):
    first = start("-m", "export.all", "--artifacts", str(exported_copy))
    second = start("-m", "export.onnx", "--artifacts", str(exported_copy))
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.wait(timeout=300) == 0, second.stderr.read()
    assert_consistent(exported_copy)
