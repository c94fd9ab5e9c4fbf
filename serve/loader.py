"""The embeddable ONNX loader: `from serve import load`.

    model = load("keras_linear", artifacts="artifacts")   # by name, from manifest.json
    model = load("artifacts/keras_linear.onnx")            # or by path
    model.predict([10.0])                                   # -> array([[18.98...]], dtype=float32)

Imports only numpy, onnxruntime and the standard library (tests/test_loader.py checks
`sys.modules`), so an app embedding a model never pays for TensorFlow or torch.
On load it verifies the file's sha256 against the manifest, reads the ONNX metadata and runs
the embedded self-test; each check can be turned off explicitly.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from core.errors import InputError, IntegrityError, MissingArtifactError
from core.fsio import sha256_file
from core.manifest import MANIFEST, find_entry, load_manifest

# Same model across runtimes: |a - b| <= ATOL + RTOL * |b| (README "The check").
SELFTEST_ATOL = 1e-5
SELFTEST_RTOL = 1e-6
_FLOAT32 = np.dtype(np.float32)
EXPORT_FIX = "python -m export.onnx"


class PredictInputError(InputError):
    """`predict` was given something that is not a finite real batch of the model's width."""


@dataclass(frozen=True)
class LoadOptions:
    """How `load` opens a model; every check is on unless turned off explicitly."""

    verify_sha256: bool = True  # compare the file's sha256 with the manifest entry
    selftest: bool = True  # predict selftest_x and compare with the stored selftest_y
    threads: int = 1  # onnxruntime intra-op threads; 1 is fastest for small batches


class Model:
    """One ONNX model in an onnxruntime session. `predict` is safe to call from many threads."""

    # The trusted key's fingerprint (sha256 hex) when `load(..., trust_key=...)` verified the
    # directory's signature; None: unsigned (loaded without a trust key, nothing was verified).
    signed_by: str | None = None

    def __init__(self, path: Path, entry: dict[str, Any] | None, options: LoadOptions):
        self.path = Path(path)
        self.entry = entry
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise IntegrityError(
                f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]}); "
                f"re-run {EXPORT_FIX}"
            ) from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if (
            len(inputs) != 1
            or len(outputs) != 1
            or inputs[0].type != "tensor(float)"
            or len(inputs[0].shape) != 2
        ):
            raise IntegrityError(
                f"{self.path}: expected one float32 input [batch, n] and one output, got "
                f"{[(i.name, i.type, i.shape) for i in inputs]} -> {[o.name for o in outputs]}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.n_features = int(inputs[0].shape[1])
        self._outputs = [self.output_name]
        self._run = self._session.run
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.name = self.metadata.get("model", self.path.stem)

    @property
    def signature(self) -> dict[str, list[dict[str, Any]]]:
        """Inputs and outputs as {name, dtype, shape} with the batch dimension as None."""

        def describe(args):
            return [
                {
                    "name": a.name,
                    "dtype": "float32",
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
            return self._run(self._outputs, {self.input_name: x})[0]
        return self._run(self._outputs, {self.input_name: self.as_batch(x)})[0]

    def as_batch(self, x: Any) -> np.ndarray:
        """Validate and convert `x` to the model's float32 (rows, n) input."""
        batch = self._convert(x)
        if not _all_finite(batch):
            raise _non_finite(x)
        return batch

    def _convert(self, x: Any) -> np.ndarray:
        n = self.n_features
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

        Returns (expected, actual).
        """
        try:
            x = np.asarray(json.loads(self.metadata["selftest_x"]), dtype=np.float32)
            expected = float(self.metadata["selftest_y"])
        except (KeyError, ValueError) as exc:
            raise IntegrityError(
                f"{self.path}: metadata has no usable selftest_x/selftest_y ({exc}); re-run {EXPORT_FIX}"
            ) from None
        actual = float(self.predict(x)[0, 0])
        if not abs(actual - expected) <= SELFTEST_ATOL + SELFTEST_RTOL * abs(expected):
            raise IntegrityError(
                f"{self.path}: self-test at x = {x.ravel().tolist()} expected {expected!r}, "
                f"got {actual!r} (tolerance {SELFTEST_ATOL} + {SELFTEST_RTOL}·|y|); "
                f"re-run {EXPORT_FIX}"
            )
        return expected, actual

    def __repr__(self) -> str:
        return f"Model({self.name!r}, path={str(self.path)!r}, n_features={self.n_features})"


def _all_finite(batch: np.ndarray) -> bool:
    """True when no element is NaN or infinite, at close to memory speed.

    A large batch is checked with one BLAS dot product (NaN/inf propagate into it); only when
    that is not finite (bad input, or squares overflowing for |x| > 1e19) does the exact
    elementwise test decide. That costs ~1 ms per 10M rows instead of ~2.6 ms (bench row 5).
    """
    if batch.size == 1:
        return math.isfinite(batch.item())
    if batch.size < 4096:
        return bool(np.isfinite(batch).all())
    flat = batch.reshape(-1)
    return math.isfinite(float(np.dot(flat, flat))) or bool(np.isfinite(batch).all())


def _non_finite(x: Any) -> PredictInputError:
    return PredictInputError(
        f"input contains NaN or infinity (or a value beyond float32's range "
        f"±3.4e38): {_preview(x)}; expected finite numbers"
    )


def _preview(x: Any, limit: int = 80) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_sha256(path: Path, entry: dict[str, Any]) -> None:
    """Raise IntegrityError when the file's sha256 differs from its manifest entry."""
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise IntegrityError(
            f"{path}: sha256 {actual} != manifest {entry['sha256']}; "
            f"the file was changed or truncated after export; re-run {EXPORT_FIX}"
        )


def resolve(model: str | Path, artifacts: str | Path | None) -> tuple[Path, dict[str, Any] | None]:
    """Find a model's file and its manifest entry (None when there is no manifest beside it)."""
    candidate = Path(model)
    if candidate.suffix == ".onnx" or candidate.exists():
        if not candidate.is_file():
            raise MissingArtifactError(
                f"{candidate}: no such file; run {EXPORT_FIX}, or pass a model name and artifacts=DIR"
            )
        directory = Path(artifacts) if artifacts is not None else candidate.parent
        if not (directory / MANIFEST).is_file():
            return candidate, None
        manifest = load_manifest(directory)
        for entry in manifest["artifacts"]:
            # the stored version itself, or its stable alias (keras_linear.onnx)
            if (directory / entry["path"]).resolve() == candidate.resolve() or (
                candidate.parent.resolve() == directory.resolve() and candidate.name == entry.get("alias")
            ):
                return candidate, entry
        return candidate, None
    directory = Path(artifacts if artifacts is not None else "artifacts")
    entry = find_entry(load_manifest(directory), str(model), "onnx")
    if entry["format"] != "onnx":
        raise InputError(
            f"{entry['name']} is a {entry['format']} artifact; the loader runs ONNX models only "
            f"(code-bearing formats are never loaded here)"
        )
    path = directory / entry["path"]
    if not path.is_file():
        raise MissingArtifactError(
            f"{path}: named in {directory / MANIFEST} but missing; re-run {EXPORT_FIX}"
        )
    return path, entry


def _verify_signature(path: Path, artifacts: str | Path | None, trust_key: str | Path) -> str:
    """The signature check (imported only when a key is given: the cold start without one is unchanged)."""
    from core.signing import verify_file

    return verify_file(
        path, Path(artifacts) if artifacts is not None else path.parent, trust_key
    ).key_fingerprint


def load(
    model: str | Path,
    artifacts: str | Path | None = None,
    *,
    verify_sha256: bool = True,
    selftest: bool = True,
    threads: int = 1,
    trust_key: str | Path | None = None,
) -> Model:
    """Load an ONNX model by path or by manifest name, verify it and return a `Model`.

    Args:
        model: a path to a `.onnx` file, or a model name from the manifest ("keras_linear").
        artifacts: the artifacts directory holding manifest.json (default: the file's own
            directory for a path, `artifacts/` for a name).
        verify_sha256, selftest: turn the integrity checks off explicitly (both on by default).
        threads: onnxruntime intra-op threads.
        trust_key: a PEM public key (python -m export.keys); the directory's `model.sig` must be
            its signature over the manifest and every stored version, and the model file one of
            them, before onnxruntime reads a byte (core/signing.py; raises SignatureError).
    """
    options = LoadOptions(verify_sha256=verify_sha256, selftest=selftest, threads=threads)
    path, entry = resolve(model, artifacts)
    signed_by = _verify_signature(path, artifacts, trust_key) if trust_key is not None else None
    if options.verify_sha256 and entry is not None:
        check_sha256(path, entry)
    loaded = Model(path, entry, options)
    loaded.signed_by = signed_by
    if options.selftest:
        loaded.selftest()
    return loaded
