"""The embeddable ONNX loader: `from serve import load`.

    model = load("keras_linear", artifacts="artifacts")   # by name: looked up in manifest.json only
    model = load("artifacts/keras_linear.onnx")            # or by path (a .onnx name or a '/' in it)
    model.predict([10.0])                                   # -> array([[18.98...]], dtype=float32)

Imports only numpy, onnxruntime and the standard library (tests/test_loader.py checks
`sys.modules`), so an app embedding a model never pays for TensorFlow or torch.
On load it verifies the file's sha256 against the manifest, reads the ONNX metadata and runs
the embedded self-test; each check can be turned off explicitly.
"""

from __future__ import annotations

import math
import numbers
import os
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as _InvalidArgument

from core.errors import InputError, IntegrityError, MissingArtifactError
from core.fixes import fix
from core.fsio import Root
from core.manifest import verify
from core.schema import MANIFEST, ArtifactEntry, Manifest
from core.selftest import linear_selftest

_FLOAT32 = np.dtype(np.float32)
_SMALL = 64  # up to this many float32 values, finiteness is tested with a Python sum
EXPORT_FIX = fix("onnx")
# onnxruntime tensor types `run` accepts, and the numpy dtype each is fed as.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class PredictInputError(InputError):
    """`predict` was given something that is not a finite real batch of the model's width."""


@dataclass(frozen=True)
class LoadOptions:
    """How `load` opens a model; every check is on unless turned off explicitly."""

    verify_sha256: bool = True  # compare the file's sha256 with the manifest entry
    selftest: bool = True  # predict selftest_x and compare with the stored selftest_y
    threads: int = 1  # onnxruntime intra-op threads; 1 is fastest for small batches
    trust_key: str | Path | None = None  # a PEM public key: the directory's model.sig must verify


class Model:
    """One ONNX model in an onnxruntime session. `predict` is safe to call from many threads."""

    # The trusted key's fingerprint (sha256 hex) when `load(..., trust_key=...)` verified the
    # directory's signature; None: unsigned (loaded without a trust key, nothing was verified).
    signed_by: str | None = None

    def __init__(self, path: Path, entry: ArtifactEntry | None, options: LoadOptions):
        self.path = Path(path)
        # sha256 checked against a manifest entry at load (False: a lone file, or verify_sha256=False)
        self.verified = entry is not None and options.verify_sha256
        self.sha256 = entry.sha256 if entry is not None else None
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
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
        # `predict` (and the self-test) need the classic signature: one float32 input [batch, n]
        # and one output; any other signature loads for `run(feeds)` only.
        single = (
            len(inputs) == 1
            and len(outputs) == 1
            and inputs[0].type == "tensor(float)"
            and len(inputs[0].shape) == 2
            and isinstance(inputs[0].shape[1], int)
        )
        self.input_name = inputs[0].name if single else None
        self.output_name = outputs[0].name if single else None
        self.n_features = int(inputs[0].shape[1]) if single else None
        self._outputs = [self.output_name]
        self._run_inputs = [(a.name, np.dtype(_ORT_DTYPES[a.type]), list(a.shape)) for a in inputs]
        self._run_outputs = [a.name for a in outputs]
        # `run`'s fast paths (bench row 4): feeds of arrays exactly as the model takes them skip the
        # conversions. Per input: (name, dtype, dims after the batch, its shape when those are all
        # static (else falsy), rows up to which the Python-sum finiteness test applies; -1: not
        # floating, nothing to test). One float input with static dims: `_fast_run`; else `_fast_many`.
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
        # Values other modules derive from this model once (serve/http/tensors.py: its tensor specs),
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

    def predict(self, x: Any) -> np.ndarray:
        """Predict for a number, list or array of rows; returns float32 of shape (rows, 1).

        With one feature, `x` may be a number, shape (rows,) or (rows, 1); with n features,
        shape (n,) for one row or (rows, n). Any real dtype; raises `PredictInputError`
        (a ValueError) for anything else, including NaN/inf and empty input.
        """
        # Inline fast path for the model's own input (bench row 4: per-call overhead vs a bare
        # InferenceSession.run); everything else goes through the full conversion.
        if (
            type(x) is np.ndarray
            and x.dtype == _FLOAT32
            and x.ndim == 2
            and x.shape[1] == self.n_features
            and x.shape[0]
        ):
            if not (math.isfinite(x.item()) if x.size == 1 else _all_finite(x)):
                raise _non_finite(x)
        else:
            x = self.as_batch(x)
        y = self._run(self._outputs, {self.input_name: x}, None)[0]
        if y.shape != (x.shape[0], 1):  # a model that changed under us, or was never what it claims
            raise IntegrityError(
                f"{self.path}: output shape {y.shape} for {x.shape[0]} row(s); expected "
                f"({x.shape[0]}, 1); {EXPORT_FIX}"
            )
        return y

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
                    outputs = self._run(self._run_outputs, feeds, None)
                    first = outputs[0]
                    if len(outputs) == 1 and first.ndim and first.shape[0] == rows:
                        return {self._run_outputs[0]: first}
        many = self._fast_many
        if many is not None and type(feeds) is dict and len(feeds) == len(many):
            # Feeds that need no conversion run as they are: the same rows in every input and
            # floats finite are checked here; dtype, rank and static dims by onnxruntime itself,
            # whose refusal (InvalidArgument, raised before it runs anything) sends the feeds to
            # the general path below, which converts them or says what is wrong. onnxruntime
            # copies a non-contiguous array itself.
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
            except (KeyError, AttributeError, IndexError, TypeError, _InvalidArgument):
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
        outputs = self._run(self._run_outputs, converted, None)
        for name, out in zip(self._run_outputs, outputs, strict=True):
            if out.ndim == 0 or out.shape[0] != rows:
                raise IntegrityError(
                    f"{self.path}: output {name!r} has shape {out.shape} for {rows} input rows; "
                    f"expected one output row per input row; {EXPORT_FIX}"
                )
        return dict(zip(self._run_outputs, outputs, strict=True))

    def run_exact(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """`run` for feeds a decoder has already made exact (serve/http/tensors.py's plain V2
        request): every input named once, of its own dtype and static dims, `rows` rows each,
        floats finite. Only the outputs' rows are checked here; anything unexpected goes through
        `run`, which checks everything and says what is wrong."""
        outputs = self._run(self._run_outputs, feeds, None)
        for out in outputs:
            if not out.ndim or out.shape[0] != rows:
                return self.run(feeds)
        return self._as_dict(outputs)

    def as_batch(self, x: Any) -> np.ndarray:
        """Validate and convert `x` to the model's float32 (rows, n) input."""
        batch = self._convert(x)
        if not _all_finite(batch):
            raise _non_finite(x)
        return batch

    def _convert(self, x: Any) -> np.ndarray:
        n = self.n_features
        if n is None:
            raise PredictInputError(
                f"predict needs one float32 input [batch, n]; this model's inputs are "
                f"{[name for name, _, _ in self._run_inputs]}: use model.run({{name: array, ...}})"
            )
        expected = (
            "a number, a list or an array of shape (rows,) or (rows, 1)"
            if n == 1
            else f"an array of shape ({n},) for one row or (rows, {n})"
        )
        if isinstance(x, (str, bytes)) or (isinstance(x, numbers.Number) and not isinstance(x, numbers.Real)):
            raise PredictInputError(
                f"got {type(x).__name__} {_preview(x)}; expected {expected} of real numbers"
            )
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise PredictInputError(
                f"got {_preview(x)}, which is not a rectangular array ({exc}); expected {expected}"
            ) from None
        if arr.dtype.kind not in "iuf":
            raise PredictInputError(
                f"got dtype {arr.dtype} from {_preview(x)}; expected {expected} "
                "of real numbers (int or float)"
            )
        if arr.ndim == 0:
            arr = arr.reshape(1, 1) if n == 1 else arr.reshape(0, n)
        elif arr.ndim == 1:
            arr = arr.reshape(-1, 1) if n == 1 else arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != n:
            raise PredictInputError(f"got shape {np.shape(x)}; expected {expected}")
        if arr.shape[0] == 0:
            raise PredictInputError(f"got an empty input of shape {np.shape(x)}; expected at least one row")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as non-finite below
            return np.ascontiguousarray(arr, dtype=np.float32)

    def selftest(self) -> tuple[float, float]:
        """Predict the stored self-test input; raise IntegrityError beyond tolerance.

        The input, expected output and tolerance come from the ONNX metadata (the exporter writes
        them from `core.schema`'s constants; Node and the page read the same keys), each finite
        and bounded. The input runs as one row and as a two-row batch, so an output of the wrong
        dtype, shape or row count fails here, at load. Returns (expected, actual).
        A model with the general `selftest` metadata key (any signature) runs serve/selftest.py.
        """
        if "selftest" in self.metadata:
            from serve import selftest

            return selftest.run(self)
        if self.n_features is None:
            raise IntegrityError(
                f"{self.path}: the self-test needs one float32 input [batch, n] and one output; "
                f"this model has inputs {[name for name, _, _ in self._run_inputs]}"
            )
        x, expected, atol, rtol = self._selftest_values()
        actual_y = self.predict(x)
        batch_y = self.predict(np.vstack([x, x]))
        if actual_y.dtype != _FLOAT32 or batch_y.shape != (2, 1):
            raise IntegrityError(
                f"{self.path}: self-test output is {actual_y.dtype} {batch_y.shape} for 2 rows; "
                f"expected float32 (2, 1); {EXPORT_FIX}"
            )
        actual = float(actual_y[0, 0])
        if not abs(actual - expected) <= atol + rtol * abs(expected) or float(batch_y[1, 0]) != actual:
            raise IntegrityError(
                f"{self.path}: self-test at x = {x.ravel().tolist()} expected {expected!r}, got {actual!r} "
                f"(tolerance {atol} + {rtol}·|y|); {EXPORT_FIX}"
            )
        return expected, actual

    def _selftest_values(self) -> tuple[np.ndarray, float, float, float]:
        try:
            st = linear_selftest(self.metadata, self.n_features)
        except ValueError as exc:
            raise IntegrityError(
                f"{self.path}: metadata has no usable self-test ({exc}); {EXPORT_FIX}"
            ) from None
        return np.asarray([st.x], dtype=np.float32), st.y, st.atol, st.rtol

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, path={str(self.path)!r}, n_features={self.n_features}, "
            f"verified={self.verified})"
        )


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


def _all_finite(batch: np.ndarray) -> bool:
    """True when no element is NaN or infinite, at close to memory speed.

    A large batch is checked with one BLAS dot product (NaN/inf propagate into it); only when
    that is not finite (bad input, or squares overflowing for |x| > 1e19) does the exact
    elementwise test decide. That costs ~1 ms per 10M rows instead of ~2.6 ms (bench row 5).
    """
    if batch.size == 1:
        return math.isfinite(batch.item())
    if batch.size <= _SMALL and batch.dtype.itemsize <= 4:  # a few rows (an MLP's batch 1): a Python sum
        # is ~4x cheaper than a ufunc; float32/16 values cannot overflow a float64 sum, NaN/inf propagate
        return math.isfinite(sum(batch.ravel().tolist()))
    if batch.size < 4096:
        return bool(np.isfinite(batch).all())
    flat = batch.reshape(-1)
    return math.isfinite(float(np.dot(flat, flat))) or bool(np.isfinite(batch).all())


def _exact(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """`value` as an array of `dtype`, refusing conversions that change a value (not rounding)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise PredictInputError(f"input {name!r}: not a rectangular array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise PredictInputError(
            f"input {name!r}: got dtype {arr.dtype}; expected numbers convertible to {dtype}"
        )
    if arr.dtype == dtype:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "b":  # a bool is not a number
        raise PredictInputError(f"input {name!r}: got bool; expected numbers convertible to {dtype}")
    if dtype.kind in "iub" and arr.dtype.kind == "f":
        raise PredictInputError(
            f"input {name!r}: got {arr.dtype}; expected {dtype} (floats are not truncated)"
        )
    if dtype.kind == "b" and arr.dtype.kind != "b":
        raise PredictInputError(f"input {name!r}: got {arr.dtype}; expected bool")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is caught as non-finite
        out = np.ascontiguousarray(arr, dtype=dtype)
    if dtype.kind in "iu" and not np.array_equal(out.astype(arr.dtype), arr):
        raise PredictInputError(f"input {name!r}: values out of range for {dtype}")
    return out


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "None" for d in shape) + "]"


def _non_finite(x: Any) -> PredictInputError:
    return PredictInputError(
        f"input contains NaN or infinity (or a value beyond float32's range "
        f"±3.4e38): {_preview(x)}; expected finite numbers"
    )


_repr = reprlib.Repr()  # bounded: never walks a whole list nor recurses deep (client input)
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 60, 60
_repr.maxlist = _repr.maxtuple = 8


def _preview(x: Any, limit: int = 80) -> str:
    text = _repr.repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_path(model: str | Path) -> bool:
    """The resolution rule: a `Path`, a name ending in `.onnx` or one containing a path separator is a
    file path; anything else is a model name, looked up in the manifest only."""
    return (
        isinstance(model, Path)
        or str(model).endswith(".onnx")
        or "/" in str(model)
        or (os.sep != "/" and os.sep in str(model))
    )


def resolve(
    model: str | Path, artifacts: str | Path | None
) -> tuple[Path, ArtifactEntry | None, Root | None]:
    """A model's file, its manifest entry and directory (entry None: a lone file no manifest lists)."""
    if is_path(model):
        candidate = Path(model)
        if not candidate.is_file():
            raise MissingArtifactError(
                f"{candidate}: no such file; {EXPORT_FIX}, or pass a model name and artifacts=DIR"
            )
        root = Root(artifacts if artifacts is not None else candidate.parent)
        if not (root.dir / MANIFEST).exists():
            return candidate, None, None
        manifest = Manifest.load(root.dir)
        for entry in manifest.all_entries():  # a previous version's stored file is verified too
            # the stored version itself, or its stable alias (keras_linear.onnx), in that directory
            if (
                entry.format == "onnx"
                and candidate.parent.resolve() == root.real
                and candidate.name in (entry.path, entry.alias)
            ):
                # the stored version is what the manifest's sha256 describes: load that, not the alias,
                # which an export in progress may not have repointed yet
                return root.existing(entry.path), entry, root
        return candidate, None, None
    root = Root(artifacts if artifacts is not None else "artifacts")
    manifest = Manifest.load(root.dir)
    entry = manifest.find(str(model), "onnx")
    if entry is None:
        known = ", ".join(sorted(e.model for e in manifest.entries("onnx"))) or "none"
        raise InputError(
            f"model {str(model)[:80]!r} is not an ONNX model in {root.dir / MANIFEST}; known: {known}"
        )
    if entry.format != "onnx":
        raise InputError(
            f"{entry.name} is a {entry.format} artifact; the loader runs ONNX models only "
            "(code-bearing formats are never loaded here)"
        )
    return root.existing(entry.path), entry, root


def _verify_signature(
    path: Path, artifacts: Path, trust_key: str | Path, entry: ArtifactEntry | None
) -> tuple[str, ArtifactEntry | None]:
    """The signature check (imported only when a key is given: the cold start without one is
    unchanged). Returns the key's fingerprint and `entry` as the signed manifest records it (the
    manifest read before may have been replaced since; what was verified is what is used)."""
    from core.signing import verify_file

    verified = verify_file(path, artifacts, trust_key)
    if entry is not None:
        entry = next((e for e in verified.manifest.all_entries() if e.path == entry.path), entry)
    return verified.key_fingerprint, entry


def load(
    model: str | Path,
    artifacts: str | Path | None = None,
    *,
    verify_sha256: bool = True,
    selftest: bool = True,
    threads: int = 1,
    trust_key: str | Path | None = None,
) -> Model:
    """Load an ONNX model by manifest name or by path, verify it and return a `Model`.

    Args:
        model: a model name from the manifest ("keras_linear"), or a path to a `.onnx` file
            (see `is_path` for the rule). A file no manifest lists runs its embedded self-test
            and `Model.verified` is False.
        artifacts: the artifacts directory holding manifest.json (default: the file's own
            directory for a path, `artifacts/` for a name).
        verify_sha256, selftest: turn the integrity checks off explicitly (both on by default).
        threads: onnxruntime intra-op threads.
        trust_key: a PEM public key (python -m export.keys); the directory's `model.sig` must be
            its signature over the manifest and every stored version, and the model file one of
            them, before onnxruntime reads a byte (core/signing.py; raises SignatureError).
    """
    options = LoadOptions(
        verify_sha256=verify_sha256, selftest=selftest, threads=threads, trust_key=trust_key
    )
    path, entry, root = resolve(model, artifacts)
    return open_model(path, entry, root, options)


def open_model(path: Path, entry: ArtifactEntry | None, root: Root | None, options: LoadOptions) -> Model:
    """Verify (signature with a trust key; sha256 against `entry`, when given) and open `path`, then
    run its self-test."""
    signed_by = None
    if options.trust_key is not None:
        artifacts = root.dir if root is not None else path.parent
        signed_by, entry = _verify_signature(path, artifacts, options.trust_key, entry)
    if options.verify_sha256 and entry is not None and root is not None:
        verify(root, entry)
        if path.name != entry.path:  # opened by its stable name: the bytes loaded must match too
            verify(root, entry, path.name)
    loaded = Model(path, entry, options)
    loaded.signed_by = signed_by
    if options.selftest:
        loaded.selftest()
    return loaded


def load_entry(root: Root, entry: ArtifactEntry, options: LoadOptions = LoadOptions()) -> Model:
    """Load the ONNX artifact of a parsed manifest `entry` (what the server and batch jobs do)."""
    if entry.format != "onnx":
        raise InputError(f"{entry.name} is a {entry.format} artifact; the loader runs ONNX models only")
    return open_model(root.existing(entry.path), entry, root, options)
