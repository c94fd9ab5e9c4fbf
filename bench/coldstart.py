"""Row 3: cold start, process start to first prediction at x = 10.

The loader on the ONNX model (with its sha256 check and self-test) vs loading the SavedModel
with TensorFlow vs the TorchScript file with torch, each a fresh `python -c` process; and the
loader verifying the directory's signature (`trust_key=`, oneneuron/signing.py) vs the loader without.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench._core import Row, interleave, python, time_process

LOADER = "from serve import load; print(load({name!r}, {art!r}).predict(10.0)[0, 0])"
SIGNED = "from serve import load; print(load({name!r}, {art!r}, trust_key={key!r}).predict(10.0)[0, 0])"
SAVEDMODEL = (
    "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'; import tensorflow as tf; "
    "f = tf.saved_model.load({path!r}).signatures['serving_default']; "
    "print(f(x=tf.constant([[10.0]]))['y'].numpy()[0, 0])"
)
TORCHSCRIPT = (
    "import warnings; warnings.simplefilter('ignore'); import torch; m = torch.jit.load({path!r}); "
    "print(m(torch.tensor([[10.0]])).item())"
)


def run(artifacts: Path, quick: bool = False) -> list[Row]:
    reps, warmup = (2, 0) if quick else (7, 1)
    art = str(artifacts)
    loader = lambda: time_process(python("-c", LOADER.format(name="keras_linear", art=art)))  # noqa: E731
    savedmodel = lambda: time_process(python("-c", SAVEDMODEL.format(path=f"{art}/keras_linear.savedmodel")))  # noqa: E731

    def torchscript():
        return time_process(python("-c", TORCHSCRIPT.format(path=f"{art}/torch_linear.torchscript.pt")))

    s1, b1 = interleave(loader, savedmodel, reps, warmup=warmup)
    s2, b2 = interleave(loader, torchscript, reps, warmup=0)
    row = Row(
        "3 cold start",
        "loader (ONNX)",
        "SavedModel in TensorFlow",
        "s",
        s1,
        b1,
        target="loader <= 0.5 s and >= 5x faster",
        target_ratio=0.2,
    )
    row.extra["_checks"] = [lambda: row.subject_median <= 0.5]
    return [row, Row("3 cold start", "loader (ONNX)", "TorchScript in torch", "s", s2, b2), signed(art, reps)]


def signed(art: str, reps: int) -> Row:
    """Sign the directory with a throwaway key, then time the loader with and without verifying it."""
    from export.keys import make_keys
    from export.sign import sign_artifacts

    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp:
        private, public, _ = make_keys(Path(tmp) / "keys")
        sign_artifacts(Path(art), private)
        code = SIGNED.format(name="keras_linear", art=art, key=str(public))
        s, b = interleave(
            lambda: time_process(python("-c", code)),
            lambda: time_process(python("-c", LOADER.format(name="keras_linear", art=art))),
            reps + 2,  # the difference is small: more repetitions than the other rows
            warmup=1,
        )
    return Row(
        "3 cold start",
        "loader + signature (trust_key)",
        "loader (ONNX), no key",
        "s",
        s,
        b,
        target="<= 1.2x",
        target_ratio=1.2,
    )
