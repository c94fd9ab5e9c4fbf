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

from bench import architectures
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
    rows += architecture_rows(artifacts.parent / "architectures", quick)

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


# (seconds of calls per sample, samples) of the architectures' rows for the full run and --quick:
# short samples, many of them, so that load drifting on a shared machine hits both sides alike
ARCH_TIMING = {False: (0.05, 31), True: (0.02, 3)}


def calls_for(fn, seconds: float) -> int:
    """How many calls of `fn` fill about `seconds` (at least 3), from the fastest of 3 timed calls."""
    fastest = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return max(3, round(seconds / fastest))


def bare_session(path: Path) -> ort.InferenceSession:
    """A plain session on `path` with the loader's options (serve/model.py: 1 intra-op thread by
    default, 1 inter-op thread, the CPU provider)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def architecture_rows(artifacts: Path, quick: bool = False) -> list[Row]:
    """The loader's `run` per call vs a bare session's, on the CNN and the transformer at batch 1 and 8
    (issue 20: <= 1.05x). Both return every output; the outputs are compared once before timing."""
    artifacts = architectures.architecture_artifacts(artifacts)
    seconds, reps = ARCH_TIMING[quick]
    rows = []
    for name in architectures.MODELS:
        model = load(name, artifacts)
        bare = bare_session(architectures.onnx_path(artifacts, name))
        names = [o.name for o in bare.get_outputs()]
        for batch in (1, 8):
            feeds = architectures.example_feeds(name, batch)
            got, want = model.run(feeds), dict(zip(names, bare.run(names, feeds), strict=True))
            for k, v in want.items():  # the same work on both sides, or the ratio means nothing
                np.testing.assert_array_equal(got[k], v, err_msg=f"{name} b={batch} output {k}")
            s, base, calls = _interleave_run(model, bare, feeds, reps, seconds)
            rows.append(
                Row(
                    f"4 latency {name} b={batch}",
                    f"loader run ({name}, {_shapes(feeds)})",
                    "bare InferenceSession.run",
                    "us/call",
                    s,
                    base,
                    target="<= 1.05x",
                    target_ratio=1.05,
                    extra={"calls_per_sample": calls},
                )
            )
    return rows


def _interleave_run(model, bare, feeds: dict, reps: int, seconds: float) -> tuple[list, list, int]:
    """`model.run(feeds)` and `bare.run(every output, feeds)` per call, interleaved `reps` times, each
    sample as many calls as fill `seconds` of the bare call; returns both series and the calls."""
    names = [o.name for o in bare.get_outputs()]
    calls = calls_for(lambda: bare.run(names, feeds), seconds)
    s, base = interleave(
        per_call(lambda: model.run(feeds), calls), per_call(lambda: bare.run(names, feeds), calls), reps
    )
    return s, base, calls


def _shapes(feeds: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v.shape))} {v.dtype}" for k, v in feeds.items())
