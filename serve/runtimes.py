"""Runtimes the check runs each artifact in. Each returns `predict(x float32 (rows, n)) -> (rows,)`.

TensorFlow and torch are imported inside their functions only: the ONNX rows never pay for
them. Code-bearing formats (SavedModel, TorchScript) are loaded here, by the check, and
never by the loader or the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def onnxruntime_cpu(path: Path) -> Predict:
    """onnxruntime's CPU provider through the project's loader: the check has verified the sha256; the
    embedded self-test runs as in every loader (a model they all refuse must not pass the check)."""
    from serve.loader import load

    model = load(path, verify_sha256=False)
    return lambda x: model.predict(x)[:, 0]


def onnx_reference(path: Path) -> Predict:
    """`onnx.reference.ReferenceEvaluator`: an independent, pure-numpy ONNX implementation."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    return lambda x: np.asarray(evaluator.run(["y"], {"x": x})[0])[:, 0]


def tensorflow_savedmodel(path: Path) -> Predict:
    """The SavedModel's `serving_default` signature in TensorFlow."""
    from core.frameworks import quiet_tensorflow

    tf = quiet_tensorflow()

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda x: fn(x=tf.constant(x))["y"].numpy()[:, 0]


def torch_torchscript(path: Path) -> Predict:
    """The TorchScript file in torch."""
    import torch

    from core.frameworks import torch_jit_quiet

    with torch_jit_quiet():  # torch 2.13 deprecates torch.jit; see core/frameworks.py
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()[:, 0]

    return predict


# format -> [(runtime name, factory)]
RUNTIMES: dict[str, list[tuple[str, Callable[[Path], Predict]]]] = {
    "onnx": [("onnxruntime", onnxruntime_cpu), ("onnx.reference", onnx_reference)],
    "savedmodel": [("tensorflow", tensorflow_savedmodel)],
    "torchscript": [("torch", torch_torchscript)],
}
