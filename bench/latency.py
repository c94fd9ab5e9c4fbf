"""Row 4: latency per call at batch 1, in one process.

The loader's `predict` vs a bare `InferenceSession.run` on the same file, plus numpy
`x * w + b` (the floor), TorchScript in torch and the SavedModel signature in TensorFlow.
Each sample is the mean over a block of calls; blocks of each subject are interleaved.
Rows "4 latency b=1 MLP": the same comparison for `--model mlp:16,16` (bench/mlp_artifacts.py),
the loader's `run` and `predict` against a bare session on that file. Row "4 latency b=1
two-input": the loader's `run` against a bare session on a two-input, two-output model brought in
from torch (bench/two_input_artifacts.py; `predict` takes one input only).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench._core import Row, interleave
from bench.mlp_artifacts import example_row, mlp_artifacts
from bench.two_input_artifacts import example_feeds, onnx_path, two_input_artifacts
from oneneuron.frameworks import quiet_tensorflow, torch_jit_quiet
from oneneuron.record import TrainingRecord
from serve import load


def per_call(fn, calls: int):
    def sample() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1e6

    return sample


def run(artifacts: Path, quick: bool = False) -> list[Row]:
    calls, reps = (500, 5) if quick else (5000, 15)
    path = artifacts / "torch_linear.onnx"
    x = np.array([[10.0]], dtype=np.float32)
    model = load("torch_linear", artifacts)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    bare = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    record = TrainingRecord.load(artifacts).models["torch_linear"]
    w, b = np.float32(record.weights[0]), np.float32(record.bias)

    loader_fn = per_call(lambda: model.predict(x), calls)
    bare_fn = per_call(lambda: bare.run(["y"], {"x": x}), calls)
    numpy_fn = per_call(lambda: x * w + b, calls)
    rows = []
    s, base = interleave(loader_fn, bare_fn, reps)
    rows.append(
        Row(
            "4 latency b=1",
            "loader predict",
            "bare InferenceSession.run",
            "us/call",
            s,
            base,
            target="<= 1.1x",
            target_ratio=1.1,
        )
    )
    s, base = interleave(numpy_fn, bare_fn, reps)
    rows.append(Row("4 latency b=1", "numpy x*w+b (floor)", "bare InferenceSession.run", "us/call", s, base))
    rows += mlp_rows(artifacts.parent / "mlp", calls, reps, quick)
    rows += two_input_rows(artifacts.parent / "two_input", calls, reps)

    import torch

    with torch_jit_quiet():
        script = torch.jit.load(str(artifacts / "torch_linear.torchscript.pt"))
    xt = torch.from_numpy(x)
    torch.set_num_threads(1)

    def torchscript():
        with torch.no_grad():
            return script(xt)

    s, base = interleave(per_call(torchscript, calls), bare_fn, reps)
    rows.append(Row("4 latency b=1", "TorchScript in torch", "bare InferenceSession.run", "us/call", s, base))

    tf = quiet_tensorflow()

    signature = tf.saved_model.load(str(artifacts / "keras_linear.savedmodel")).signatures["serving_default"]
    xtf = tf.constant(x)
    s, base = interleave(per_call(lambda: signature(x=xtf), max(50, calls // 20)), bare_fn, reps)
    rows.append(
        Row("4 latency b=1", "SavedModel signature in TF", "bare InferenceSession.run", "us/call", s, base)
    )
    return rows


def mlp_rows(artifacts: Path, calls: int, reps: int, quick: bool = False) -> list[Row]:
    """The loader's `run` and `predict` per call on the MLP's ONNX file vs a bare session on it."""
    from bench.mlp_artifacts import MODEL

    artifacts = mlp_artifacts(artifacts, quick)
    model = load(MODEL, artifacts)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    bare = ort.InferenceSession(str(artifacts / f"{MODEL}.onnx"), so, providers=["CPUExecutionProvider"])
    x = example_row()
    bare_fn = per_call(lambda: bare.run(["y"], {"x": x}), calls)
    rows = []
    for name, fn in (
        ("loader run", lambda: model.run({"x": x})),
        ("loader predict", lambda: model.predict(x)),
    ):
        s, base = interleave(per_call(fn, calls), bare_fn, reps)
        rows.append(
            Row(
                "4 latency b=1 MLP",
                f"{name} (mlp:16,16 relu)",
                "bare InferenceSession.run",
                "us/call",
                s,
                base,
                target="<= 1.1x",
                target_ratio=1.1,
            )
        )
    return rows


def two_input_rows(artifacts: Path, calls: int, reps: int) -> list[Row]:
    """The loader's `run` per call on the two-input model's ONNX file vs a bare session on it."""
    from bench.two_input_artifacts import MODEL

    artifacts = two_input_artifacts(artifacts)
    model = load(MODEL, artifacts)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    bare = ort.InferenceSession(str(onnx_path(artifacts)), so, providers=["CPUExecutionProvider"])
    feeds = example_feeds()
    names = [o.name for o in bare.get_outputs()]  # every output, as `run` returns
    bare_fn = per_call(lambda: bare.run(names, feeds), calls)
    s, base = interleave(per_call(lambda: model.run(feeds), calls), bare_fn, reps)
    return [
        Row(
            "4 latency b=1 two-input",
            "loader run (2 inputs -> 2 outputs, torch byom)",
            "bare InferenceSession.run",
            "us/call",
            s,
            base,
            target="<= 1.1x",
            target_ratio=1.1,
        )
    ]
