"""python -m export.optimize --model N (--int8 dynamic | --int8 static --calibration DATA | --fp16 |
--graph-opt | --auto) [--budget top1>=0.99,rel<=0.05] [--data VAL.npz]: a smaller or faster variant,
committed only when it is proven within an accuracy budget against its fp32 parent.

The variant (export/variant_methods.py makes it) is a model of its own, `N.int8`, `N.fp16` or
`N.opt`, beside its parent in the manifest: a new entry whose `variant` block records the parent's
sha256, the method and its settings, the budget and the figures measured (oneneuron/schema.py
`Variant`). A dotted name can never be a model's own name (export.all --name takes no dots), so the
server, the loader (`load("N.int8")`), Triton and Node serve it as one more model, unchanged.

The proof (export/budget.py): variant and parent run on the parent's probe rows and on `--data VAL`
when given, one row per call; per output max |Δ| and relative error, top-1 agreement and top-k
overlap for class-score outputs. The budget is judged on `--data` when given (your data), else on
the probe rows. Over budget: nothing is written, exit 1, and the table says which limit failed and
by how much. Within: the variant is committed like an export (stored version, alias and manifest in
one transaction; with --sign-key signed in the same commit), exit 0. `python -m serve.check`
re-measures every variant against its parent on the probe rows (serve/variants.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export import budget as budgets
from export import variant_eval, variant_methods
from export._core import Run, export_formats, store
from export.byom import MAX_SELFTEST_CHARS, SELFTEST_PROBE
from export.probe import MAX_PROBE_BYTES, Probe
from export.probe import load as load_probe
from oneneuron import cli
from oneneuron.errors import InputError, IntegrityError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, sha256_file
from oneneuron.manifest import Seal
from oneneuron.schema import ArtifactEntry, Manifest, Variant

logger = logging.getLogger(__name__)
FLAGS = {"dynamic": "int8-dynamic", "static": "int8-static"}  # --int8 KIND -> method
SELFTEST_ROWS, SELFTEST_TOL = 2, 1e-3  # the variant's embedded self-test: its own outputs
SELFTEST_PROBE_OUTPUTS = "selftest_probe_outputs"  # its outputs on probe rows too large to embed


@dataclass(frozen=True)
class OptimizeConfig:
    """One `python -m export.optimize` run."""

    artifacts: Path
    model: str  # the parent's model name (a brought-in model: export.all --from-keras/--from-torch)
    methods: tuple[str, ...]  # what to try (one, or with --auto every one that applies)
    budget: Mapping[str, float] = field(default_factory=lambda: budgets.parse_budget(budgets.DEFAULT_BUDGET))
    calibration: Path | None = None  # rows for int8-static
    calibration_rows: int = 256
    data: Path | None = None  # validation rows: the budget is judged on them when given
    data_rows: int = 1000
    class_outputs: tuple[str, ...] = ()  # override the class-score rule (export/budget.py)
    latency_seconds: float = 0.5  # per measurement (model and batch size)


@dataclass
class Trial:
    """One method tried: its bytes, figures and whether it was kept (committed) and why (not)."""

    method: str
    name: str  # the variant's model name, N.int8
    data: bytes | None = None
    settings: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)  # "probe"/"data" -> list[OutputFigures]
    worst: dict = field(default_factory=dict)  # "probe"/"data" -> budget figures
    verdicts: list = field(default_factory=list)  # budget.Verdict on the judged set
    performance: dict = field(default_factory=dict)
    error: str | None = None
    kept: bool = False
    why: str = ""

    @property
    def within(self) -> bool:
        return self.error is None and all(v.ok for v in self.verdicts)

    @property
    def speed(self) -> float:
        """The mean latency ratio to the parent over batch 1 and 8 (< 1: faster)."""
        p = self.performance
        return (p["ms_b1"] / p["parent_ms_b1"] + p["ms_b8"] / p["parent_ms_b8"]) / 2


@dataclass
class Outcome:
    """What `optimize` did: the parent, every trial, the judged set and the committed entry (if any)."""

    parent: ArtifactEntry
    trials: list[Trial]
    judged_on: str
    rows: dict[str, int]
    entry: ArtifactEntry | None = None
    parent_outputs: dict = field(default_factory=dict)  # "probe"/"data" -> the parent's outputs


def find_parent(root: Root, model: str) -> tuple[Manifest, ArtifactEntry]:
    """The model's ONNX entry: a brought-in model (it has a probe file) that is not itself a variant."""
    manifest = Manifest.load(root.dir)
    parent = next((e for e in manifest.artifacts if e.model == model and e.format == "onnx"), None)
    if parent is None:
        known = sorted(e.model for e in manifest.entries("onnx") if e.variant is None)
        raise InputError(f"--model {model!r}: no ONNX model of that name in {root.dir}; known: {known}")
    if parent.variant is not None:
        raise InputError(f"--model {model}: a variant of {parent.variant.parent}; optimize the parent")
    if parent.probe is None:
        raise InputError(
            f"--model {model}: no probe file to prove a variant on (the article's models have none); "
            "bring a model in with python -m export.all --from-keras FILE or --from-torch FILE --name N"
        )
    return manifest, parent


def read_parent(root: Root, parent: ArtifactEntry) -> tuple[bytes, Probe]:
    """The parent's ONNX bytes and probe, each checked against the manifest's sha256."""
    data = root.existing(parent.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != parent.sha256:
        raise IntegrityError(
            f"{root.dir / parent.path}: sha256 differs from the manifest's; {fix('export', root.dir)}"
        )
    probe_path = root.existing(parent.probe.path)
    if probe_path.stat().st_size > MAX_PROBE_BYTES or sha256_file(probe_path) != parent.probe.sha256:
        raise IntegrityError(f"{probe_path}: not the probe the manifest names; {fix('export', root.dir)}")
    return data, load_probe(probe_path, parent.signature)


def with_metadata(data: bytes, parent: ArtifactEntry, name: str, method: str, probe: Probe) -> bytes:
    """The variant's bytes with its own metadata: its name, its parent, and a self-test of its own
    outputs on the probe's first rows (the parent's self-test holds the parent's outputs). Rows too
    large to embed (an image at 224 px) stay in the probe file, which `selftest_probe` names as the
    parent's does; the variant embeds only its outputs on them (`selftest_probe_outputs`)."""
    import onnx

    proto = onnx.load_from_string(data)
    head = probe.head(SELFTEST_ROWS)
    got = variant_methods.session(data).run(None, dict(head.inputs))
    names = [o.name for o in proto.graph.output]
    outputs = {n: np.asarray(g).tolist() for n, g in zip(names, got, strict=True)}
    tolerance = {"atol": SELFTEST_TOL, "rtol": SELFTEST_TOL}
    props = {k: v for k, v in parent.metadata.items() if k not in ("selftest", SELFTEST_PROBE)}
    props |= {"model": name, "variant_of": parent.model, "variant_method": method}
    inputs = {k: v.tolist() for k, v in head.inputs.items()}
    embedded = _json({"inputs": inputs, "outputs": outputs} | tolerance)
    if len(embedded) <= MAX_SELFTEST_CHARS:
        props["selftest"] = embedded
    else:
        props[SELFTEST_PROBE] = parent.probe.sha256
        props[SELFTEST_PROBE_OUTPUTS] = _json({"outputs": outputs} | tolerance)
        if len(props[SELFTEST_PROBE_OUTPUTS]) > MAX_SELFTEST_CHARS:
            raise InputError(
                f"--model {parent.model}: its outputs on {SELFTEST_ROWS} probe rows are more than "
                f"{MAX_SELFTEST_CHARS:,} characters of JSON; a variant's self-test cannot hold them"
            )
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


def _json(doc: dict) -> str:
    return json.dumps(doc, allow_nan=False, separators=(",", ":"))


def try_method(method: str, cfg: OptimizeConfig, ctx: dict) -> Trial:
    """Make one variant and measure it against the parent (nothing written)."""
    parent: ArtifactEntry = ctx["parent"]
    trial = Trial(method, f"{parent.model}.{variant_methods.KIND[method]}")
    try:
        raw, trial.settings = variant_methods.make(method, ctx["parent_bytes"], ctx.get("calibration"))
        trial.data = with_metadata(raw, parent, trial.name, method, ctx["probe"])
        session = variant_methods.session(trial.data)
    except Exception as exc:  # a method onnxruntime cannot apply to this graph is that trial's failure
        trial.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        trial.why = f"refused: {method} failed ({trial.error})"
        return trial
    for kind, inputs in ctx["sets"].items():
        got = variant_eval.outputs(session, inputs)
        trial.figures[kind] = budgets.measure(got, ctx["parent_outputs"][kind], ctx["classes"])
        trial.worst[kind] = budgets.worst(trial.figures[kind], ctx["rows"][kind])
    trial.verdicts = budgets.judge(cfg.budget, trial.worst[ctx["judged_on"]])
    probe_inputs = ctx["sets"]["probe"]
    trial.performance = {
        "size": float(len(trial.data)),
        "ms_b1": variant_eval.latency_ms(session, probe_inputs, 1, cfg.latency_seconds),
        "ms_b8": variant_eval.latency_ms(session, probe_inputs, 8, cfg.latency_seconds),
    } | ctx["parent_performance"]
    return trial


def optimize(cfg: OptimizeConfig, seal: Seal | None = None) -> Outcome:
    """Try `cfg.methods`, keep the fastest within the budget, and commit it (with `seal`: signed)."""
    root = Root(cli.ensure_dir(Path(cfg.artifacts), create=False))
    manifest, parent = find_parent(root, cfg.model)
    if manifest.signing is not None and seal is None:
        raise InputError(
            f"{root.dir} is signed (model.sig); pass --sign-key PEM so the manifest with the variant is "
            "signed in the same commit (a commit without it would remove the signature)"
        )
    parent_bytes, probe = read_parent(root, parent)
    sets = {"probe": dict(probe.inputs)}
    if cfg.data is not None:
        sets["data"] = variant_eval.read_rows(cfg.data, parent.signature, cfg.data_rows, "--data")
    calibration = None
    if cfg.calibration is not None:
        calibration = variant_eval.read_rows(
            cfg.calibration, parent.signature, cfg.calibration_rows, "--calibration"
        )
    session = variant_methods.session(parent_bytes)
    ctx = {
        "parent": parent,
        "parent_bytes": parent_bytes,
        "probe": probe,
        "calibration": calibration,
        "sets": sets,
        "rows": {k: len(next(iter(v.values()))) for k, v in sets.items()},
        "judged_on": "data" if "data" in sets else "probe",
        "classes": budgets.class_outputs(parent.signature, cfg.class_outputs),
        "parent_outputs": {k: variant_eval.outputs(session, v) for k, v in sets.items()},
        "parent_performance": {
            "parent_size": float(len(parent_bytes)),
            "parent_ms_b1": variant_eval.latency_ms(session, sets["probe"], 1, cfg.latency_seconds),
            "parent_ms_b8": variant_eval.latency_ms(session, sets["probe"], 8, cfg.latency_seconds),
        },
    }
    trials = []
    for method in cfg.methods:
        logger.info("trying %s on %s ...", method, parent.model)
        trials.append(try_method(method, cfg, ctx))
    outcome = Outcome(parent, trials, ctx["judged_on"], ctx["rows"], parent_outputs=ctx["parent_outputs"])
    chosen = choose(trials)
    if chosen is not None:
        entry = variant_entry(chosen, parent, cfg, ctx)
        outcome.entry = commit_variant(root.dir, chosen, entry, seal)
    return outcome


def choose(trials: list[Trial]) -> Trial | None:
    """The fastest trial within the budget (mean latency ratio over batch 1 and 8); each trial's
    `why` says why it was kept or refused."""
    within = sorted((t for t in trials if t.within), key=lambda t: t.speed)
    for t in trials:
        if t.error is None and not t.within:
            failed = [v for v in t.verdicts if not v.ok]
            t.why = "refused: over budget: " + "; ".join(v.describe() for v in failed)
    if not within:
        return None
    best = within[0]
    best.kept = True
    best.why = "kept: within budget" + (", the fastest of those within it" if len(within) > 1 else "")
    for t in within[1:]:
        t.why = f"refused: within budget but slower than {best.method} ({t.speed:.2f}x vs {best.speed:.2f}x)"
    return best


def variant_entry(trial: Trial, parent: ArtifactEntry, cfg: OptimizeConfig, ctx: dict) -> ArtifactEntry:
    """The manifest entry of `trial` (path and sha256 are filled in when it is stored)."""
    import onnx

    proto = onnx.load_from_string(trial.data)
    variant = Variant(
        parent=parent.model,
        parent_sha256=parent.sha256,
        method=trial.method,
        settings={k: str(v) for k, v in trial.settings.items()},
        budget=dict(cfg.budget),
        judged_on=ctx["judged_on"],
        probe=trial.worst["probe"],
        data=trial.worst.get("data", {}),
        class_outputs=ctx["classes"],
        performance=trial.performance,
    )
    return dataclasses.replace(
        parent,
        name=f"{trial.name}.onnx",
        model=trial.name,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        producer={"onnxruntime": trial.settings.get("onnxruntime", ""), "onnx": onnx.__version__},
        opset=next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), parent.opset),
        ir_version=proto.ir_version,
        graph=tuple(n.op_type for n in proto.graph.node),
        metadata={p.key: p.value for p in proto.metadata_props},
        version=1,
        unavailable={},
        variant=variant,
    )


def commit_variant(artifacts: Path, trial: Trial, entry: ArtifactEntry, seal: Seal | None) -> ArtifactEntry:
    """Store the variant and commit its entry like an export (export/_core.py `export_formats`)."""

    def write(run: Run) -> list[ArtifactEntry]:
        current = Manifest.load(run.root.dir).find(entry.variant.parent, "onnx")
        if current is None or current.sha256 != entry.variant.parent_sha256:
            raise IntegrityError(
                f"{run.root.dir}: {entry.variant.parent} changed while its variant was made; re-run "
                "python -m export.optimize"
            )
        path, digest = store(run, entry.name, lambda p: p.write_bytes(trial.data))
        return [dataclasses.replace(entry, path=path, sha256=digest, size=len(trial.data))]

    return export_formats(artifacts, [write], trained=False, seal=seal)[0]


def _budget(text: str) -> dict[str, float]:
    try:
        return budgets.parse_budget(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    from export.sign import key_arg

    p = cli.parser(
        "Make a smaller or faster variant of a model (int8, fp16, graph optimisation) and commit it "
        "only when it stays within an accuracy budget against its fp32 parent.",
        "python -m export.optimize --artifacts artifacts --model mymodel --int8 dynamic "
        "--budget 'top1>=0.99,rel<=0.05' --data val.npz",
        command="export.optimize",
    )
    cli.artifacts_arg(p)
    cli.lock_timeout_arg(p)
    p.add_argument("--model", required=True, help="the parent: a model brought in with export.all --from-*")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--int8", choices=sorted(FLAGS), help="int8 quantization (static needs --calibration)")
    how.add_argument(
        "--fp16", action="store_true", help="float16 weights and compute, float32 inputs/outputs"
    )
    how.add_argument("--graph-opt", action="store_true", help="onnxruntime's offline graph optimisation")
    how.add_argument(
        "--auto", action="store_true", help="try every method that applies; commit the fastest within budget"
    )
    p.add_argument(
        "--budget",
        type=_budget,
        default=budgets.DEFAULT_BUDGET,
        help="limits, comma-separated: top1>=F (argmax agreement), topk>=F (top-k overlap), rel<=F (max "
        "|Δ| / the row's max |parent|), abs<=F (max |Δ|)",
    )
    p.add_argument(
        "--data", type=Path, metavar="VAL", help="validation rows (.npz/.csv/.parquet): budget judged on them"
    )
    p.add_argument("--data-rows", type=cli.positive_int, default=1000, help="at most this many --data rows")
    p.add_argument("--calibration", type=Path, metavar="DATA", help="calibration rows for --int8 static")
    p.add_argument("--calibration-rows", type=cli.positive_int, default=256, help="a seeded sample this big")
    p.add_argument(
        "--class-output",
        action="append",
        default=[],
        metavar="NAME",
        help="compare this output as class scores (default: float outputs [batch, K>=2], or named "
        "prob/logit/score/class/label); repeatable",
    )
    p.add_argument(
        "--latency-seconds", type=cli.positive_float, default=0.5, help="timing per model and batch"
    )
    key_arg(p, "--sign-key", required=False)
    return p


def config(args: argparse.Namespace) -> OptimizeConfig:
    """The run's config from parsed flags."""
    if args.auto:
        methods = ("int8-dynamic", *(("int8-static",) if args.calibration else ()), "fp16", "graph-opt")
    elif args.int8:
        methods = (FLAGS[args.int8],)
    else:
        methods = ("fp16",) if args.fp16 else ("graph-opt",)
    if "int8-static" in methods and args.calibration is None:
        raise InputError(
            "--int8 static needs --calibration DATA (.npz, .csv or .parquet rows of real inputs)"
        )
    budget = args.budget if isinstance(args.budget, dict) else _budget(args.budget)
    return OptimizeConfig(
        args.artifacts,
        args.model,
        methods,
        budget,
        args.calibration,
        args.calibration_rows,
        args.data,
        args.data_rows,
        tuple(args.class_output),
        args.latency_seconds,
    )


def main() -> None:
    from export.optimize_table import format_outcome
    from export.sign import Sealer

    args = parser().parse_args()

    def _main(args) -> int:
        cfg = config(args)
        seal = Sealer(args.sign_key) if args.sign_key else None
        outcome = optimize(cfg, seal)
        print(format_outcome(outcome, cfg))
        if seal is not None and outcome.entry is not None:
            print(seal.describe())
        return 0 if outcome.entry is not None else IntegrityError.exit_code  # 1: nothing committed

    cli.run(_main, args)


if __name__ == "__main__":
    main()
