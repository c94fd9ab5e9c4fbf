"""serve.check's rows for variants (export/optimize.py): each variant against its fp32 parent.

For every manifest entry with a `variant` block: verify its sha256, its parent's and the probe's;
the parent must still be the file the variant was made from (else: re-run export.optimize). Then
both run on the probe rows in onnxruntime (one row per call, 1 thread) and each budget figure
(export/budget.py) is compared with its limit. Where the budget was judged on the probe rows the
limit is the budget; where it was judged on `--data` (the probe rows may lie outside the data's
range, e.g. the generated rows at 1000·N(0, 1)), the limit is the looser of the budget and the
probe figure recorded when the variant was made (`RECORDED_SLACK` times it for errors), so a
variant whose computation changed since (a damaged quantization scale) fails either way.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from export import budget as budgets
from export import variant_eval, variant_methods
from export.probe import MAX_PROBE_BYTES
from export.probe import load as load_probe
from oneneuron.errors import IntegrityError, MissingArtifactError
from oneneuron.fsio import Root, sha256_file
from oneneuron.manifest import verify
from oneneuron.schema import BUDGET_METRICS, ArtifactEntry, Manifest

RECORDED_SLACK = 1.25  # a recorded error figure may grow this much (another CPU's int8 kernels)


@dataclass
class Row:
    """One budget figure of one variant on the probe rows (metric None: the variant could not be run)."""

    artifact: str
    parent: str
    ok: bool
    metric: str | None = None
    value: float | None = None
    limit: float | None = None
    rows: int = 0
    error: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fix_for(entry: ArtifactEntry) -> str:
    v = entry.variant
    flag = {"int8-dynamic": "--int8 dynamic", "int8-static": "--int8 static --calibration DATA"}.get(
        v.method, f"--{v.method}"
    )
    return f"re-run python -m export.optimize --model {v.parent} {flag}"


def check_variant(root: Root, manifest: Manifest, entry: ArtifactEntry) -> list[Row]:
    """The rows of one variant (see the module docstring)."""
    v = entry.variant
    parent = next((e for e in manifest.artifacts if e.model == v.parent and e.format == "onnx"), None)
    try:
        if parent is None or parent.sha256 != v.parent_sha256:
            raise IntegrityError(
                f"its parent {v.parent} is {'gone' if parent is None else 're-exported'} since it was "
                f"made from {v.parent_sha256[:12]}; {fix_for(entry)}"
            )
        data = root.existing(entry.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(
                f"{root.dir / entry.path}: sha256 differs from the manifest's; {fix_for(entry)}"
            )
        parent_path = verify(root, parent)
        probe_path = root.existing(entry.probe.path)
        if probe_path.stat().st_size > MAX_PROBE_BYTES or sha256_file(probe_path) != entry.probe.sha256:
            raise IntegrityError(f"{probe_path}: not the probe the manifest names; {fix_for(entry)}")
        probe = load_probe(probe_path, entry.signature)
        got = variant_eval.outputs(variant_methods.session(data), probe.inputs)
        want = variant_eval.outputs(variant_methods.session(parent_path), probe.inputs)
    except (IntegrityError, MissingArtifactError) as exc:
        return [Row(entry.name, v.parent, False, error=str(exc))]
    except Exception as exc:  # onnxruntime cannot run it: this variant's failure, not the check's
        return [Row(entry.name, v.parent, False, error=f"onnxruntime cannot run it ({str(exc)[:160]})")]
    figures = budgets.worst(budgets.measure(got, want, v.class_outputs), probe.rows)
    note = None
    ort_version = v.settings.get("onnxruntime")
    if v.method == "graph-opt" and ort_version and ort_version != _ort_version():
        note = f"written by onnxruntime {ort_version}, running {_ort_version()}: {fix_for(entry)}"
    rows = []
    for verdict in budgets.judge(limits(entry), figures):
        rows.append(
            Row(
                entry.name,
                v.parent,
                verdict.ok,
                verdict.metric,
                verdict.value,
                verdict.limit,
                probe.rows,
                note=note,
            )
        )
    return rows


def limits(entry: ArtifactEntry) -> dict[str, float]:
    """The probe-row limits of a variant: its budget, loosened to the recorded probe figures when
    the budget was judged on --data (module docstring)."""
    v = entry.variant
    if v.judged_on == "probe":
        return dict(v.budget)
    out = {}
    for metric, limit in v.budget.items():
        recorded = v.probe.get(metric)
        if recorded is None:
            out[metric] = limit
        elif BUDGET_METRICS[metric] == ">=":
            out[metric] = min(limit, recorded)
        else:
            out[metric] = max(limit, recorded * RECORDED_SLACK)
    return out


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def run_variants(root: Root, manifest: Manifest) -> list[Row]:
    """Rows for every variant in the manifest ([] without variants)."""
    return [r for e in manifest.artifacts if e.variant is not None for r in check_variant(root, manifest, e)]


def format_rows(rows: list[Row]) -> str:
    """The variants' table: one line per variant and budget figure, then the verdict line."""
    from serve.parity import verdict

    lines = [f"{'':7}{'variant':28}{'parent':16}{'figure':8}{'value':>10}{'limit':>12}{'rows':>6}"]
    for r in rows:
        mark = "[ok]  " if r.ok else "[FAIL]"
        head = f"{mark} {r.artifact:28}{r.parent:16}"
        if r.metric is None:
            lines.append(f"{head}{r.error}")
            continue
        shown = "-" if r.value is None else f"{r.value:10.4g}"
        op = BUDGET_METRICS[r.metric]
        lines.append(
            f"{head}{r.metric:8}{shown:>10}{op:>4}{r.limit:<8g}{r.rows:>6}"
            + (f"  ({r.note})" if r.note else "")
        )
    lines.append(
        "variants vs their fp32 parent on the probe rows (export/budget.py); limits: the recorded budget "
        "(judged on --data: no tighter than the figures recorded then)"
    )
    lines.append(verdict(rows, lambda r: f"{r.artifact} ({r.metric or 'run'})"))
    return "\n".join(lines)
