"""A brought-in model in its own framework: a `.keras` file in Keras (here), a `.pt2` ExportedProgram
in torch (export/byom_torch.py).

Each `Source` knows its signature (names sanitised to `[A-Za-z_][A-Za-z0-9_]*`, first dimension the
dynamic batch), runs named numpy inputs (`run(feeds) -> {output: array}`), and converts itself:
Keras -> ONNX with tf2onnx through a `tf.function` (`from_keras` breaks on Keras 3) and a
SavedModel; torch -> ONNX with `torch.onnx.export(dynamo=True)` of the program, and TorchScript by
tracing the program's module when that works (`torchscript()` returns None and a reason otherwise).
A converter that cannot export the model raises `ConversionError` (exit 2) naming the op, the
converter and its version. Loading the file writes nothing.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oneneuron.errors import InputError
from oneneuron.frameworks import quiet_tensorflow
from oneneuron.schema import DTYPES, Signature, TensorSpec

logger = logging.getLogger(__name__)
OPSET = 18  # as export/onnx.py
BATCH = "batch"
CHUNK = 1024  # rows per call when running the probe through the source model
_DIM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # oneneuron.schema's dimension-name pattern


class ConversionError(InputError):
    """A converter cannot export the model (an unsupported op or construct): exit 2, nothing written."""


def sanitise(name: str, taken: set[str]) -> str:
    """`name` as a tensor name every consumer accepts (`[A-Za-z_][A-Za-z0-9_]*`, <= 64), unique in `taken`."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", str(name))[:60] or "tensor"
    text = text if re.match(r"[A-Za-z_]", text) else f"_{text}"
    out, i = text, 1
    while out in taken:
        out, i = f"{text}_{i}", i + 1
    taken.add(out)
    return out


def spec(path: Path, kind: str, name: str, dtype: str, dims: list[int | str | None]) -> TensorSpec:
    """A TensorSpec whose first dimension is the batch; None dims become `<name>_<i>`."""
    if dtype not in DTYPES:
        raise InputError(
            f"{path}: {kind} {name!r} has dtype {dtype}; expected one of {', '.join(sorted(DTYPES))}"
        )
    if not dims or dims[0] not in (None, BATCH):
        raise InputError(
            f"{path}: {kind} {name!r} has shape {dims}; expected a dynamic first (batch) dimension: "
            "Keras Input(shape=...) without batch_size, or torch.export.export(..., dynamic_shapes="
            "{name: {0: torch.export.Dim('batch')}})"
        )
    shape = [BATCH] + [
        d if isinstance(d, int) or _DIM.fullmatch(d or "") else f"{name}_{i}" for i, d in enumerate(dims) if i
    ]
    return TensorSpec(name, dtype, tuple(shape))


@dataclass
class Source:
    """A model loaded from the user's file."""

    path: Path  # as given (its name is recorded, not its directory)
    data: bytes  # the file's bytes: what source_sha256 describes and what was loaded
    framework: str  # tensorflow / torch
    versions: dict[str, str]
    signature: Signature
    call: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    to_onnx: Callable[[], Any]  # -> onnx.ModelProto (raises ConversionError)
    sha256: str = ""  # of `data`
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The source model's outputs, CHUNK rows at a time, each output as its signature's dtype."""
        rows = len(next(iter(feeds.values())))
        parts = [self.call({k: v[i : i + CHUNK] for k, v in feeds.items()}) for i in range(0, rows, CHUNK)]
        out = {}
        for s in self.signature.outputs:
            arr = np.concatenate([np.asarray(p[s.name]) for p in parts])
            out[s.name] = np.ascontiguousarray(arr, dtype=np.dtype(s.dtype))
        return out


# -- Keras -------------------------------------------------------------------------------------------
def load_keras(path: Path, data: bytes) -> Source:
    """A `.keras` file (safe mode: no Lambda layers with Python code) in Keras 3."""
    tf = quiet_tensorflow()
    import keras

    with tempfile.TemporaryDirectory() as tmp:  # load exactly the bytes that were hashed
        copy = Path(tmp) / "model.keras"
        copy.write_bytes(data)
        try:
            model = keras.saving.load_model(copy, compile=False)
        except Exception as exc:
            raise InputError(
                f"{path}: Keras {keras.__version__} cannot load it ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass a file saved with "
                "model.save('model.keras') using built-in or registered layers"
            ) from None
    taken: set[str] = set()
    in_names = [sanitise(t.name, taken) for t in model.inputs]
    # a dict of outputs: its keys; else the output layers' names, in order
    structure = model.output
    is_dict = isinstance(structure, dict)
    out_keys = list(structure) if is_dict else list(model.output_names)
    out_tensors = [structure[k] for k in out_keys] if is_dict else keras.tree.flatten(structure)
    out_names = [sanitise(k, taken) for k in out_keys]
    inputs = tuple(
        spec(path, "input", n, str(t.dtype), list(t.shape))
        for n, t in zip(in_names, model.inputs, strict=True)
    )
    outputs = tuple(
        spec(path, "output", n, str(t.dtype), list(t.shape))
        for n, t in zip(out_names, out_tensors, strict=True)
    )

    def outputs_of(out: Any) -> dict[str, Any]:
        values = [out[k] for k in out_keys] if isinstance(out, dict) else keras.tree.flatten(out)
        return dict(zip(out_names, values, strict=True))

    def graph_fn(*args):
        return outputs_of(model(keras.tree.pack_sequence_as(model.input, list(args)), training=False))

    specs = [
        tf.TensorSpec([d if isinstance(d, int) else None for d in s.shape], s.dtype, name=s.name)
        for s in inputs
    ]
    fn = tf.function(graph_fn, input_signature=specs)

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in fn(*[tf.constant(feeds[n]) for n in in_names]).items()}

    def to_onnx():
        return _tf2onnx(path, fn, specs)

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    source = Source(path, data, "tensorflow", versions, Signature(inputs, outputs), call, to_onnx)
    source.extra = {"model": model, "fn": graph_fn, "specs": specs}
    return source


def _tf2onnx(path: Path, fn: Any, specs: list) -> Any:
    import onnx
    import tf2onnx

    what = f"tf2onnx {tf2onnx.__version__}"
    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    converter_log.setLevel(logging.CRITICAL)  # its "op ... is not supported" lines: we say it once below
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=OPSET)
    except Exception as exc:
        why = first_line(exc)
        raise ConversionError(f"{path}: {what} cannot convert it: {why}; {CONVERTER_FIX}") from None
    finally:
        converter_log.setLevel(level)
    # tf2onnx keeps an op it cannot convert in the graph under its TensorFlow name: refuse those
    unsupported = [
        n for n in proto.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type, n.domain)
    ]
    if unsupported:
        ops = ", ".join(sorted({f"{n.op_type} ({n.name})" for n in unsupported}))
        raise ConversionError(
            f"{path}: {what} cannot convert TensorFlow op {ops} to ONNX opset {OPSET}; {CONVERTER_FIX}"
        )
    return proto


def write_savedmodel(source: Source, target: Path, signature_name: str) -> None:
    """The Keras model as a SavedModel with one serving signature named after the inputs and outputs."""
    import keras

    from export.savedmodel import stable_fingerprint

    archive = keras.export.ExportArchive()
    archive.track(source.extra["model"])
    archive.add_endpoint(name=signature_name, fn=source.extra["fn"], input_signature=source.extra["specs"])
    archive.write_out(str(target), verbose=False)
    stable_fingerprint(target)


CONVERTER_FIX = (
    "replace that op or construct in the model (or use a converter that supports it) and save it again"
)


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]
