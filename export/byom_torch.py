"""A `.pt2` file (torch.export.save) in torch: its signature, its outputs, ONNX and TorchScript.

ONNX with `torch.onnx.export(program, dynamo=True)`; TorchScript by tracing the program's module
through a positional wrapper (inputs in signature order), kept only when the trace reproduces the
program (`torchscript()` returns None and the reason otherwise). See export/byom_sources.py.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.byom_sources import CONVERTER_FIX, OPSET, ConversionError, Source, first_line, sanitise, spec
from oneneuron.errors import InputError
from oneneuron.frameworks import torch_jit_quiet
from oneneuron.schema import Signature


def load_torch(path: Path, data: bytes) -> Source:
    """A `.pt2` file written by `torch.export.save` (no Python class needed to load it)."""
    import torch
    import torch.utils._pytree as pytree

    loader_log = logging.getLogger("torch.export")
    level = loader_log.level
    loader_log.setLevel(logging.CRITICAL)  # it logs the traceback of a failed load as a warning
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        why = first_line(exc)
        why = "not an archive torch.export.save wrote" if "warnings above" in why else why  # they are muted
        raise InputError(
            f"{path}: torch {torch.__version__} cannot load it as a torch.export program "
            f"({why}); pass a file written by "
            "torch.export.save(torch.export.export(model, example_inputs, dynamic_shapes=...), 'model.pt2')"
        ) from None
    finally:
        loader_log.setLevel(level)
    sig = program.graph_signature
    nodes = {n.name: n for n in program.graph.nodes}
    taken: set[str] = set()
    batch_symbols: set[str] = set()
    inputs = []
    for raw in sig.user_inputs:
        val = nodes[raw].meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise InputError(f"{path}: input {raw!r} is not a tensor; expected tensor inputs only")
        dims = [int(d) if isinstance(d, int) else str(d) for d in val.shape]
        if dims and isinstance(dims[0], str):
            batch_symbols.add(dims[0])
        inputs.append((sanitise(raw, taken), val, dims))
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    out_vals = [a.meta.get("val") if hasattr(a, "meta") else None for a in out_node.args[0]][
        : len(sig.user_outputs)
    ]
    out_spec = program.call_spec.out_spec
    keys = list(out_spec.context) if out_spec.type is dict else None
    raw_out = keys or (["output"] if len(out_vals) == 1 else [f"output_{i}" for i in range(len(out_vals))])
    out_names = [sanitise(k, taken) for k in raw_out]

    def dims_of(dims: list) -> list:  # symbols: the batch's -> None (named batch); others keep their name
        return [None if d in batch_symbols else d for d in dims]

    in_specs = tuple(spec(path, "input", n, _dtype(v), dims_of(d)) for n, v, d in inputs)
    outputs = []
    for n, v in zip(out_names, out_vals, strict=True):
        if not isinstance(v, torch.Tensor):
            raise InputError(f"{path}: output {n!r} is not a tensor; expected tensor outputs only")
        outputs.append(
            spec(
                path,
                "output",
                n,
                _dtype(v),
                dims_of([int(d) if isinstance(d, int) else str(d) for d in v.shape]),
            )
        )
    module = program.module()
    in_names = [n for n, _, _ in inputs]

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flat = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in in_names]
        args, kwargs = pytree.tree_unflatten(flat, program.call_spec.in_spec)
        with torch.no_grad():
            out = pytree.tree_flatten(module(*args, **kwargs))[0]
        return {n: o.numpy() for n, o in zip(out_names, out, strict=True)}

    def to_onnx():
        return _torch_onnx(path, program, in_names, out_names)

    versions = {"torch": torch.__version__}
    source = Source(path, data, "torch", versions, Signature(in_specs, tuple(outputs)), call, to_onnx)
    source.extra = {"program": program, "module": module, "in_names": in_names, "out_names": out_names}
    return source


def _dtype(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def _torch_onnx(path: Path, program: Any, in_names: list[str], out_names: list[str]) -> Any:
    import torch

    from export.onnx import _quiet_torch_exporter

    what = f"torch.onnx (torch {torch.__version__})"
    try:
        with _quiet_torch_exporter(), _quiet_stdout():
            onnx_program = torch.onnx.export(
                program, (), input_names=in_names, output_names=out_names, opset_version=OPSET,
                dynamo=True, verbose=False,
            )  # fmt: skip
    except Exception as exc:
        text = str(exc)
        op = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text) or re.search(
            r"call_function\[target=([\w.]+)\]", text
        )
        why = f"op {op.group(1)} has no ONNX conversion at opset {OPSET}" if op else first_line(exc)
        raise ConversionError(f"{path}: {what} cannot export it: {why}; {CONVERTER_FIX}") from None
    return onnx_program.model_proto


class _quiet_stdout:  # torch.onnx prints progress lines on stdout in some versions
    def __enter__(self):
        import contextlib

        self._cm = contextlib.redirect_stdout(io.StringIO())
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def torchscript(
    source: Source, probe: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> tuple[bytes | None, str]:
    """TorchScript by tracing the program's module on the probe; (bytes, "") or (None, why not).

    A trace records one path through the code: it is kept only when it reproduces the source's
    outputs on the probe rows and on a batch of a different size (the first 3 rows).
    """
    import torch
    import torch.utils._pytree as pytree

    program, names = source.extra["program"], source.extra["in_names"]
    flat = [torch.from_numpy(np.ascontiguousarray(probe[n])) for n in names]

    class Positional(torch.nn.Module):  # inputs in signature order, whatever the program's call spec
        def __init__(self):
            super().__init__()
            self.program = source.extra["module"]

        def forward(self, *tensors):
            args, kwargs = pytree.tree_unflatten(list(tensors), program.call_spec.in_spec)
            return self.program(*args, **kwargs)

    buffer = io.BytesIO()
    with torch_jit_quiet(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            traced = torch.jit.trace(Positional(), tuple(flat), strict=False)
            torch.jit.save(traced, buffer)
        except Exception as exc:
            return None, f"torch.jit.trace of the program failed ({type(exc).__name__}: {first_line(exc)})"
        for rows in (len(flat[0]), 3):
            try:
                got = pytree.tree_flatten(traced(*[t[:rows] for t in flat]))[0]
            except Exception as exc:
                return None, (
                    f"the trace of the program fails on {rows} rows: it recorded a size the program "
                    f"computes ({type(exc).__name__})"
                )
            for s, g in zip(source.signature.outputs, got, strict=True):
                want = expected[s.name][:rows]
                if g.shape != want.shape or not np.allclose(
                    g.numpy(), want, rtol=1e-5, atol=1e-5, equal_nan=True
                ):
                    return None, f"the trace of the program differs from it on {s.name!r} ({rows} rows)"
    return buffer.getvalue(), ""
