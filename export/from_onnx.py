"""Adopt an ONNX file from elsewhere: `python -m export.all --from-onnx model.onnx --name NAME`.

The file is read as untrusted input (export/onnx_file.py: bounded, a regular file, every tensor
inline, onnx.checker's full check, a supported opset and signature) and loaded in onnxruntime.
Then, as for --from-keras/--from-torch (export/byom.py), a probe: inputs generated from the
signature (export/probe.py; `--int-range LO:HI` for ids, `--dim NAME=SIZE` for a dynamic
dimension other than the batch, else DYNAMIC_SIZE) or given (`--probe-inputs NPZ`), and the
outputs every later check compares against.

Whose outputs: an adopted file has no source framework, so the probe stores onnx.reference's (the
ONNX specification's reference evaluator, pure numpy, independent of onnxruntime), once
onnxruntime's agree with them within serve.check's rule (oneneuron/tolerance.py: per output and
row, |a - b| <= atol + rtol·max|b|); a disagreement refuses the file. When onnx.reference cannot
run the graph (an op it lacks, e.g. com.microsoft ones, or one of its bugs), or the whole probe
would take it longer than REFERENCE_BUDGET seconds, the probe stores onnxruntime's outputs; the
manifest entry's `adopted.reference` says which runtime's they are and `reference_note` why (and
on how many rows onnx.reference agreed).

What is written: one ONNX artifact, a copy of the file whose own metadata is kept and to which the
toolkit's keys are added (`model`, `source_file`, `source_sha256`, the self-test `selftest_probe`
and, when it fits, `selftest`; an original value under one of those keys is replaced, and logged);
the probe file; provenance in the entry (the file's name and sha256, its producer, its opset,
`adopted`). Any refusal is one line, exit 2, nothing written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export import onnx_file
from export import probe as probes
from export._core import Run, store
from export.byom import SELFTEST_PROBE, selftest_json
from export.byom_sources import first_line
from oneneuron.errors import InputError
from oneneuron.fsio import size_of
from oneneuron.schema import Adoption, ArtifactEntry, ProbeRef, Signature
from oneneuron.tolerance import compare, default_for

logger = logging.getLogger(__name__)
REFERENCE_BUDGET = 60.0  # seconds onnx.reference may take on the whole probe at adoption
CHUNK = 1024  # probe rows per onnxruntime call
MAX_DIM = 1 << 16  # --dim SIZE
# Metadata keys the toolkit writes or reads (serve/selftest.py, oneneuron/selftest.py, export/onnx.py):
# an adopted file's own value under one of them is replaced, not trusted.
RESERVED = (
    "model", "selftest", SELFTEST_PROBE, "selftest_x", "selftest_y", "selftest_atol", "selftest_rtol",
    "source_framework", "source_framework_version", "source_file", "source_sha256", "architecture",
)  # fmt: skip


@dataclass(frozen=True)
class OnnxConfig:
    """One ONNX file to adopt."""

    source: Path
    name: str
    seed: int = 0  # of the generated probe inputs
    int_range: tuple[int, int] = probes.INT_RANGE  # integer probe inputs: [LO, HI)
    probe_inputs: Path | None = None  # given probe inputs instead (.npz, one array per input)
    dims: Mapping[str, int] = field(default_factory=dict)  # --dim NAME=SIZE: dynamic dims' probe sizes


def dim_arg(text: str) -> tuple[str, int]:
    """`--dim NAME=SIZE`: a dimension name and a size from 1 to MAX_DIM."""
    name, sep, size = text.partition("=")
    try:
        value = int(size) if sep and onnx_file.DIM_NAME.fullmatch(name) else 0
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DIM:
        raise InputError(
            f"--dim {text[:80]!r}: expected NAME=SIZE, a dimension name of the model and a size from 1 "
            f"to {MAX_DIM}, e.g. --dim sequence=16"
        )
    return name, value


def _sizes(cfg: OnnxConfig, sig: Signature) -> dict[str, int]:
    """The probe's size for each dynamic dimension other than the batch: --dim, else DYNAMIC_SIZE."""
    names = onnx_file.dynamic_dims(sig)
    unknown = sorted(set(cfg.dims) - set(names))
    if unknown:
        raise InputError(
            f"{cfg.source}: --dim {', '.join(unknown)}: the model has no such dynamic dimension; its "
            f"inputs' dynamic dimensions besides the batch (the first, as many rows as the probe) are "
            f"{', '.join(names) or 'none'}"
        )
    return {n: cfg.dims.get(n, probes.DYNAMIC_SIZE) for n in names}


def _session(path: Path, data: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # its warnings and errors are not ours to print: a refusal raises
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(
            f"{path}: onnxruntime {ort.__version__} cannot load it ({first_line(exc)}); "
            "replace the op or opset it names and save the model again"
        ) from None


def _probe_inputs(cfg: OnnxConfig, sig: Signature, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if cfg.probe_inputs is not None:
        return probes.read_inputs(cfg.probe_inputs, sig)
    rows = probes.ROWS + probes.LARGE_ROWS
    total = sum(
        rows * int(np.prod([d if isinstance(d, int) else sizes[d] for d in s.shape[1:]]))
        * np.dtype(s.dtype).itemsize
        for s in sig.inputs
    )  # fmt: skip
    if total > probes.MAX_PROBE_BYTES:
        raise InputError(
            f"{cfg.source}: {rows} probe rows would be {total >> 20} MiB, more than "
            f"{probes.MAX_PROBE_BYTES >> 20} MiB; give smaller --dim sizes or --probe-inputs with fewer rows"
        )
    return probes.generate(sig, cfg.seed, cfg.int_range, sizes)


def _run_onnxruntime(
    cfg: OnnxConfig, session: Any, sig: Signature, feeds: Mapping[str, np.ndarray], sizes: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """onnxruntime's outputs on the probe, CHUNK rows at a time; each with the probe's rows."""
    import onnxruntime as ort

    rows = len(next(iter(feeds.values())))
    names = [s.name for s in sig.outputs]
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the exception below says it once, in one line
    try:
        parts = [
            session.run(names, {k: v[i : i + CHUNK] for k, v in feeds.items()}, quiet)
            for i in range(0, rows, CHUNK)
        ]
    except Exception as exc:  # an id beyond a vocabulary, a size the graph does not allow
        given = ", ".join(f"{k}={v}" for k, v in sizes.items())
        fix = (
            "give the sizes your inputs have with --dim NAME=SIZE (the probe used " + given + "); "
            if sizes and cfg.probe_inputs is None
            else ""
        )
        raise InputError(
            f"{cfg.source}: onnxruntime {ort.__version__} fails on the probe inputs "
            f"({ort_reason(exc)}); {fix}integer inputs are drawn from --int-range "
            f"{cfg.int_range[0]}:{cfg.int_range[1]}: give the range your ids have; or --probe-inputs NPZ"
        ) from None
    out = {}
    for j, s in enumerate(sig.outputs):
        arr = np.concatenate([p[j] for p in parts]) if len(parts) > 1 else parts[0][j]
        if arr.ndim != len(s.shape) or arr.shape[0] != rows or arr.dtype != np.dtype(s.dtype):
            raise InputError(
                f"{cfg.source}: output {s.name!r} is {arr.dtype} {list(arr.shape)} for {rows} input rows; "
                f"the graph declares {s.dtype} {list(s.shape)}, the first dimension the batch: "
                "fix the graph's output shape and save the model again"
            )
        out[s.name] = np.ascontiguousarray(arr)
    return out


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's refusal in a few words: the op and its reason, without its C++ source text
    (the rule serve/inputs.py `refused` applies to a request's refusal)."""
    text = " ".join(str(exc).replace("[ONNXRuntimeError] : ", "").split())
    node = re.search(r"running (\w+) node\. Name:'([^']*)' Status Message: (.*)", text)
    if node is None:
        return text[:200]
    reason = re.sub(r"^\S+:\d+ .*? was false\.\s*", "", node.group(3))
    return f"{node.group(1)} node {node.group(2)!r}: {reason[:200]}"


def reference_outputs(
    path: Path, proto: Any, sig: Signature, feeds: Mapping[str, np.ndarray], ort_out: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], str, str]:
    """The probe's outputs, the runtime that produced them and how the other one agreed (see the
    module docstring); InputError when onnx.reference and onnxruntime disagree."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    rows = len(next(iter(feeds.values())))
    names = [s.name for s in sig.outputs]
    ref_name = f"onnx.reference (onnx {onnx.__version__})"
    try:
        evaluator = ReferenceEvaluator(proto)
        start = time.perf_counter()
        got = evaluator.run(names, {k: v[:1] for k, v in feeds.items()})
        per_row = max(time.perf_counter() - start, 1e-6)
        fit = rows if per_row * rows <= REFERENCE_BUDGET else max(1, int(REFERENCE_BUDGET / per_row))
        if fit > 1:
            got = evaluator.run(names, {k: v[:fit] for k, v in feeds.items()})
    except Exception as exc:  # onnx.reference raises on ops it lacks and on some of its own bugs
        note = (
            f"{ref_name} cannot run it ({type(exc).__name__}: {first_line(exc)}); the probe "
            f"stores onnxruntime {ort.__version__}'s outputs"
        )
        logger.info("%s: %s", path, note)
        return dict(ort_out), "onnxruntime", note
    worst = []
    for s, value in zip(sig.outputs, got, strict=True):
        expected = np.asarray(value)
        actual = ort_out[s.name][:fit]
        atol, rtol = default_for(s.dtype)
        if expected.shape != actual.shape:
            figures, ok = f"shape {list(actual.shape)} vs {list(expected.shape)}", False
        else:
            max_abs, max_rel, min_atol = compare(actual, expected, atol, rtol)
            figures, ok = f"max|Δ| {max_abs:.2e}, min atol {min_atol:.2e}", min_atol <= atol
            worst.append((max_abs, s.name))
        if not ok:
            raise InputError(
                f"{path}: onnxruntime {ort.__version__} and {ref_name} disagree on output {s.name!r} "
                f"({figures} > atol {atol:g} at rtol {rtol:g}, |a - b| <= atol + rtol·max|b| per row) on "
                f"{fit} probe rows; nothing adopted: the two runtimes compute different things (check "
                "the model, or give --probe-inputs in the range it is meant for)"
            )
    largest = max(worst, default=(0.0, ""))
    agree = f"agree within serve.check's tolerance (largest max|Δ| {largest[0]:.2e}, on {largest[1]!r})"
    if fit == rows:
        stored = {
            s.name: np.asarray(v, dtype=np.dtype(s.dtype)) for s, v in zip(sig.outputs, got, strict=True)
        }
        return (
            stored,
            "onnx.reference",
            f"onnxruntime {ort.__version__} and {ref_name} {agree} on all {rows} rows",
        )
    note = (
        f"onnxruntime {ort.__version__} and {ref_name} {agree} on the first {fit} of {rows} rows; all rows "
        f"would take onnx.reference ~{per_row * rows:.0f} s (budget {REFERENCE_BUDGET:g} s), so the probe "
        "stores onnxruntime's outputs"
    )
    return dict(ort_out), "onnxruntime", note


def with_metadata(proto: Any, ours: Mapping[str, str]) -> Any:
    """A copy of `proto` with its own metadata kept and `ours` added (RESERVED keys replaced); checked."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    own = {p.key: p.value for p in proto.metadata_props}
    replaced = sorted(k for k in own if k in RESERVED)
    if replaced:
        logger.info("replaced the file's own metadata key(s) %s with the toolkit's", ", ".join(replaced))
    onnx.helper.set_model_props(copy, {k: v for k, v in own.items() if k not in RESERVED} | dict(ours))
    onnx.checker.check_model(copy, full_check=False)  # the graph passed the full check already
    return copy


def _check_metadata(path: Path, proto: Any) -> None:
    """The file's own metadata fits the manifest's `metadata` field (oneneuron/documents.py bounds)."""
    from oneneuron.documents import MAX_STRING

    props = list(proto.metadata_props)
    big = next((p for p in props if len(p.key) > MAX_STRING or len(p.value) > 64 * MAX_STRING), None)
    if len(props) > 256 - len(RESERVED) or big is not None:
        what = (
            f"{len(props)} entries"
            if big is None
            else f"key {big.key[:40]!r} of {len(big.value):,} characters"
        )
        raise InputError(
            f"{path}: metadata_props has {what}; the manifest records at most {256 - len(RESERVED)} "
            f"entries of at most {64 * MAX_STRING:,} characters: remove the large ones and save it again"
        )


def prepare(cfg: OnnxConfig) -> Callable[[Run], list[ArtifactEntry]]:
    """Read, check and probe in memory (nothing written); returns the writer that stores it all."""
    import onnx

    data = onnx_file.read(cfg.source)
    source_sha256 = hashlib.sha256(data).hexdigest()
    proto, sig = onnx_file.parse(cfg.source, data)
    _check_metadata(cfg.source, proto)
    session = _session(cfg.source, data)
    sizes = _sizes(cfg, sig)
    inputs = _probe_inputs(cfg, sig, sizes)
    ort_out = _run_onnxruntime(cfg, session, sig, inputs, sizes)
    outputs, reference, note = reference_outputs(cfg.source, proto, sig, inputs, ort_out)
    head = probes.Probe(inputs, outputs).head(2)
    bad = next((k for k, v in head.outputs.items() if not np.isfinite(v.astype(np.float64)).all()), None)
    if bad is not None:
        raise InputError(
            f"{cfg.source}: output {bad!r} is NaN or infinite on the probe's first rows, which are the "
            "self-test; give --probe-inputs the model gives finite outputs on"
        )
    probe = probes.Probe(inputs, outputs)
    probe_bytes = probes.to_bytes(probe)
    if len(probe_bytes) > probes.MAX_PROBE_BYTES:
        raise InputError(
            f"{cfg.source}: the probe file would be {len(probe_bytes) >> 20} MiB, more than "
            f"{probes.MAX_PROBE_BYTES >> 20} MiB; give smaller --dim sizes or --probe-inputs with fewer rows"
        )
    ours = {
        "model": cfg.name,
        "source_file": cfg.source.name,
        "source_sha256": source_sha256,
        SELFTEST_PROBE: hashlib.sha256(probe_bytes).hexdigest(),
    }
    test = selftest_json(sig, probe)
    copy = with_metadata(proto, ours | ({"selftest": test} if test is not None else {}))
    onnx_bytes = copy.SerializeToString()
    adopted = Adoption(proto.producer_name, proto.producer_version, reference, note, sizes)
    versions = {"onnx": onnx.__version__, "onnxruntime": _ort_version()}
    producer = {proto.producer_name: proto.producer_version} if proto.producer_name else {}

    def write(run: Run) -> list[ArtifactEntry]:
        probe_ref = ProbeRef(*store(run, f"{cfg.name}.probe.npz", lambda p: p.write_bytes(probe_bytes)))
        file = f"{cfg.name}.onnx"
        path, digest = store(run, file, lambda p: p.write_bytes(onnx_bytes))
        return [
            ArtifactEntry(
                name=file,
                model=cfg.name,
                format="onnx",
                framework="onnx",
                framework_versions=versions,
                path=path,
                sha256=digest,
                size=size_of(run.root.path(path)),
                signature=sig,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                producer=producer,
                opset=onnx_file.default_opset(proto),
                ir_version=proto.ir_version,
                graph=tuple(n.op_type for n in proto.graph.node),
                metadata={p.key: p.value for p in copy.metadata_props},
                source_sha256=source_sha256,
                source_file=cfg.source.name,
                probe=probe_ref,
                adopted=adopted,
            )
        ]

    return write


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
