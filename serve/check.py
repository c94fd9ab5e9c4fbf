"""Check every exported artifact: `python -m serve.check [--artifacts DIR] [--json]`.

For each manifest entry: verify its sha256, run it in every runtime for its format (ONNX in
onnxruntime and in onnx.reference; SavedModel in TensorFlow; TorchScript in torch) on the
probe batch, and compare with (a) the same model in its source framework, recorded at
export, and (b) the least-squares reference at x = 10 (linear models only: an MLP's distance
from least squares is reported, not bounded); also report (c) the largest distance from least
squares over the probe batch. The headline bound (b) is --analytic-tol times the manifest's
`probe.headline_tolerance_scale`: max(1, std of the training target) for a CSV, 1 for the
article's data. A Triton repository in ARTIFACTS/triton gets a row too: current, or which models
are stale and the command that refreshes them (export/triton_state.py). Models brought in with
export.all --from-keras / --from-torch are compared with their probe file, per output
(serve/parity.py). Every row, the article's included, comes from one sequence (parity.run_each
over serve/runtimes.py's one table) and one rule (oneneuron/tolerance.py `compare`, with the
article's scale `magnitudes`); this module formats the article's table. `--runtimes
onnxruntime,torch` runs only those runtimes; `--strict` fails a runtime that cannot run a model
(onnx.reference's rows are `[skip]` otherwise). `--min-generation N` refuses an older manifest (a
rolled-back directory) before anything runs. Exit 0 all pass,
1 any fails, 2 usage error or missing artifacts.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.triton_state import triton_state
from oneneuron import cli
from oneneuron.errors import InputError, IntegrityError, MissingArtifactError, RollbackError
from oneneuron.fixes import fix
from oneneuron.fsio import Root
from oneneuron.manifest import require_generation
from oneneuron.schema import MANIFEST, ArtifactEntry, Manifest
from oneneuron.tolerance import compare
from serve import parity, variants
from serve.runtimes import RUNTIMES, VerifiedArtifact, verified


@dataclass(frozen=True)
class Tolerances:
    """Pass/fail bounds; defaults from README "The check"."""

    atol: float = 1e-5  # same model across formats/runtimes: |a - b| <= atol + rtol * magnitude
    rtol: float = 1e-6  # magnitude = |b| + sum_i |x_i w_i| (see `magnitudes`)
    analytic: float = 0.05  # |y(10) - least squares| at the headline point, times the manifest's scale


def analytic_bound(manifest: Manifest, tol: Tolerances) -> float:
    """The headline bound: `tol.analytic` times the manifest's `probe.headline_tolerance_scale`
    (max(1, std of the training target) for a CSV; 1 for the article's data, so its bound is 0.05)."""
    return tol.analytic * manifest.probe.headline_tolerance_scale


@dataclass
class Row:
    """One artifact in one runtime."""

    artifact: str
    runtime: str
    ok: bool
    headline_y: float | None = None
    max_diff_source: float | None = None  # over the probe batch
    worst_excess: float | None = None  # minimum passing atol - atol over the probe; <= 0 passes
    diff_analytic: float | None = None
    max_diff_reference: float | None = None  # max |prediction - least squares| over the probe batch
    error: str | None = None
    note: str | None = None  # a row that is a sentence, not numbers (the Triton repository)
    architecture: str = "linear"  # "mlp:16,16 relu": diff_analytic is reported, not bounded
    skipped: bool = False  # onnx.reference could not run it: [skip], ok unless --strict


def is_linear(entry: ArtifactEntry) -> bool:
    """The article's y = x @ w + b (least squares is its analytic answer), not an MLP."""
    return entry.architecture is None or entry.architecture.is_linear


def magnitudes(
    manifest: Manifest, probe: np.ndarray, source: np.ndarray, linear: bool = True, magnitude=()
) -> np.ndarray:
    """Per probe row, the size of the numbers a runtime adds up: |y| + sum_i |x_i w_i| + |b|.

    With n > 1 features, x @ w sums terms that can cancel (1523 - 2000 + 500 = 23 at x = 1000),
    and runtimes that add in a different order differ by a few float32 ulps of the largest
    term, not of the result. w and b are the least-squares reference, which the models approach.
    With one feature nothing cancels and the bound is the documented |b| alone. An MLP's sums
    can cancel in every layer: its bound adds the exporter's `source_probe_magnitude` (the same
    network with |weights| on |x|, train/mlp.py `magnitude`), or is |b| alone without it.
    """
    weights = np.abs(np.asarray(manifest.reference.weights, dtype=np.float64))
    if not linear:
        return np.abs(source) + np.asarray(magnitude or np.zeros_like(source), dtype=np.float64)
    if len(weights) == 1:
        return np.abs(source)
    terms = np.abs(probe.astype(np.float64)) @ weights + abs(manifest.reference.bias)
    return np.abs(source) + terms


def check_artifact(
    root: Root,
    manifest: Manifest,
    entry: ArtifactEntry,
    tol: Tolerances,
    choice: parity.Choice = parity.Choice(),
) -> list[Row]:
    """Verify one artifact's hash, then compare its predictions in each of its (chosen) runtimes."""
    runtimes = [(name, f) for name, f in RUNTIMES[entry.format] if choice.runs(name)]
    described = entry.architecture.describe() if entry.architecture else "linear"
    verified_artifact = contextlib.ExitStack()
    try:  # read (or privately copied) once and hashed: the runtimes load these bytes, never the path
        artifact = verified_artifact.enter_context(verified(root, entry))
    except IntegrityError as exc:
        return [Row(entry.name, rt, False, error=str(exc), architecture=described) for rt, _ in runtimes]
    with verified_artifact:
        return _runtime_rows(root, manifest, entry, tol, (artifact, runtimes, choice))


def _runtime_rows(
    root: Root,
    manifest: Manifest,
    entry: ArtifactEntry,
    tol: Tolerances,
    run_with: tuple[VerifiedArtifact, list, parity.Choice],
) -> list[Row]:
    """One row per chosen runtime of `entry`'s format: the probe rows and the headline point run by
    parity's `run_each` (every model's sequence), compared by the one tolerance rule (`compare`) with
    the article's scale (`magnitudes`), and against the analytic answer."""
    artifact, runtimes, choice = run_with
    path = artifact.path
    described = entry.architecture.describe() if entry.architecture else "linear"
    if not entry.source_probe_y:
        return [
            Row(
                entry.name,
                rt,
                False,
                error=f"{root.dir / entry.path}: the manifest records no probe "
                "rows and source outputs for it, so there is nothing to compare; export it with "
                f"python -m export.all from a training run",
                architecture=described,
            )
            for rt, _ in runtimes
        ]
    probe = np.asarray(manifest.probe.x, dtype=np.float32)
    source = np.asarray(entry.source_probe_y, dtype=np.float64)
    headline = np.asarray([manifest.probe.headline_x], dtype=np.float32)
    reference = manifest.probe.headline_reference_y
    reference_y = np.asarray(manifest.probe.reference_y, dtype=np.float64)
    linear = is_linear(entry)
    scale = magnitudes(manifest, probe, source, linear, entry.source_probe_magnitude)
    (x,), (y,) = [s.name for s in entry.signature.inputs], [s.name for s in entry.signature.outputs]
    rows = []
    for ran in parity.run_each(artifact, [y], runtimes, [{x: probe}, {x: headline}], choice):
        name = ran.runtime
        if ran.outputs is None:
            error = (
                None
                if ran.skipped
                else f"{path}: {name} cannot run it ({ran.error}); {fix('export', root.dir)}"
            )
            ok = ran.skipped and not choice.strict
            rows.append(
                Row(
                    entry.name,
                    name,
                    ok,
                    error=error,
                    note=ran.note,
                    skipped=ran.skipped,
                    architecture=described,
                )
            )
            continue
        out, out10 = (np.asarray(o[y], dtype=np.float64) for o in ran.outputs)
        if out.shape != (len(source), 1) or out10.shape != (1, 1) or ran.rows != len(source):
            rows.append(
                Row(
                    entry.name,
                    name,
                    False,
                    error=f"{path}: {name} returned shape {out.shape} for "
                    f"{len(source)} probe rows; {fix('export', root.dir)}",
                    architecture=described,
                )
            )
            continue
        y_probe, y10 = out[:, 0], float(out10[0, 0])
        max_diff, _, min_atol = compare(y_probe, source, tol.atol, tol.rtol, scale)
        analytic = abs(y10 - reference)
        ok = bool(
            min_atol <= tol.atol
            and (analytic <= analytic_bound(manifest, tol) or not linear)
            and math.isfinite(y10)
        )
        vs_reference = float(np.max(np.abs(y_probe - reference_y)))  # reported, not a pass/fail bound
        rows.append(
            Row(
                entry.name,
                name,
                ok,
                y10,
                max_diff,
                min_atol - tol.atol,
                analytic,
                vs_reference,
                architecture=described,
            )
        )
    return rows


def run_check(
    artifacts: Path,
    tol: Tolerances = Tolerances(),
    choice: parity.Choice = parity.Choice(),
    manifest: Manifest | None = None,
) -> tuple[list[Row], Manifest]:
    """Check every artifact in the manifest (in `choice`'s runtimes; `manifest`: the one a signature
    verified; default: read it); returns the rows and the manifest."""
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise MissingArtifactError(
            f"{artifacts}: no such directory; {fix('train', artifacts)} and {fix('export', artifacts)}"
        )
    manifest = manifest if manifest is not None else Manifest.load(artifacts)
    if manifest.probe is None and not any(e.probe for e in manifest.artifacts):
        raise InputError(
            f"{artifacts}/manifest.json records no training run (no probe rows, no source "
            f"outputs) to check its models against; {fix('export', artifacts)} from a training run"
        )
    if not manifest.artifacts:
        raise MissingArtifactError(
            f"{artifacts}/manifest.json lists no artifacts; {fix('export', artifacts)}"
        )
    root = Root(artifacts)
    for entry in manifest.artifacts:  # a missing input is exit 2, like every other command
        if not (root.dir / entry.path).exists():
            root.existing(entry.path)
    article = [e for e in manifest.artifacts if e.probe is None]  # brought-in models: serve/parity.py
    rows = [row for entry in article for row in check_artifact(root, manifest, entry, tol, choice)]
    triton = triton_state(artifacts, manifest)  # ARTIFACTS/triton, if there is one
    if triton is not None:
        text = triton.line()
        rows.append(
            Row(
                "triton/",
                "Triton",
                triton.ok,
                error=None if triton.ok else text,
                note=text if triton.ok else None,
            )
        )
    return rows, manifest


def format_rows(rows: list[Row], manifest: Manifest, tol: Tolerances) -> str:
    """The checklist a person reads: one line per artifact and runtime."""
    ref = manifest.probe.headline_reference_y
    n_probe = len(manifest.probe.x)
    lines = [
        f"{'':7}{'artifact':30}{'runtime':16}{'y(10)':>12}{'max|Δ source|':>15}{f'|y(10)-{ref:g}|':>16}"
        f"{'max|Δ lstsq|':>14}"
    ]
    for r in rows:
        mark = "[skip]" if r.skipped else "[ok]  " if r.ok else "[FAIL]"
        if r.error or r.note:
            lines.append(f"{mark} {r.artifact:30}{r.runtime:16}{r.error or r.note}")
            continue
        analytic = f"{r.diff_analytic:16.6f}" if r.architecture == "linear" else f"{r.diff_analytic:15.6f}*"
        lines.append(
            f"{mark} {r.artifact:30}{r.runtime:16}{r.headline_y:12.6f}"
            f"{r.max_diff_source:15.2e}{analytic}{r.max_diff_reference:14.3g}"
        )
    magnitude = "|b|" if len(manifest.reference.weights) == 1 else "(|b| + Σ|x·w| + |bias|)"
    scale = manifest.probe.headline_tolerance_scale
    headline = f"{tol.analytic:g}"
    if manifest.data.source != "article":  # relative to the target's scale (README "The check")
        headline += (
            f"·max(1, std(y train)) = {tol.analytic:g}·{scale:.6g} = {analytic_bound(manifest, tol):.6g}"
        )
    models = {r.artifact.split(".")[0] for r in rows if not r.note}
    nonlinear = sorted(
        {f"{r.artifact.split('.')[0]} ({r.architecture})" for r in rows if r.architecture != "linear"}
    )
    mlp_bound = f"{tol.atol:g} + {tol.rtol:g}·(|b| + m), m: the network with |weights| applied to |x|"
    if len(nonlinear) == len(models):  # no linear model
        lines.append(f"tolerances: same model |a - b| <= {mlp_bound}, over {n_probe} probe rows")
    else:
        lines.append(
            f"tolerances: same model |a - b| <= {tol.atol:g} + {tol.rtol:g}·{magnitude} over "
            f"{n_probe} probe rows; |y(10) - {ref:g}| <= {headline}"
        )
    if nonlinear:
        lines.append(
            f"* {', '.join(nonlinear)}: not linear, so |y(10) - {ref:g}| is reported, not bounded"
            + ("" if len(nonlinear) == len(models) else f"; |a - b| <= {mlp_bound}")
        )
    lines.append(
        "max|Δ lstsq|: largest |prediction - least squares| over the probe rows (reported, not bounded)"
    )
    lines.append(parity.verdict(rows, lambda r: f"{r.artifact} ({r.runtime})"))
    return "\n".join(lines)


def main() -> None:
    p = cli.parser(
        "Check every exported artifact against its source model and the analytic answer.",
        "python -m serve.check --artifacts artifacts --json",
        command="serve.check",
    )
    cli.artifacts_arg(p, writes=False)
    d = Tolerances()
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.add_argument(
        "--atol",
        action="append",
        type=parity.tolerance_arg,
        metavar="[OUTPUT=]VALUE",
        help=f"absolute tolerance, same model (default {d.atol:g}); OUTPUT=VALUE for one output of a "
        "brought-in model, whose defaults go by dtype (README 'Your own model'); repeatable",
    )
    p.add_argument(
        "--rtol",
        action="append",
        type=parity.tolerance_arg,
        metavar="[OUTPUT=]VALUE",
        help=f"relative tolerance, same model (default {d.rtol:g}); OUTPUT=VALUE as for --atol",
    )
    p.add_argument(
        "--analytic-tol",
        type=cli.positive_float,
        default=d.analytic,
        help="|y(10) - least squares| bound; for a CSV times max(1, std of the training target)",
    )
    p.add_argument(
        "--trust-key", type=Path, metavar="PEM", help="public key: verify model.sig first (a signature row)"
    )
    p.add_argument(
        "--runtimes",
        type=parity.runtimes_arg,
        metavar="NAME,...",
        help=f"run only these runtimes (default: all of {', '.join(parity.runtime_names())})",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a runtime that cannot run a model (onnx.reference: [skip] by default) fails the check",
    )
    cli.min_generation_arg(p, "a [FAIL] row, nothing runs, exit 1")

    def _main(args) -> int:
        by_output = parity.Tolerances.from_flags(args.atol, args.rtol)
        tol = Tolerances(
            d.atol if by_output.atol is None else by_output.atol,
            d.rtol if by_output.rtol is None else by_output.rtol,
            args.analytic_tol,
        )
        choice = parity.Choice(args.runtimes, args.strict)
        return report(
            args.artifacts,
            tol,
            as_json=args.json,
            trust_key=args.trust_key,
            by_output=by_output,
            choice=choice,
            min_generation=args.min_generation,
        )

    cli.run(_main, p.parse_args())


def report(
    artifacts: Path,
    tol: Tolerances = Tolerances(),
    as_json: bool = False,
    trust_key: Path | None = None,
    by_output: parity.Tolerances = parity.Tolerances(),
    choice: parity.Choice = parity.Choice(),
    min_generation: int | None = None,
) -> int:
    """Run the check, print the table (or JSON) and return the exit code: 0 all pass, 1 any fails.
    With `trust_key`, the signature is verified first (serve/signature.py); if it fails, nothing runs.
    With `min_generation`, so is the manifest's generation (the signed one's, with a key)."""
    signature, signed = signature_first(artifacts, trust_key, as_json)
    if signature is not None and not signature.ok:
        return IntegrityError.exit_code
    floor = generation_first(artifacts, min_generation, signature, as_json)
    if floor is not None and not floor.ok:
        return IntegrityError.exit_code
    rows, manifest = run_check(artifacts, tol, choice, signed)  # with a key: checked against the signed one
    if signature is None:
        from serve.signature import unverified

        signature = unverified(manifest)
    brought = parity.run_parity(Root(artifacts), manifest, by_output, choice)  # [] without brought-in models
    varied = variants.run_variants(Root(artifacts), manifest)  # [] without variants (export.optimize)
    ok = all(r.ok for r in rows) and all(r.ok for r in brought) and all(r.ok for r in varied)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "tolerances": asdict(tol)
                    | {
                        "analytic_scale": manifest.probe.headline_tolerance_scale if manifest.probe else None,
                        "analytic_bound": analytic_bound(manifest, tol) if manifest.probe else None,
                    },
                    "rows": [asdict(r) for r in rows],
                    **({"parity": [r.to_json() for r in brought]} if brought else {}),
                    **({"variants": [r.to_json() for r in varied]} if varied else {}),
                    **({"signature": signature.to_json()} if signature else {}),
                    **({"generation": asdict(floor)} if floor else {}),
                },
                indent=2,
            )
        )
    else:
        tables = [format_rows(rows, manifest, tol)] if rows else []
        tables += [parity.format_rows(brought)] if brought else []
        tables += [variants.format_rows(varied)] if varied else []
        first = [row.line() for row in (signature, floor) if row is not None]
        print("\n".join(first + tables))
    return 0 if ok else IntegrityError.exit_code


def signature_first(artifacts: Path, trust_key: Path | None, as_json: bool):
    """The signature row (None without a key) and the manifest it verified (None: no key, or
    refused); a failed row is printed here, since nothing else runs."""
    if trust_key is None:
        return None, None
    from serve.signature import check_signature

    signature, signed = check_signature(Path(artifacts), trust_key)
    if not signature.ok:
        print(
            json.dumps({"ok": False, "signature": signature.to_json()}, indent=2)
            if as_json
            else signature.line()
        )
    return signature, signed


@dataclass(frozen=True)
class GenerationRow:
    """The --min-generation row: the manifest's generation against the floor."""

    ok: bool
    generation: int
    floor: int
    error: str | None = None

    def line(self) -> str:
        what = self.error or f"generation {self.generation} >= the floor {self.floor} (--min-generation)"
        return f"{'[ok]  ' if self.ok else '[FAIL]'} {MANIFEST:30}{'generation':16}{what}"


def generation_first(artifacts: Path, floor: int | None, signature, as_json: bool) -> GenerationRow | None:
    """The generation row (None without a floor): with a trust key, the generation of the manifest
    whose signature verified, never a re-read; a failed row is printed here, since nothing else runs."""
    if floor is None:
        return None
    if signature is not None and signature.verified:
        generation = signature.generation
    else:
        generation = Manifest.load(Path(artifacts)).generation
    try:
        require_generation(Path(artifacts) / MANIFEST, generation, floor)
    except RollbackError as exc:
        row = GenerationRow(False, generation, floor, str(exc))
        if as_json:
            out = {"ok": False} | ({"signature": signature.to_json()} if signature else {})
            print(json.dumps(out | {"generation": asdict(row)}, indent=2))
        else:  # the checklist so far: the signature row, if any, then this one
            print("\n".join(r.line() for r in (signature, row) if r is not None))
        return row
    return GenerationRow(True, generation, floor)


if __name__ == "__main__":
    main()
