"""The parity proof for brought-in models (export.all --from-keras/--from-torch): part of `serve.check`.

For every manifest entry with a `probe` file: check the artifact's sha256 and the probe's, run the
probe inputs in each runtime for its format (ONNX: onnxruntime and onnx.reference; SavedModel:
TensorFlow; TorchScript and the ExportedProgram: torch) and compare every output with the source
framework's, per output and probe row: pass when |a - b| <= atol + rtol·max|b| for every element,
max|b| the largest |source output| in that row (integer and bool outputs: equal). The scale is the
row's, not the element's: a runtime that adds in another order differs by a few ulps of the
largest numbers it sums, so a small element beside large ones (a logit of 0.01 beside one of
5,900) is held to the row's scale, as Polygraphy and Optimum report differences against the
output's magnitude (issue 20). Each row reports max |a - b|, max |a - b| / max|b| (over rows with
max|b| > 0) and the minimum atol that would pass at the row's rtol, max(0, max(|a - b| -
rtol·max|b|)).

Tolerances per output: `--atol NAME=VALUE` for that output, `--atol VALUE` for every other output,
else the default for its dtype (`DEFAULTS`); the same for `--rtol`. The rule and the defaults live in
oneneuron/tolerance.py, shared with export.all --from-onnx. `--runtimes` chooses the runtimes
(`Choice`). onnx.reference is pure Python: when the whole probe would take longer than
`REFERENCE_BUDGET` seconds it runs the first rows that fit and the row says how many; a graph it
cannot run (an op it lacks, or one of its own bugs, e.g. GatherElements in onnx 1.23) is `[skip]`
with the reason, not a failure (onnxruntime's row still decides); `--strict` fails skipped rows.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from export.probe import MAX_PROBE_BYTES, Probe
from export.probe import load as load_probe
from oneneuron.errors import IntegrityError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, read_regular
from oneneuron.schema import ArtifactEntry, Manifest, TensorSpec
from oneneuron.tolerance import DEFAULTS, EXACT, compare
from serve.runtimes import RUNTIMES, VerifiedArtifact, verified

REFERENCE_BUDGET = 20.0  # seconds onnx.reference may spend on one artifact's probe
REFERENCE = "onnx.reference"  # the runtime whose failures are skips (unless strict)


@dataclass(frozen=True)
class Choice:
    """Which runtimes run (`--runtimes`; None: all) and whether a skipped row fails (`--strict`)."""

    runtimes: frozenset[str] | None = None
    strict: bool = False

    def runs(self, runtime: str) -> bool:
        return self.runtimes is None or runtime in self.runtimes


def runtime_names() -> list[str]:
    """Every runtime name a check can run (serve/runtimes.py), for `--runtimes` and its error."""
    return sorted({name for table in RUNTIMES.values() for name, _ in table})


def runtimes_arg(text: str) -> frozenset[str]:
    """`--runtimes onnxruntime,onnx.reference`: names from `runtime_names()`."""
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(runtime_names()))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r}: unknown runtime {', '.join(unknown) or '(none given)'}; expected a "
            f"comma-separated list of {', '.join(runtime_names())}, e.g. onnxruntime,torch"
        )
    return names


@dataclass(frozen=True)
class Tolerances:
    """`--atol` / `--rtol` as given: a value for every output and/or values per output name."""

    atol: float | None = None
    rtol: float | None = None
    atol_by_output: Mapping[str, float] = field(default_factory=dict)
    rtol_by_output: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_flags(cls, atol: list | None, rtol: list | None) -> Tolerances:
        """From `tolerance_arg` pairs (name or None, value); the last value given for a name wins."""

        def split(pairs):
            pairs = pairs or []
            return next((v for n, v in reversed(pairs) if n is None), None), {n: v for n, v in pairs if n}

        (a, a_by), (r, r_by) = split(atol), split(rtol)
        return cls(a, r, a_by, r_by)

    def for_output(self, spec: TensorSpec) -> tuple[float, float]:
        if spec.dtype not in DEFAULTS:
            return EXACT
        atol, rtol = DEFAULTS[spec.dtype]
        atol = self.atol_by_output.get(spec.name, self.atol if self.atol is not None else atol)
        rtol = self.rtol_by_output.get(spec.name, self.rtol if self.rtol is not None else rtol)
        return atol, rtol


def tolerance_arg(text: str) -> tuple[str | None, float]:
    """`VALUE` (every output) or `NAME=VALUE` (one output): a finite number >= 0."""
    name, sep, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number < math.inf or (sep and not name):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a finite number >= 0, or OUTPUT=NUMBER for one output, e.g. 1e-5 or y=1e-4"
        )
    return (name or None), number


@dataclass
class Row:
    """One output of one artifact in one runtime (output None: the runtime could not run it)."""

    artifact: str
    runtime: str
    output: str | None
    ok: bool
    rows: int = 0  # probe rows compared
    max_abs: float | None = None
    max_rel: float | None = None  # |a - b| / max|b| of its probe row (rows with max|b| > 0)
    min_atol: float | None = None  # the smallest atol that passes at `rtol`
    atol: float | None = None
    rtol: float | None = None
    note: str | None = None  # e.g. onnx.reference ran a subset, or could not run an op (skipped)
    skipped: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def check_entry(root: Root, entry: ArtifactEntry, tol: Tolerances, choice: Choice = Choice()) -> list[Row]:
    """Verify `entry` and its probe, then one row per chosen runtime and output."""
    runtimes = [(name, f) for name, f in RUNTIMES[entry.format] if choice.runs(name)]
    if not runtimes:
        return []
    verified_artifact = contextlib.ExitStack()
    try:  # each file read (or privately copied) once and hashed: those bytes are what runs
        artifact = verified_artifact.enter_context(verified(root, entry))
        probe_path = root.existing(entry.probe.path)
        probe_bytes = read_regular(probe_path, MAX_PROBE_BYTES, fix("export", root.dir))
        if hashlib.sha256(probe_bytes).hexdigest() != entry.probe.sha256:
            raise IntegrityError(
                f"{probe_path}: sha256 differs from the manifest's; the probe was changed after export; "
                f"{fix('export', root.dir)}"
            )
        probe = load_probe(probe_path, entry.signature, probe_bytes)
    except IntegrityError as exc:
        verified_artifact.close()
        return [Row(entry.name, rt, None, False, error=str(exc)) for rt, _ in runtimes]
    with verified_artifact:
        return _runtime_rows(entry, tol, (artifact, probe), (runtimes, choice))


@dataclass(frozen=True)
class Ran:
    """What one runtime computed on the feeds: outputs per batch, or why not."""

    runtime: str
    outputs: list[dict[str, np.ndarray]] | None  # per batch of feeds; None: an error, or skipped
    rows: int = 0  # rows of the first batch that ran (onnx.reference: those within its budget)
    note: str | None = None  # onnx.reference ran a subset, or was skipped, and why
    error: str | None = None  # "ExceptionType: message": the runtime could not run the artifact
    skipped: bool = False  # onnx.reference could not run it, or not within budget: ok unless strict


def run_each(artifact: VerifiedArtifact, names: list[str], runtimes: list, batches: list, choice: Choice):
    """The one sequence every check row comes from: load the verified artifact in each runtime and run
    each batch of feeds (the first within onnx.reference's budget). A runtime's failure is its own
    `Ran`, not the check's: onnx.reference's a skip (its limits, not the conversion's; `--strict`
    fails it), any other's an error."""
    for runtime, factory in runtimes:
        try:
            run = factory(artifact, names)
            first, note = batches[0], None
            if runtime == REFERENCE:
                first, note = _within_budget(run, first)
            if not first:
                yield Ran(runtime, None, note=note, skipped=True)
                continue
            outputs = [run(first), *(run(b) for b in batches[1:])]
        except Exception as exc:  # any runtime failure is this row's, not the check's
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            if runtime == REFERENCE:
                why = f"cannot run it ({text})" + ("; --strict fails it" if choice.strict else "")
                yield Ran(runtime, None, note=why, skipped=True)
            else:
                yield Ran(runtime, None, error=text)
            continue
        yield Ran(runtime, outputs, len(next(iter(first.values()))), note)


def _runtime_rows(
    entry: ArtifactEntry,
    tol: Tolerances,
    inputs: tuple[VerifiedArtifact, Probe],
    chosen: tuple[list, Choice],
) -> list[Row]:
    """Rows per chosen runtime and output of `entry`'s format, each loading the verified artifact."""
    (artifact, probe), (runtimes, choice) = inputs, chosen
    names = [s.name for s in entry.signature.outputs]
    rows = []
    for ran in run_each(artifact, names, runtimes, [dict(probe.inputs)], choice):
        runtime, n, note = ran.runtime, ran.rows, ran.note
        if ran.outputs is None:
            if ran.skipped:
                rows.append(Row(entry.name, runtime, None, not choice.strict, note=note, skipped=True))
            else:
                error = f"{artifact.path}: {runtime} cannot run it ({ran.error})"
                rows.append(Row(entry.name, runtime, None, False, error=error))
            continue
        got = ran.outputs[0]
        for spec in entry.signature.outputs:
            atol, rtol = tol.for_output(spec)
            expected, actual = probe.outputs[spec.name][:n], np.asarray(got.get(spec.name))
            if actual.shape != expected.shape:
                rows.append(
                    Row(
                        entry.name,
                        runtime,
                        spec.name,
                        False,
                        n,
                        atol=atol,
                        rtol=rtol,
                        error=f"shape {actual.shape}, the source's is {expected.shape}",
                    )  # fmt: skip
                )
                continue
            max_abs, max_rel, min_atol = compare(actual, expected, atol, rtol)
            rows.append(
                Row(
                    entry.name,
                    runtime,
                    spec.name,
                    min_atol <= atol,
                    n,
                    max_abs,
                    max_rel,
                    min_atol,
                    atol,
                    rtol,
                    note,
                )
            )
    return rows


def _within_budget(run, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str | None]:
    """The probe rows onnx.reference can run within REFERENCE_BUDGET (timed on one row)."""
    total = len(next(iter(feeds.values())))
    start = time.perf_counter()
    run({k: v[:1] for k, v in feeds.items()})
    per_row = max(time.perf_counter() - start, 1e-6)
    fit = int(REFERENCE_BUDGET / per_row)
    if fit >= total:
        return feeds, None
    if fit < 1:
        return {}, f"skipped: one row took {per_row:.1f} s, over the {REFERENCE_BUDGET:g} s budget"
    return (
        {k: v[:fit] for k, v in feeds.items()},
        f"first {fit} of {total} rows: all would take ~{per_row * total:.0f} s "
        f"(budget {REFERENCE_BUDGET:g} s)",
    )


def run_parity(root: Root, manifest: Manifest, tol: Tolerances, choice: Choice = Choice()) -> list[Row]:
    """Rows for every entry with a probe file (the article's entries, compared on the manifest's probe
    rows by the same `run_each` and `compare`, are serve/check.py's table; variants, compared with
    their parent rather than the source, serve/variants.py's)."""
    return [
        row
        for e in manifest.artifacts
        if e.probe is not None and e.variant is None
        for row in check_entry(root, e, tol, choice)
    ]


def format_rows(rows: list[Row]) -> str:
    """The table a person reads: one line per artifact, runtime and output."""
    head = f"{'':7}{'artifact':28}{'runtime':16}{'output':14}{'max|Δ|':>10}{'max rel':>10}{'min atol':>10}"
    lines = [head + f"{'atol':>9}{'rtol':>9}"]
    for r in rows:
        mark = "[skip]" if r.skipped else "[ok]  " if r.ok else "[FAIL]"
        what = f"{mark} {r.artifact:28}{r.runtime:16}"
        if r.error or r.output is None:
            lines.append(f"{what}{r.error or r.note}")
            continue
        figures = f"{r.max_abs:10.2e}{r.max_rel:10.2e}{r.min_atol:10.2e}" if r.max_abs is not None else ""
        line = f"{what}{r.output:14}{figures:30}{r.atol:9.0e}{r.rtol:9.0e}"
        lines.append(line + (f"  {r.error}" if r.error else "") + (f"  ({r.note})" if r.note else ""))
    lines.append(
        "pass: |a - b| <= atol + rtol·max|b| for every element of each probe row, max|b| the row's "
        "largest source output (int and bool outputs: equal); max rel: |a - b| / max|b|; "
        "min atol: the smallest atol that passes at that rtol"
    )
    lines.append(verdict(rows, lambda r: f"{r.artifact} ({r.runtime}{', ' + r.output if r.output else ''})"))
    return "\n".join(lines)


def verdict(rows: list, label: Callable[[Any], str]) -> str:
    """A check table's last line: all passed, or how many failed and which (each `label(row)`)."""
    failed = [r for r in rows if not r.ok]
    if not failed:
        return f"all {len(rows)} checks passed"
    return f"{len(failed)} of {len(rows)} checks FAILED: " + ", ".join(label(r) for r in failed)
