"""The self-test: `Model.selftest()` for a model with any signature, the article's included.

The test is parsed by oneneuron/selftest.py (`embedded`): ONNX metadata key `selftest`, or the
article's older `selftest_x`/`selftest_y` keys read as the same document. Its inputs run through
`Model.run` (the same dtype-exact conversion as any caller's feeds), alone and as a doubled batch,
and every output must match within atol + rtol·|expected|, the doubled batch giving the same rows.
Node and the page run the same test (serve/node/tensors.mjs, serve/node/core.mjs).

Rows too large for metadata (a 224x224 image is ~600 KiB of JSON) are not embedded: ONNX metadata
key `selftest_probe` names the model's probe file (export/probe.py) by sha256, and the loader runs
that file's first rows (`probe_values`): read through the artifacts directory's `Root` (bounded by
MAX_PROBE_BYTES), its sha256 checked against the metadata and the manifest entry before use.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from oneneuron.contract import CONTRACT
from oneneuron.errors import IntegrityError
from oneneuron.selftest import MAX_ROWS, PROBE_KEY, embedded, missing

if TYPE_CHECKING:
    from oneneuron.fsio import Root
    from oneneuron.schema import ArtifactEntry
    from serve.loader import Model

# The bounds are the shared contract's (oneneuron/contract.py): Node and the page apply the same.
PROBE_TOL = CONTRACT.selftest["probe_tol"]  # export/byom.py SELFTEST_TOL
PROBE_TOL_FLOAT16 = CONTRACT.selftest["probe_tol_float16"]
PROBE_OUTPUTS_KEY = "selftest_probe_outputs"  # a variant's own outputs on them (export/optimize.py)
MAX_CHARS = CONTRACT.selftest["max_chars"]
MAX_TOL = CONTRACT.selftest["max_tol"]
Values = tuple[dict[str, Any], dict[str, np.ndarray], float, float]  # inputs, expected, atol, rtol


def values(model: Model) -> Values | None:
    """The parsed, bounded embedded self-test (None: the model has none embedded)."""
    from serve.loader import EXPORT_FIX

    sig = model.signature
    try:
        test = embedded(
            model.metadata, [a["name"] for a in sig["inputs"]], [a["name"] for a in sig["outputs"]]
        )
    except ValueError as exc:
        raise IntegrityError(
            f"{model.path}: metadata has no usable self-test ({exc}); {EXPORT_FIX}"
        ) from None
    if test is None:
        return None
    expected = {name: np.asarray(rows, dtype=np.float64) for name, rows in test.outputs.items()}
    for name, arr in expected.items():
        if arr.dtype == object or arr.ndim == 0:  # ragged rows
            raise IntegrityError(
                f"{model.path}: metadata 'selftest' output {name!r} is not a rectangular list of numbers; "
                f"{EXPORT_FIX}"
            )
    return dict(test.inputs), expected, test.atol, test.rtol


def own_outputs(model: Model, rows: int) -> tuple[dict[str, np.ndarray], float, float]:
    """A variant's `selftest_probe_outputs`: its own expected outputs on the probe's first `rows` rows."""
    from serve.loader import EXPORT_FIX

    def bad(why: str) -> IntegrityError:
        return IntegrityError(
            f"{model.path}: metadata {PROBE_OUTPUTS_KEY!r} is not usable ({why}); {EXPORT_FIX}"
        )

    text = model.metadata[PROBE_OUTPUTS_KEY]
    if len(text) > MAX_CHARS:
        raise bad(f"{len(text):,} characters, more than {MAX_CHARS:,}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON: {str(exc)[:80]}") from None
    outputs = {a["name"] for a in model.signature["outputs"]}
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), dict) or not doc["outputs"]:
        raise bad('expected {"outputs": {name: rows}, "atol", "rtol"}')
    if not set(doc["outputs"]) <= outputs:
        raise bad(f"outputs {sorted(doc['outputs'])[:8]} are not among the model's {sorted(outputs)}")
    expected, atol, rtol = _expected(doc, bad)
    if any(v.shape[0] != rows for v in expected.values()):
        raise bad(f"expected {rows} row(s) per output, the probe rows it runs")
    return expected, atol, rtol


def _expected(doc: dict, bad) -> tuple[dict[str, np.ndarray], float, float]:
    """The expected outputs and tolerances of a self-test document, each bounded and finite."""
    atol, rtol = doc.get("atol"), doc.get("rtol")
    for tol in (atol, rtol):
        if type(tol) not in (int, float) or not 0 <= tol <= MAX_TOL:
            raise bad(f"tolerance {atol!r} + {rtol!r}·|y| is outside [0, {MAX_TOL}]")
    expected = {}
    for name, rows in doc["outputs"].items():
        try:
            arr = np.asarray(rows, dtype=np.float64)
        except (ValueError, TypeError):
            raise bad(f"output {name!r} is not a rectangular list of numbers") from None
        if arr.ndim == 0 or not 1 <= arr.shape[0] <= MAX_ROWS or not np.isfinite(arr).all():
            raise bad(f"output {name!r} must be {MAX_ROWS} row(s) at most of finite numbers")
        expected[name] = arr
    return expected, float(atol), float(rtol)


def probe_values(
    model: Model, root: Root | None, entry: ArtifactEntry | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], float, float]:
    """The first MAX_ROWS rows of the probe file `selftest_probe` names: (inputs, expected, atol, rtol)."""
    import hashlib

    from export.probe import MAX_PROBE_BYTES
    from export.probe import load as load_probe
    from serve.loader import EXPORT_FIX

    digest = model.metadata[PROBE_KEY]
    if root is None or entry is None or entry.probe is None:
        raise IntegrityError(
            f"{model.path}: its self-test is the probe file with sha256 {digest[:12]}..., which only its "
            "manifest names; load it by name from its artifacts directory (load(NAME, artifacts=DIR)), "
            "or pass selftest=False"
        )
    if entry.probe.sha256 != digest:
        raise IntegrityError(
            f"{model.path}: metadata 'selftest_probe' {digest[:12]}... is not the manifest's probe "
            f"{entry.probe.sha256[:12]}... ({entry.probe.path}); {EXPORT_FIX}"
        )
    data = root.read_bytes(entry.probe.path, MAX_PROBE_BYTES)  # confined to the root, bounded
    if hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(
            f"{root.dir / entry.probe.path}: sha256 differs from the model's 'selftest_probe'; the probe "
            f"was changed after export; {EXPORT_FIX}"
        )
    probe = load_probe(root.dir / entry.probe.path, entry.signature, data).head(MAX_ROWS)
    if PROBE_OUTPUTS_KEY in model.metadata:  # a variant: its own outputs on these rows
        expected, atol, rtol = own_outputs(model, probe.rows)
        return dict(probe.inputs), expected, atol, rtol
    half = any(s.dtype == "float16" for s in entry.signature.outputs)
    tol = PROBE_TOL_FLOAT16 if half else PROBE_TOL
    expected = {k: np.asarray(v, dtype=np.float64) for k, v in probe.outputs.items()}
    return dict(probe.inputs), expected, tol, tol


def run(
    model: Model, root: Root | None = None, entry: ArtifactEntry | None = None, given: Values | None = None
) -> tuple[float, float]:
    """Run the model's self-test (embedded, else its probe file's first rows, read through `root` as
    `entry` names it; or `given`, parsed values); raise IntegrityError beyond tolerance or when there
    is none. Returns
    (expected, actual) of the element farthest from its expected value."""
    from serve.loader import EXPORT_FIX, PredictInputError

    given = given if given is not None else values(model)
    if given is None and PROBE_KEY in model.metadata:
        given = probe_values(model, root, entry)
    if given is None:
        raise IntegrityError(
            f"{model.path}: {missing([a['name'] for a in model.signature['inputs']])}; "
            f"{EXPORT_FIX}, or load it with selftest=False"
        )
    inputs, expected, atol, rtol = given
    try:
        once = model.run(inputs)
        twice = model.run({k: np.concatenate([np.asarray(v)] * 2) for k, v in model_inputs(model, inputs)})
    except PredictInputError as exc:
        raise IntegrityError(
            f"{model.path}: self-test inputs do not fit the model ({exc}); {EXPORT_FIX}"
        ) from None
    worst = (0.0, 0.0, -1.0)
    for name, want in expected.items():
        got = once[name].astype(np.float64)
        rows = got.shape[0]
        if got.shape != want.shape or not np.array_equal(twice[name][:rows], once[name]):
            raise IntegrityError(
                f"{model.path}: self-test output {name!r} has shape {got.shape} (doubled batch "
                f"{twice[name].shape}); expected {want.shape}, the same rows twice; {EXPORT_FIX}"
            )
        err = np.abs(got - want)
        bound = atol + rtol * np.abs(want)
        i = int(np.argmax(err - bound))
        e, a = float(want.reshape(-1)[i]), float(got.reshape(-1)[i])
        if not (err <= bound).all():
            raise IntegrityError(
                f"{model.path}: self-test output {name!r} expected {e!r}, got {a!r} at element {i} "
                f"(tolerance {atol} + {rtol}·|y|); {EXPORT_FIX}"
            )
        if err.reshape(-1)[i] > worst[2]:
            worst = (e, a, float(err.reshape(-1)[i]))
    if not math.isfinite(worst[1]):
        raise IntegrityError(f"{model.path}: self-test output is not finite; {EXPORT_FIX}")
    return worst[0], worst[1]


def model_inputs(model: Model, inputs: dict[str, Any]):
    """(name, value) pairs in the model's input order."""
    return [(a["name"], inputs[a["name"]]) for a in model.signature["inputs"]]
