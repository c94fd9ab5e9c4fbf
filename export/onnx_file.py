"""An ONNX file from elsewhere, read as untrusted input (export.all --from-onnx, export/from_onnx.py).

`read(path)` returns the file's bytes: a regular file (a symlink is refused, not followed) of at
most `MAX_ONNX_BYTES`. `parse(path, data)` returns the checked `onnx.ModelProto` and its `Signature`:

- a ModelProto with a graph, every tensor inline (external data is refused, naming the fix),
  passing `onnx.checker.check_model(full_check=True)`;
- a default-domain opset from `MIN_OPSET` (onnxruntime's oldest) to the newest this onnx knows
  (onnxruntime's session, made next, refuses an op it has no kernel for);
- at most `MAX_TENSORS` inputs and outputs, each a tensor of a dtype in oneneuron.schema.DTYPES
  (what the loader feeds onnxruntime, serve/inputs.py ORT_DTYPES, and the manifest records) and a
  declared rank of 1 to 8, named `[A-Za-z_][A-Za-z0-9_]{0,63}` (a name every consumer accepts:
  HTTP, gRPC, Triton, Parquet columns, Node);
- the first dimension of every input and output is the batch: it must be dynamic. Other dynamic
  dimensions keep their `dim_param` when it is a valid dimension name, else are named
  `<tensor>_<i>`; the probe gives them `--dim NAME=SIZE` or export/probe.py's DYNAMIC_SIZE.

Every refusal is an InputError: one line naming the file, what was found and the fix (exit 2).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from export.byom_sources import first_line
from oneneuron.errors import InputError
from oneneuron.schema import DTYPES, Signature, TensorSpec

MAX_ONNX_BYTES = 1 << 30  # 1 GiB: the file, the parsed model, a session and the reference run fit in memory
MIN_OPSET = 7  # the oldest default-domain opset onnxruntime runs
MAX_TENSORS = 64  # inputs, and outputs
MAX_RANK = 8  # oneneuron.schema.TensorSpec
BATCH = "batch"
TENSOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
INLINE_FIX = "onnx.save(onnx.load('model.onnx'), 'inline.onnx') with every tensor inline (the default)"


def read(path: Path) -> bytes:
    """The bytes of `path`, a regular file of at most MAX_ONNX_BYTES; a symlink is refused."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; pass --from-onnx with an .onnx file") from None
    if stat.S_ISLNK(info.st_mode):
        raise InputError(
            f"{path}: a symlink (to {os.readlink(path)[:120]}); an adopted file is read only as itself: "
            "pass --from-onnx with the real file's path"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(
            f"{path}: cannot open it ({exc.strerror}); pass --from-onnx with a readable file"
        ) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())  # the file opened, not the name looked at
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file; pass --from-onnx with an .onnx file")
        if info.st_size > MAX_ONNX_BYTES:
            raise InputError(
                f"{path}: {info.st_size:,} bytes, more than the limit of {MAX_ONNX_BYTES:,}; "
                "--from-onnx takes models up to that size"
            )
        data = f.read(MAX_ONNX_BYTES + 1)
    if len(data) > MAX_ONNX_BYTES:  # grew while read
        raise InputError(f"{path}: more than {MAX_ONNX_BYTES:,} bytes; --from-onnx takes smaller models")
    return data


def parse(path: Path, data: bytes) -> tuple[Any, Signature]:
    """The checked ModelProto in `data` and its signature (see the module docstring)."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeError from onnx's own parser
        raise InputError(
            f"{path}: not an ONNX model ({first_line(exc)}); pass a file onnx.save wrote"
        ) from None
    if not proto.HasField("graph") or not proto.ir_version or not proto.opset_import:
        raise InputError(
            f"{path}: not an ONNX model (no graph, IR version or opset); pass a file onnx.save wrote"
        )
    external = next(_external_tensors(proto.graph), None)
    if external is not None:
        where = next((e.value for e in external.external_data if e.key == "location"), "?")
        raise InputError(
            f"{path}: tensor {external.name[:80]!r} keeps its data in an external file ({where[:80]!r}); "
            f"--from-onnx adopts one self-contained file: save it with {INLINE_FIX}"
        )
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise InputError(
            f"{path}: fails onnx.checker (onnx {onnx.__version__}): {first_line(exc)}; fix the model "
            "and save it again"
        ) from None
    _check_opset(path, proto)
    return proto, signature(path, proto)


def _external_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of `graph` and its subgraphs (If, Loop, Scan bodies) stored as external data."""
    import onnx

    tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
    for node in graph.node:
        for attr in node.attribute:
            tensors += [attr.t, *attr.tensors] if attr.HasField("t") or attr.tensors else []
            tensors += [attr.sparse_tensor.values] if attr.HasField("sparse_tensor") else []
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _external_tensors(sub)
    yield from (t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)


def _check_opset(path: Path, proto: Any) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    opset = default_opset(proto)
    if opset is None:
        raise InputError(
            f"{path}: imports no default-domain (ai.onnx) opset; expected one of {MIN_OPSET} to {newest}"
        )
    if not MIN_OPSET <= opset <= newest:
        raise InputError(
            f"{path}: opset {opset}; expected {MIN_OPSET} to {newest} (onnxruntime and onnx "
            f"{onnx.__version__}): convert it with onnx.version_converter.convert_version(model, 21)"
        )


def default_opset(proto: Any) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def signature(path: Path, proto: Any) -> Signature:
    """The graph's inputs (initializers excluded: IR < 4 lists them as inputs) and outputs."""
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    outputs = list(proto.graph.output)
    for kind, values in (("inputs", inputs), ("outputs", outputs)):
        if not 1 <= len(values) <= MAX_TENSORS:
            raise InputError(f"{path}: {len(values)} {kind}; --from-onnx takes 1 to {MAX_TENSORS}")
    batch = {d.dim_param for v in inputs for d in v.type.tensor_type.shape.dim[:1] if d.dim_param}
    return Signature(
        tuple(_spec(path, "input", v, batch) for v in inputs),
        tuple(_spec(path, "output", v, batch) for v in outputs),
    )


def _spec(path: Path, kind: str, value: Any, batch: set[str]) -> TensorSpec:
    import onnx

    name = value.name
    if not TENSOR_NAME.fullmatch(name):
        raise InputError(
            f"{path}: {kind} name {name[:80]!r}; expected a letter or '_', then letters, digits or '_' "
            "(at most 64): rename it in the graph (and where it is used) and save the model again"
        )
    if not value.type.HasField("tensor_type"):
        what = value.type.WhichOneof("value") or "no type"
        raise InputError(f"{path}: {kind} {name!r} is a {what}; --from-onnx takes tensor {kind} only")
    t = value.type.tensor_type
    try:
        numpy_name = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name  # string: object
    except (KeyError, TypeError, ValueError):  # undefined or unknown element types
        numpy_name = None
    if numpy_name not in DTYPES:
        raise InputError(
            f"{path}: {kind} {name!r} has dtype {_dtype_name(t.elem_type)}; expected one of "
            f"{', '.join(sorted(DTYPES))} "
            "(what the loader, the servers and the manifest take): cast it in the graph and save it again"
        )
    if not t.HasField("shape") or not 1 <= len(t.shape.dim) <= MAX_RANK:
        rank = f"rank {len(t.shape.dim)}" if t.HasField("shape") else "no declared shape"
        raise InputError(
            f"{path}: {kind} {name!r} has {rank}; expected rank 1 to {MAX_RANK}, the first dimension the "
            "batch: declare its shape in the graph (onnx.shape_inference.infer_shapes) and save it again"
        )
    dims = list(t.shape.dim)
    if dims[0].HasField("dim_value"):
        raise InputError(
            f"{path}: {kind} {name!r} has a fixed first dimension {dims[0].dim_value}; expected a dynamic "
            "batch: export it with one (torch.onnx.export(..., dynamic_axes={'x': {0: 'batch'}}) or "
            "dynamic_shapes), or set graph.input[i].type.tensor_type.shape.dim[0].dim_param = 'batch'"
        )
    shape: list[int | str] = [BATCH]
    for i, d in enumerate(dims[1:], 1):
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        elif d.dim_param in batch:
            raise InputError(
                f"{path}: {kind} {name!r} has the batch dimension {d.dim_param!r} at position {i}; "
                "--from-onnx takes the first dimension of every input as the batch and no other"
            )
        else:
            shape.append(d.dim_param if DIM_NAME.fullmatch(d.dim_param) else f"{name}_{i}")
    return TensorSpec(name, numpy_name, tuple(shape))


def dynamic_dims(sig: Signature) -> list[str]:
    """The names of the inputs' dynamic dimensions other than the batch, in order, once each."""
    return list(dict.fromkeys(d for s in sig.inputs for d in s.shape[1:] if isinstance(d, str)))


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"
