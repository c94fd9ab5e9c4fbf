"""`Model`: one ONNX model in an onnxruntime session, with `predict`, `run` and the self-test.

Made by serve/loader.py's `load` (which reads the file once, verifies those bytes and hands them
here: onnxruntime runs the bytes that were verified, never the path); the input checks it applies are
in serve/inputs.py. Imports only numpy, onnxruntime and the standard library.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as _Fail
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as _InvalidArgument
from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException as _RuntimeException

from oneneuron.errors import IntegrityError
from oneneuron.fixes import fix
from oneneuron.schema import ArtifactEntry
from serve.inputs import ORT_DTYPES as _ORT_DTYPES
from serve.inputs import SMALL as _SMALL
from serve.inputs import PredictInputError
from serve.inputs import all_finite as _all_finite
from serve.inputs import exact as _exact
from serve.inputs import non_finite as _non_finite
from serve.inputs import preview as _preview
from serve.inputs import ran as _ran
from serve.inputs import refused as _refused
from serve.inputs import shape_text as _shape_text

# what onnxruntime raises when it refuses feeds, before running (dtype, rank, a static dim) or in a
# node (an index beyond a Gather's data, sizes it cannot broadcast): the caller's error (issue 20)
_REFUSALS = (_InvalidArgument, _Fail, _RuntimeException)
EXPORT_FIX = fix("onnx")


@dataclass(frozen=True)
class LoadOptions:
    """How `load` opens a model; every check is on unless turned off explicitly."""

    verify_sha256: bool = True  # compare the file's sha256 with the manifest entry
    selftest: bool = True  # run the stored self-test (serve/selftest.py) and compare its outputs
    threads: int = 1  # onnxruntime intra-op threads; 1 is fastest for small batches
    trust_key: str | Path | None = None  # a PEM public key: the directory's model.sig must verify
    min_generation: int | None = None  # refuse a manifest of a lower generation (a rolled-back one)


class Model:
    """One ONNX model in an onnxruntime session. `predict` is safe to call from many threads."""

    # The trusted key's fingerprint (sha256 hex) when `load(..., trust_key=...)` verified the
    # directory's signature; None: unsigned (loaded without a trust key, nothing was verified).
    signed_by: str | None = None
    # The generation of the manifest the model was loaded from (the verified one with a trust key);
    # None: a lone file no manifest lists.
    generation: int | None = None

    def __init__(self, path: Path, entry: ArtifactEntry | None, options: LoadOptions, data: bytes):
        """`data`: the model's bytes, read once from `path` (and verified, when `entry` is given);
        onnxruntime runs them, and never opens `path` itself (serve/loader.py `open_model`)."""
        self.path = Path(path)
        # sha256 checked against a manifest entry at load (False: a lone file, or verify_sha256=False)
        self.verified = entry is not None and options.verify_sha256
        self.sha256 = entry.sha256 if entry is not None else None
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise IntegrityError(
                f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]}); {EXPORT_FIX}"
            ) from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        unsupported = [a for a in inputs + outputs if a.type not in _ORT_DTYPES]
        if unsupported:
            raise IntegrityError(
                f"{self.path}: tensor types {[(a.name, a.type) for a in unsupported]} are not supported; "
                f"expected numeric or bool tensors ({', '.join(sorted(_ORT_DTYPES))})"
            )
        # `predict` takes any model with one input; `n_features` is the width of the article's own
        # signature (one float32 input [batch, n], one output [batch, 1]), None for any other: the
        # server's classic routes (serve/http/v2.py, tfserving.py, serve/grpc/service.py) read it.
        self.input_name = inputs[0].name if len(inputs) == 1 else None
        self.output_name = outputs[0].name if len(outputs) == 1 else None
        article = (
            self.input_name is not None
            and self.output_name is not None
            and inputs[0].type == "tensor(float)"
            and len(inputs[0].shape) == 2
            and isinstance(inputs[0].shape[1], int)
            and list(outputs[0].shape[1:]) == [1]
        )
        self.n_features = int(inputs[0].shape[1]) if article else None
        self._run_inputs = [(a.name, np.dtype(_ORT_DTYPES[a.type]), list(a.shape)) for a in inputs]
        self._run_outputs = [a.name for a in outputs]
        # `run`'s fast paths (bench row 4): feeds of arrays exactly as the model takes them skip the
        # conversions. Per input: (name, dtype, dims after the batch, its shape when those are all
        # static (else falsy), rows up to which the Python-sum finiteness test applies; -1: not
        # floating, nothing to test). One float input with static dims: `_fast_run` (`run` and `predict`);
        # else `_fast_many`.
        fast = []
        for a in inputs:
            dtype, dims = np.dtype(_ORT_DTYPES[a.type]), tuple(a.shape[1:])
            static = all(isinstance(d, int) for d in dims)
            small = _SMALL // max(int(np.prod(dims)), 1) if static and dtype.itemsize <= 4 else 0
            fast.append((a.name, dtype, dims, static and a.shape, small if dtype.kind == "f" else -1))
        one_float = len(fast) == 1 and fast[0][3] and fast[0][4] >= 0
        self._fast_run = (
            (fast[0][0], fast[0][1], fast[0][2], len(fast[0][2]) + 1, fast[0][4]) if one_float else None
        )
        # several inputs (or one not floating): (name, rows up to which a float input's finiteness is
        # a Python sum; -1: not floating). Every input has a batch dimension, or there is no fast path.
        batched = all(a.shape for a in inputs)
        self._fast_many = tuple((f[0], f[4]) for f in fast) if batched and not one_float else None
        names = [a.name for a in outputs]
        if len(names) == 1:
            self._as_dict = lambda outs, n0=names[0]: {n0: outs[0]}
        elif len(names) == 2:
            self._as_dict = lambda outs, n0=names[0], n1=names[1]: {n0: outs[0], n1: outs[1]}
        else:
            self._as_dict = lambda outs: dict(zip(names, outs, strict=True))
        self._run = _direct_run(self._session)
        # Values other modules derive from this model once (serve/engine/tensors.py: its tensor specs),
        # kept here rather than in a side table keyed by the model: one dict lookup per request.
        self.derived: dict[str, Any] = {}
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.name = self.metadata.get("model", self.path.stem)

    @property
    def signature(self) -> dict[str, list[dict[str, Any]]]:
        """Inputs and outputs as {name, dtype, shape} with the batch dimension as None."""

        def describe(args):
            return [
                {
                    "name": a.name,
                    "dtype": np.dtype(_ORT_DTYPES[a.type]).name,
                    "shape": [d if isinstance(d, int) else None for d in a.shape],
                }
                for a in args
            ]

        return {
            "inputs": describe(self._session.get_inputs()),
            "outputs": describe(self._session.get_outputs()),
        }

    def predict(self, x: Any) -> np.ndarray | dict[str, np.ndarray]:
        """`run` for a model with one input, given `x` alone; returns its output (a dict of outputs
        for a model with several), one row per input row, at whatever width the model has.

        `x` is a batch of the input's shape, or one row without the batch dimension; with one
        feature ([batch, 1], the article's models) a number, a list or shape (rows,) is rows of one.
        A float input takes any real dtype (converted; beyond its range is non-finite), any other
        input exact conversions only (`run`'s rule). The article's models return float32 (rows, 1).
        Raises `PredictInputError` (a ValueError) for anything else, including NaN/inf and empty input.
        """
        fast = self._fast_run  # bench row 4: an array exactly as the model takes it runs as it is
        if (
            fast is not None
            and type(x) is np.ndarray
            and x.dtype is fast[1]
            and x.ndim == fast[3]
            and x.shape[1:] == fast[2]
            and x.shape[0]
        ):
            if not (math.isfinite(x.item()) if x.size == 1 else _all_finite(x)):
                raise _non_finite(x)
        else:
            x = self.as_batch(x)
        feeds = {self.input_name: x}
        try:
            outputs = self._run(self._run_outputs, feeds, None)
        except _REFUSALS as exc:
            raise _refused(exc, feeds) from None
        first = outputs[0]
        if len(outputs) == 1 and first.ndim and first.shape[0] == x.shape[0]:  # bench row 4: the usual case
            return first
        for name, out in zip(self._run_outputs, outputs, strict=True):
            if not out.ndim or out.shape[0] != x.shape[0]:  # a model that is not what it claims
                raise IntegrityError(
                    f"{self.path}: output {name!r} has shape {out.shape} for {x.shape[0]} input row(s); "
                    f"expected one output row per input row; {EXPORT_FIX}"
                )
        return self._as_dict(outputs)

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on named inputs (any signature); returns {output name: array}.

        Every input of `model.signature` must be given, with the same number of rows; values
        are converted to the input's dtype only when that is exact (integers stay integers,
        no float to int truncation, nothing out of range) and floats must be finite.
        Raises `PredictInputError` (a ValueError) naming the input otherwise.
        """
        fast = self._fast_run
        if fast is not None and type(feeds) is dict and len(feeds) == 1:  # bench row 4 MLP: per-call cost
            name, dtype, dims, ndim, small_rows = fast
            arr = feeds.get(name)
            if type(arr) is np.ndarray and arr.dtype is dtype and arr.ndim == ndim and arr.shape[1:] == dims:
                rows = arr.shape[0]
                # a few float32 values: a Python sum (NaN/inf propagate, no overflow) beats any ufunc
                if (
                    rows <= small_rows
                    and rows
                    and math.isfinite(sum(arr.ravel().tolist()))
                    or (rows > small_rows and _all_finite(arr))
                ):
                    try:
                        outputs = self._run(self._run_outputs, feeds, None)
                    except _REFUSALS as exc:
                        raise _refused(exc, feeds) from None
                    first = outputs[0]
                    if len(outputs) == 1 and first.ndim and first.shape[0] == rows:
                        return {self._run_outputs[0]: first}
        many = self._fast_many
        if many is not None and type(feeds) is dict and len(feeds) == len(many):
            # Feeds that need no conversion run as they are: the same rows in every input and
            # floats finite are checked here; dtype, rank and static dims by onnxruntime itself,
            # whose refusal before it runs anything sends the feeds to the general path below,
            # which converts them or says what is wrong. A refusal while running (a node failed:
            # an id beyond a vocabulary) is the caller's error at once: the model runs once.
            # onnxruntime copies a non-contiguous array itself.
            rows = -1
            try:
                for name, small_rows in many:
                    arr = feeds[name]
                    n = arr.shape[0]  # a list, a 0-d array: AttributeError / IndexError
                    if n != rows:
                        if rows >= 0 or not n:
                            break
                        rows = n
                    if small_rows >= 0 and not (
                        math.isfinite(sum(arr.ravel().tolist())) if n <= small_rows else _all_finite(arr)
                    ):
                        break
                else:
                    outputs = self._run(self._run_outputs, feeds, None)
                    for out in outputs:
                        if out.shape[0] != rows:  # 0-d: IndexError
                            break
                    else:
                        return self._as_dict(outputs)
            except _REFUSALS as exc:
                if _ran(exc):
                    raise _refused(exc, feeds) from None
            except (KeyError, AttributeError, IndexError, TypeError):
                pass  # not exact feeds: the general path converts them or says what is wrong
        if not isinstance(feeds, dict):
            raise PredictInputError(
                f"feeds must be a dict of input name -> array, got {type(feeds).__name__}"
            )
        names = [name for name, _, _ in self._run_inputs]
        if set(feeds) != set(names):
            raise PredictInputError(
                f"feeds have inputs {sorted(feeds)}; the model's inputs are {names} "
                f"(missing {sorted(set(names) - set(feeds))}, unknown {sorted(set(feeds) - set(names))})"
            )
        converted, rows = {}, None
        for name, dtype, shape in self._run_inputs:
            arr = _exact(name, feeds[name], dtype)
            if arr.ndim != len(shape) or any(
                isinstance(d, int) and d != n for d, n in zip(shape[1:], arr.shape[1:], strict=False)
            ):
                raise PredictInputError(
                    f"input {name!r}: got shape {arr.shape}; expected {_shape_text(shape)} (None: any rows)"
                )
            if rows is None:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                raise PredictInputError(
                    f"input {name!r} has {arr.shape[0]} rows but {names[0]!r} has {rows}; "
                    "every input needs the same number of rows"
                )
            if arr.dtype.kind == "f" and not _all_finite(arr):
                raise PredictInputError(f"input {name!r}: {_non_finite(feeds[name])}")
            converted[name] = arr
        if not rows:
            raise PredictInputError("got 0 rows; expected at least one row")
        try:
            outputs = self._run(self._run_outputs, converted, None)
        except _REFUSALS as exc:  # a dimension or value the graph cannot take: the caller's error
            raise _refused(exc, converted) from None
        for name, out in zip(self._run_outputs, outputs, strict=True):
            if out.ndim == 0 or out.shape[0] != rows:
                raise IntegrityError(
                    f"{self.path}: output {name!r} has shape {out.shape} for {rows} input rows; "
                    f"expected one output row per input row; {EXPORT_FIX}"
                )
        return dict(zip(self._run_outputs, outputs, strict=True))

    def run_exact(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """`run` for feeds a decoder has already made exact (serve/engine/tensors.py's plain V2
        request): every input named once, of its own dtype and static dims, `rows` rows each,
        floats finite. Only the outputs' rows are checked here; anything unexpected goes through
        `run`, which checks everything and says what is wrong."""
        try:
            outputs = self._run(self._run_outputs, feeds, None)
        except _REFUSALS as exc:
            if _ran(exc):  # the model ran and a node refused the values: not again in `run`
                raise _refused(exc, feeds) from None
            return self.run(feeds)
        for out in outputs:
            if not out.ndim or out.shape[0] != rows:
                return self.run(feeds)
        return self._as_dict(outputs)

    def as_batch(self, x: Any) -> np.ndarray:
        """Validate and convert `x` to the model's one input, batch first (see `predict`)."""
        if self.input_name is None:
            raise PredictInputError(
                f"predict takes a model with one input; this model's inputs are "
                f"{[name for name, _, _ in self._run_inputs]}: use model.run({{name: array, ...}})"
            )
        name, dtype, shape = self._run_inputs[0]
        dims = shape[1:]
        width_one = dims == [1]  # the article's [batch, 1]: a number, or a list of rows of one
        if width_one:
            expected = "a number, a list or an array of shape (rows,) or (rows, 1)"
        else:
            text = [str(d) if isinstance(d, int) else "any" for d in dims]
            one = f"({', '.join(text)}{',' if len(text) == 1 else ''})"
            expected = f"an array of shape {one} for one row or ({', '.join(['rows', *text])})"
        arr = _as_float(x, dtype, expected) if dtype.kind == "f" else _exact(name, x, dtype)
        if width_one and arr.ndim <= 1:
            arr = arr.reshape(-1, 1)  # a number: one row; shape (rows,): rows of one
        elif arr.ndim == len(dims):
            arr = arr[np.newaxis]  # one row without its batch dimension
        if arr.ndim != len(shape) or any(
            isinstance(d, int) and d != n for d, n in zip(dims, arr.shape[1:], strict=True)
        ):
            raise PredictInputError(f"got shape {np.shape(x)}; expected {expected}")
        if arr.shape[0] == 0:
            raise PredictInputError(f"got an empty input of shape {np.shape(x)}; expected at least one row")
        if dtype.kind == "f" and not _all_finite(arr):
            raise _non_finite(x)
        return arr

    def selftest(self, root: Any = None, entry: ArtifactEntry | None = None) -> tuple[float, float]:
        """Run the stored self-test (serve/selftest.py, any signature); raise IntegrityError beyond
        tolerance, or naming what is missing when the model has none. Returns (expected, actual).

        The test comes from the ONNX metadata (`selftest`, or the article's older `selftest_x` /
        `selftest_y`, parsed by oneneuron/selftest.py: finite, bounded); a model whose rows are too
        large to embed (`selftest_probe`) runs its probe file's first rows, read through `root` (the
        artifacts directory) as `entry` (its manifest entry) names it. The inputs run as they are
        and as a doubled batch, so an output of the wrong shape or row count fails here, at load.
        """
        from serve import selftest

        return selftest.run(self, root, entry)

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, path={str(self.path)!r}, n_features={self.n_features}, "
            f"verified={self.verified})"
        )


def _as_float(x: Any, dtype: np.dtype, expected: str) -> np.ndarray:
    """`x` as a contiguous array of the float `dtype`, from any real numbers (beyond its range: inf)."""
    if isinstance(x, (str, bytes)) or (isinstance(x, numbers.Number) and not isinstance(x, numbers.Real)):
        raise PredictInputError(f"got {type(x).__name__} {_preview(x)}; expected {expected} of real numbers")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise PredictInputError(
            f"got {_preview(x)}, which is not a rectangular array ({exc}); expected {expected}"
        ) from None
    if arr.dtype.kind not in "iuf":
        raise PredictInputError(
            f"got dtype {arr.dtype} from {_preview(x)}; expected {expected} of real numbers (int or float)"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as non-finite
        return np.ascontiguousarray(arr, dtype=dtype)


def _direct_run(
    session: ort.InferenceSession,
) -> Callable[[list[str], dict[str, Any], None], list[np.ndarray]]:
    """`session.run` without its Python wrapper's per-call checks, when that is safe.

    `InferenceSession.run` (onnxruntime's Python layer) re-checks the feed's names, OrtValue
    ownership and WebGPU graph capture, and retries on an execution-provider failure, before it
    calls the compiled session: ~1.2 us per call here, a fifth of a batch-1 MLP call (bench row
    4). The loader has already checked the feeds (numpy arrays only, every input named) and uses
    the CPU provider alone (no fallback), so it calls the compiled session directly. If this
    onnxruntime has no such attribute (it is private), the public `run` is used. Both are called
    as `run(output_names, feeds, None)`.
    """
    inner = getattr(session, "_sess", None)
    if (
        inner is None
        or not callable(getattr(inner, "run", None))
        or session.get_providers() != ["CPUExecutionProvider"]
    ):
        return session.run
    return inner.run
