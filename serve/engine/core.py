"""`Engine.infer`: the one inference sequence every protocol calls.

lookup (`Engine.served`: NotFound / Unavailable) -> the adapter's decode (wire format -> `Request`)
-> validation (serve/engine/tensors.py) -> the run -> output checks -> statistics, metrics and
failure accounting. Adapters (serve/http/v2.py, serve/http/tfserving.py, serve/grpc/service.py)
only convert wire formats and map `ServeError`s to their statuses, once each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serve.engine import stats
from serve.engine.dtypes import datatype
from serve.engine.errors import InputError
from serve.engine.registry import Registry, Version
from serve.engine.scheduler import Limits, runner_for, triton_limits
from serve.engine.tensors import Input, Plan, Spec, feeds, plain_feeds, plan, select_outputs
from serve.inputs import SMALL, PredictInputError, all_finite


@dataclass(slots=True)
class Request:
    """An inference request in the engine's terms."""

    inputs: list[Input]
    id: str | None = None
    outputs: list[tuple[Any, Any]] = field(default_factory=list)  # (name, binary flag or None); []: all
    binary: bool = False  # the default binary flag of the outputs (V2 binary_data_output)


@dataclass(slots=True)
class Output:
    """One requested output: its array, V2 datatype, and for a small one its values as Python
    numbers (already converted for the finiteness check; JSON writers reuse them)."""

    name: str
    datatype: str
    array: np.ndarray
    values: list | None
    binary: bool


@dataclass(slots=True)
class Result:
    """What `Engine.infer` answers: the version that ran, the request's id, the requested outputs."""

    version: Version
    id: str | None
    outputs: list[Output]
    rows: int


class Engine:
    """The protocol-neutral server core over a `Registry`: every protocol's infer goes through
    `infer`, every lookup through `served`."""

    def __init__(self, registry: Registry, max_rows: int, limits: Limits | None = None):
        """`limits`: how every model's runs are scheduled (serve/engine/scheduler.py); fields left
        None come from the model's Triton config.pbtxt when the repository has one, else defaults."""
        self.registry, self.metrics, self.max_rows = registry, registry.metrics, max_rows
        self.limits = limits or Limits()

    def served(self, name: str, version: str | None = None) -> Version:
        """The version a request runs on (default: the newest ready); NotFound, Unavailable."""
        return self.registry.served(name, version)

    async def infer(self, served: Version, request: Request | Awaitable[Request], protocol: str) -> Result:
        """Decode (when `request` is the adapter's awaitable decode), validate, run and check one
        request on `served`; counted in its statistics and `/metrics` whatever the outcome."""
        start = time.perf_counter_ns()
        try:
            if type(request) is not Request:
                request = await request  # the adapter's wire decoding (a body read, a parse)
            model = served.model
            p = plan(model)
            chosen = select_outputs(p, request.outputs, request.binary)
            rows, outputs = await self._run(served, p, request.inputs)
            result = Result(served, request.id, _checked(chosen, outputs), rows)
        except Exception:
            stats.fail(served.counts, start)  # Triton's fail count, per version
            raise
        self.metrics.rows(served.entry.model, protocol, rows)
        stats.ok(served.counts, rows, start)
        return result

    async def _run(self, served: Version, p: Plan, inputs: list[Input]) -> tuple[int, dict[str, np.ndarray]]:
        model = served.model
        runner = served.runner or runner_for(served, self.limits_for(served.entry.model))
        plain = plain_feeds(p, inputs, self.max_rows)
        try:
            if plain is not None:
                rows = plain[1]
                return rows, await runner.run(lambda f: model.run_exact(f, rows), plain[0], rows)
            converted = feeds(p, inputs, self.max_rows)
            outputs = await runner.run(model.run, converted, 0)
        except PredictInputError as exc:
            raise InputError(str(exc)) from None
        return len(next(iter(outputs.values()))), outputs

    def limits_for(self, name: str) -> Limits:
        """The scheduling limits of model `name`: the server's, with what they leave open (None)
        taken from `triton/<name>/config.pbtxt` (export.triton) when it exists."""
        return triton_limits(self.limits, self.registry.artifacts / "triton" / name / "config.pbtxt")


def _checked(chosen: list[tuple[Spec, bool]], outputs: dict[str, np.ndarray]) -> list[Output]:
    """The requested outputs; a non-finite float output is refused (InputError: the input drove it
    beyond its dtype's range)."""
    out = []
    for spec, as_binary in chosen:
        arr = outputs[spec.name]
        values = arr.ravel().tolist() if arr.size <= SMALL else None
        if arr.dtype.kind == "f" and not (
            # a Python sum of float16/32 values cannot overflow (NaN and inf propagate); float64's can
            math.isfinite(sum(values)) if values is not None and arr.dtype.itemsize <= 4 else all_finite(arr)
        ):
            raise InputError(
                f"output {spec.name!r} overflows {arr.dtype} for this input; send smaller values"
            )
        out.append(Output(spec.name, datatype(arr.dtype), arr, values, as_binary))
    return out
