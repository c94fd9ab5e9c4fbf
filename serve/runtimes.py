"""Runtimes the check runs each artifact in, for every model: `RUNTIMES[format]` is a list of
(runtime name, factory); a factory takes the verified artifact and its output names in signature
order and returns `run(feeds {input name: array}) -> {output name: array}`.

TensorFlow and torch are imported inside their functions only: the ONNX rows never pay for
them. Code-bearing formats (SavedModel, TorchScript, the ExportedProgram) are loaded here, by the
check, and never by the loader or the server.

Every runtime loads a `VerifiedArtifact` (made by `verified`): a file's bytes, read once and checked
against the manifest's sha256, or a directory's private copy, checked after copying. No runtime
opens the stored path, which a writer could replace after the check (issue 19).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oneneuron.fsio import Root
from oneneuron.manifest import read_verified, verified_copy
from oneneuron.schema import FORMATS, ArtifactEntry

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact whose sha256 was checked, in the form a runtime loads."""

    path: Path  # where it is stored: for messages only, never opened again
    data: bytes | None = None  # a file's verified bytes
    copy: Path | None = None  # a directory's verified private copy (a SavedModel)


@contextlib.contextmanager
def verified(root: Root, entry: ArtifactEntry) -> Iterator[VerifiedArtifact]:
    """`entry` read and checked once (oneneuron/manifest.py `read_verified` / `verified_copy`), for the
    block; a private copy is removed afterwards. Raises IntegrityError on a sha256 mismatch."""
    path = root.path(entry.path)
    if FORMATS[entry.format] == "dir":
        with verified_copy(root, entry) as copy:
            yield VerifiedArtifact(path, copy=copy)
    else:
        yield VerifiedArtifact(path, data=read_verified(root, entry))


def run_onnxruntime(artifact: VerifiedArtifact, outputs: list[str]) -> Run:
    """onnxruntime's CPU provider through the loader's `Model.run`. The check has verified the sha256;
    the self-test is off: the check compares every probe row with the source's outputs instead, at
    the tolerance asked for (`--atol` may accept what the self-test's fixed tolerance would refuse)."""
    from serve.loader import LoadOptions, open_model
    from serve.selftest import values

    options = LoadOptions(verify_sha256=False, selftest=False)
    model = open_model(artifact.path, None, None, options, data=artifact.data)
    values(model)  # the embedded self-test must be well-formed (finite, bounded), though it is not run
    return model.run


def run_onnx_reference(artifact: VerifiedArtifact, outputs: list[str]) -> Run:
    """`onnx.reference.ReferenceEvaluator` (pure numpy; serve/parity.py bounds its time)."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(artifact.data)
    return lambda feeds: dict(zip(outputs, evaluator.run(outputs, feeds), strict=True))


def run_savedmodel(artifact: VerifiedArtifact, outputs: list[str]) -> Run:
    """The SavedModel's `serving_default` signature in TensorFlow (inputs and outputs by name)."""
    from oneneuron.frameworks import quiet_tensorflow

    tf = quiet_tensorflow()
    fn = tf.saved_model.load(str(artifact.copy)).signatures["serving_default"]
    return lambda feeds: {
        k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()
    }


def _torch_outputs(result, outputs: list[str]) -> dict[str, np.ndarray]:
    import torch.utils._pytree as pytree

    flat = pytree.tree_flatten(result)[0]  # a dict flattens in insertion order, as at export
    return {n: t.detach().numpy() for n, t in zip(outputs, flat, strict=True)}


def run_torchscript(artifact: VerifiedArtifact, outputs: list[str]) -> Run:
    """The TorchScript file in torch, inputs positional in signature order."""
    import torch

    from oneneuron.frameworks import torch_jit_quiet

    with torch_jit_quiet():
        module = torch.jit.load(io.BytesIO(artifact.data), map_location="cpu").eval()

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return _torch_outputs(module(*[torch.from_numpy(v) for v in feeds.values()]), outputs)

    return run


def run_exportedprogram(artifact: VerifiedArtifact, outputs: list[str]) -> Run:
    """The torch.export program (.pt2) in torch: its own module, inputs in the program's order."""
    import torch
    import torch.utils._pytree as pytree

    program = torch.export.load(io.BytesIO(artifact.data))
    module = program.module()

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flat = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
        args, kwargs = pytree.tree_unflatten(flat, program.call_spec.in_spec)
        with torch.no_grad():
            return _torch_outputs(module(*args, **kwargs), outputs)

    return run


# format -> [(runtime name, factory)]
RUNTIMES: dict[str, list[tuple[str, Callable[[VerifiedArtifact, list[str]], Run]]]] = {
    "onnx": [("onnxruntime", run_onnxruntime), ("onnx.reference", run_onnx_reference)],
    "savedmodel": [("tensorflow", run_savedmodel)],
    "torchscript": [("torch", run_torchscript)],
    "exportedprogram": [("torch", run_exportedprogram)],
}
