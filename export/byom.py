"""Bring your own model: `python -m export.all --from-keras model.keras --name NAME` (or `--from-torch
model.pt2`; an ONNX file is adopted with `--from-onnx`, export/from_onnx.py).

A `.keras` file gets a SavedModel and an ONNX file; a `.pt2` ExportedProgram (torch.export.save)
gets ONNX, the program itself (format `exportedprogram`, what the check runs in torch) and
TorchScript when a trace of the program reproduces it (else the manifest's `unavailable` field
says why). Every artifact records the source file's sha256 (`source_sha256`) and points at one
probe file (export/probe.py) holding the probe inputs and the source's outputs on them, which
`python -m serve.check` compares every runtime against. The ONNX metadata names that probe file
by sha256 (`selftest_probe`): the loader runs its first rows at load, whatever their size (a
224x224 image is ~600 KiB of JSON); and it embeds them as JSON (`selftest`) when they fit in
64 KiB, for readers without the probe file (Node, the page).

Everything is converted in memory first: a model a converter cannot export fails with one line
(the op, the converter and its version), exit 2, and nothing is written. Then all artifacts are
committed with the manifest in one rename (export/_core.py `export_formats`), beside the
article's models if the directory has them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export import probe as probes
from export._core import TRAINERS, Run, export_formats, store
from export.onnx import stable_graph_doc
from oneneuron.contract import CONTRACT
from oneneuron.errors import InputError, IntegrityError
from oneneuron.fsio import size_of
from oneneuron.manifest import KEEP_VERSIONS, Seal
from oneneuron.schema import ArtifactEntry, ProbeRef
from oneneuron.selftest import MAX_SELFTEST_CHARS
from oneneuron.selftest import PROBE_KEY as SELFTEST_PROBE  # the probe file's sha256

logger = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # no dots: stored versions are <name>.<sha12>.*
MAX_SOURCE_BYTES = 2 << 30
SIGNATURE_NAME = "serving_default"
# The self-test bounds are the shared contract's (oneneuron/contract.py; Node and the page read them too).
SELFTEST_TOL = CONTRACT.selftest["probe_tol"]  # embedded: |a - b| <= atol + rtol·|b|
SELFTEST_TOL_FLOAT16 = CONTRACT.selftest["probe_tol_float16"]  # with a float16 output


@dataclass(frozen=True)
class ByomConfig:
    """One brought-in model to export."""

    framework: str  # keras / torch
    source: Path
    name: str
    seed: int = 0
    int_range: tuple[int, int] = probes.INT_RANGE
    probe_inputs: Path | None = None


def read_source(cfg: ByomConfig) -> bytes:
    path = cfg.source
    flag = f"--from-{cfg.framework}"
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass {flag} with a {_SUFFIX[cfg.framework]} file")
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise InputError(f"{path}: larger than {MAX_SOURCE_BYTES >> 30} GiB; {flag} takes smaller models")
    return path.read_bytes()


_SUFFIX = {"keras": ".keras", "torch": ".pt2 (torch.export.save)"}


def check_name(name: str | None) -> str:
    if name is None:
        raise InputError(
            "--name is required with --from-keras/--from-torch/--from-onnx; give e.g. --name mymodel"
        )
    if not MODEL_NAME.fullmatch(name):
        raise InputError(
            f"--name {name[:80]!r}: expected a letter or digit, then letters, digits, '_' or '-' "
            "(no dots), at most 64 characters, e.g. --name mymodel"
        )
    if name in TRAINERS:
        raise InputError(f"--name {name}: reserved for the article's model; pick another name")
    return name


def finish_onnx(proto: Any, source: Any, name: str, probe: probes.Probe, probe_sha256: str) -> Any:
    """Source names and dims on the graph's inputs and outputs, metadata with the self-test (the probe
    file's sha256, and its first rows as JSON when they fit); checked."""
    import onnx

    graph = proto.graph
    specs = {s.name: s for s in (*source.signature.inputs, *source.signature.outputs)}
    got = sorted(v.name for v in [*graph.input, *graph.output])
    if got != sorted(specs):
        raise IntegrityError(
            f"{source.path}: the converter named the tensors {got}, expected {sorted(specs)}"
        )
    for value in [*graph.input, *graph.output]:
        s, dims = specs[value.name], value.type.tensor_type.shape.dim
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if len(dims) != len(s.shape) or np.dtype(dtype) != np.dtype(s.dtype):
            raise IntegrityError(
                f"{source.path}: the converter made {value.name!r} {dtype} rank {len(dims)}; the source "
                f"has {s.dtype} {list(s.shape)}"
            )
        for d, want in zip(dims, s.shape, strict=True):
            if isinstance(want, int):
                d.dim_value = want
            else:
                d.dim_param = want
    del graph.value_info[:]  # intermediate shapes carry the converter's own dim names
    stable_graph_doc(proto)
    metadata = {
        "model": name,
        "source_framework": source.framework,
        "source_framework_version": " ".join(f"{k} {v}" for k, v in source.versions.items()),
        "source_file": source.path.name,
        "source_sha256": source.sha256,
        SELFTEST_PROBE: probe_sha256,
    }
    test = selftest_json(source.signature, probe)
    if test is None:
        logger.info(
            "%s: one probe row is more than %d characters of JSON: the self-test is the probe file's "
            "first rows only (named by sha256 in the metadata), not embedded",
            name,
            MAX_SELFTEST_CHARS,
        )
    else:
        metadata["selftest"] = test
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_version = proto.producer_version.removesuffix(" None")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise IntegrityError(
            f"{source.path}: the converter's ONNX file fails onnx.checker ({str(exc)[:200]})"
        ) from None
    return proto


def selftest_json(signature: Any, probe: probes.Probe) -> str | None:
    """The `selftest` metadata: the probe's first two rows (one if two are too long), or None."""
    half = any(s.dtype == "float16" for s in signature.outputs)
    tol = SELFTEST_TOL_FLOAT16 if half else SELFTEST_TOL
    for rows in (2, 1):
        head = probe.head(rows)
        text = json.dumps(
            {
                "inputs": {k: v.tolist() for k, v in head.inputs.items()},
                "outputs": {k: v.tolist() for k, v in head.outputs.items()},
                "atol": tol,
                "rtol": tol,
            },
            allow_nan=False,
            separators=(",", ":"),
        )
        if len(text) <= MAX_SELFTEST_CHARS:
            return text
    return None


def prepare(cfg: ByomConfig) -> Callable[[Run], list[ArtifactEntry]]:
    """Load, probe and convert in memory (nothing written); returns the writer that stores it all."""
    import hashlib

    import onnx

    from export import byom_sources as sources
    from export import byom_torch

    data = read_source(cfg)
    load = sources.load_keras if cfg.framework == "keras" else byom_torch.load_torch
    source = load(cfg.source, data)
    source.sha256 = hashlib.sha256(data).hexdigest()
    signature = source.signature
    inputs = (
        probes.read_inputs(cfg.probe_inputs, signature)
        if cfg.probe_inputs
        else probes.generate(signature, cfg.seed, cfg.int_range)
    )
    try:
        outputs = source.run(inputs)
    except Exception as exc:  # e.g. an id outside an Embedding's vocabulary
        raise InputError(
            f"{cfg.source}: the model fails on the probe inputs ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); integer inputs are drawn from "
            f"--int-range {cfg.int_range[0]}:{cfg.int_range[1]}: give the range your ids have, "
            "or --probe-inputs"
        ) from None
    probe = probes.Probe(inputs, outputs)
    probe_bytes = probes.to_bytes(probe)
    proto = finish_onnx(source.to_onnx(), source, cfg.name, probe, hashlib.sha256(probe_bytes).hexdigest())
    onnx_bytes = proto.SerializeToString()
    producer = {**source.versions, "onnx": onnx.__version__}
    unavailable = {}
    ts_bytes = None
    if cfg.framework == "torch":
        ts_bytes, why = byom_torch.torchscript(source, inputs, outputs)
        if ts_bytes is None:
            unavailable["torchscript"] = why
            logger.info(
                "%s: no TorchScript: %s (the manifest's entries say so under 'unavailable')", cfg.name, why
            )

    def write(run: Run) -> list[ArtifactEntry]:
        probe_ref = ProbeRef(*store(run, f"{cfg.name}.probe.npz", lambda p: p.write_bytes(probe_bytes)))

        def entry(fmt: str, file: str, stored: tuple[str, str], **extra: Any) -> ArtifactEntry:
            return ArtifactEntry(
                name=file,
                model=cfg.name,
                format=fmt,
                framework=source.framework,
                framework_versions=source.versions,
                path=stored[0],
                sha256=stored[1],
                size=size_of(run.root.path(stored[0])),
                signature=signature,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                source_sha256=source.sha256,
                source_file=cfg.source.name,
                probe=probe_ref,
                unavailable=unavailable,
                **extra,
            )

        onnx_name = f"{cfg.name}.onnx"
        entries = [
            entry(
                "onnx",
                onnx_name,
                store(run, onnx_name, lambda p: p.write_bytes(onnx_bytes)),
                producer={**producer, **_converter(cfg.framework)},
                opset=sources.OPSET,
                ir_version=proto.ir_version,
                graph=tuple(n.op_type for n in proto.graph.node),
                metadata={p.key: p.value for p in proto.metadata_props},
            )
        ]
        if cfg.framework == "keras":
            sm = f"{cfg.name}.savedmodel"
            stored = store(run, sm, lambda p: sources.write_savedmodel(source, p, SIGNATURE_NAME))
            entries.append(entry("savedmodel", sm, stored, producer=producer, signature_name=SIGNATURE_NAME))
        else:
            pt2 = f"{cfg.name}.pt2"
            entries.append(
                entry(
                    "exportedprogram", pt2, store(run, pt2, lambda p: p.write_bytes(data)), producer=producer
                )
            )
            if ts_bytes is not None:
                ts = f"{cfg.name}.torchscript.pt"
                entries.append(
                    entry(
                        "torchscript",
                        ts,
                        store(run, ts, lambda p: p.write_bytes(ts_bytes)),
                        producer=producer,
                    )
                )
        return entries

    return write


def _converter(framework: str) -> dict[str, str]:
    if framework == "keras":
        import tf2onnx

        return {"tf2onnx": tf2onnx.__version__}
    import onnxscript

    return {"onnxscript": onnxscript.__version__}


def export_byom(
    artifacts: Path, cfg: ByomConfig, seal: Seal | None = None, keep_versions: int = KEEP_VERSIONS
) -> list[ArtifactEntry]:
    """Convert `cfg.source` and commit its artifacts and probe to `artifacts` (with `seal`, signed in
    the same commit; keeping `keep_versions` stored versions of each model), then refresh
    ARTIFACTS/triton if export.triton made it, as export.all does; returns the entries."""
    return commit_prepared(artifacts, lambda: prepare(cfg), seal, keep_versions)


def commit_prepared(
    artifacts: Path, prepare_writer: Callable[[], Callable[[Run], list[ArtifactEntry]]], seal, keep_versions
) -> list[ArtifactEntry]:
    """`prepare_writer()` (the in-memory work), then its writer's entries committed in one manifest
    commit, then ARTIFACTS/triton refreshed if export.triton made it (--from-keras/-torch/-onnx)."""
    from export.triton import refresh

    if Path(artifacts).exists() and not Path(artifacts).is_dir():  # before a 10 s conversion
        raise InputError(f"{artifacts}: exists and is not a directory; pass --artifacts DIR with a directory")
    write = prepare_writer()
    entries = export_formats(artifacts, [write], keep_versions, trained=False, seal=seal)
    refresh(artifacts)
    return entries


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0; give e.g. 0")
    return value


def add_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], None]:
    """export.all's --from-keras/--from-torch/--from-onnx flags; `prepare(args)` sets `args.export`
    when given."""
    g = p.add_argument_group("your own model (README 'Your own model')")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--from-keras", type=Path, metavar="FILE", help="export this .keras model instead")
    src.add_argument("--from-torch", type=Path, metavar="FILE", help="export this torch.export .pt2 instead")
    src.add_argument(
        "--from-onnx", type=Path, metavar="FILE", help="adopt this ONNX file as it is (export/from_onnx.py)"
    )
    g.add_argument("--name", help="the model's name in the manifest (with --from-*)")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the generated probe inputs")
    g.add_argument(
        "--int-range",
        default=f"{probes.INT_RANGE[0]}:{probes.INT_RANGE[1]}",
        metavar="LO:HI",
        help="integer probe inputs are drawn from [LO, HI): keep HI <= an Embedding's vocabulary size",
    )
    g.add_argument(
        "--probe-inputs", type=Path, metavar="NPZ", help="probe with these inputs (one array per input)"
    )
    g.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help=f"with --from-onnx: the probe's size of a dynamic dimension other than the batch "
        f"(repeatable; default {probes.DYNAMIC_SIZE})",
    )

    def prepare_args(args: argparse.Namespace) -> None:
        if args.dim and args.from_onnx is None:
            raise InputError(
                "--dim needs --from-onnx FILE (a .keras or .pt2 model's probe sizes are its own)"
            )
        if args.from_onnx is not None:
            from export import from_onnx

            dims = dict(from_onnx.dim_arg(text) for text in args.dim)
            onnx_cfg = from_onnx.OnnxConfig(
                args.from_onnx, check_name(args.name), args.seed, probes.parse_int_range(args.int_range),
                args.probe_inputs, dims,
            )  # fmt: skip
            args.export = lambda artifacts, seal: commit_prepared(
                artifacts, lambda: from_onnx.prepare(onnx_cfg), seal, args.keep_versions
            )
            return
        source = args.from_keras or args.from_torch
        if source is None:
            given = [
                f for f, v in (("--name", args.name), ("--probe-inputs", args.probe_inputs)) if v is not None
            ]
            if given:
                raise InputError(f"{', '.join(given)} need --from-keras, --from-torch or --from-onnx FILE")
            return
        cfg = ByomConfig(
            framework="keras" if args.from_keras else "torch",
            source=source,
            name=check_name(args.name),
            seed=args.seed,
            int_range=probes.parse_int_range(args.int_range),
            probe_inputs=args.probe_inputs,
        )
        args.export = lambda artifacts, seal: export_byom(artifacts, cfg, seal, args.keep_versions)

    return prepare_args
