"""Land new versions of an exported model in-process (what `train.all --seed S` + `export.onnx` do,
in milliseconds): the same graph with other weights, committed like an export (oneneuron.manifest)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from oneneuron.fsio import Root, sha256_file, size_of
from oneneuron.manifest import commit, refresh_aliases
from oneneuron.record import TrainingRecord
from oneneuron.schema import TRAINING_RECORD, Manifest
from oneneuron.selftest import article_metadata


def variant(onnx_bytes: bytes, weight: float, bias: float) -> bytes:
    """The model with weight and bias replaced and its embedded self-test recomputed."""
    proto = onnx.load_from_string(onnx_bytes)
    for init in proto.graph.initializer:
        value = {"weight": weight, "bias": bias}[init.name]
        init.CopyFrom(numpy_helper.from_array(np.full((1, 1), value, np.float32), init.name))
    meta = {p.key: p.value for p in proto.metadata_props}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    y = float(session.run(None, {"x": np.array([[10.0]], np.float32)})[0][0, 0])
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta | article_metadata([10.0], y))
    return proto.SerializeToString()


def predict(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """What onnxruntime answers for `x` with this model (what the server must return)."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.asarray(x, np.float32).reshape(-1, 1)})[0]


def land(artifacts: Path, model: str, data: bytes, tamper: bool = False, keep_versions: int = 3) -> int:
    """Store `data` as the next version of `model` and commit the manifest, like an export.
    `tamper`: the stored file is changed after hashing (its bytes no longer match the manifest).
    Returns the version number the manifest gave it."""
    root = Root(artifacts)
    with root.locked():
        old = Manifest.load(artifacts)
        current = old.find(model, "onnx")
        rel, digest = root.store_immutable(f"{model}.onnx", lambda p: p.write_bytes(data))
        if tamper:
            path = root.path(rel)
            tampered = variant(data, 99.0, 99.0)
            path.unlink()  # a fresh inode: the alias or a previous reader keep the original bytes
            path.write_bytes(tampered)
        entry = replace(current, path=rel, sha256=digest, size=size_of(root.path(rel)))
        record = TrainingRecord.load(artifacts)
        manifest, dropped = commit(
            root, record, sha256_file(root.existing(TRAINING_RECORD)), [entry], keep_versions
        )
        refresh_aliases(root, manifest, dropped, keep={e.path for e in old.all_entries()})
        return manifest.find(model, "onnx").version
