"""Write a Triton model repository: `python -m export.triton [--artifacts DIR] [--out DIR]`.

For every ONNX model in the manifest: `<out>/<model>/config.pbtxt` and `<out>/<model>/1/model.onnx`
(default out: `<artifacts>/triton`); a variant (export.optimize, `N.int8`) is a model directory of its
own whose config's `parameters` name its parent (`variant_of`). Triton (and KServe's Triton runtime)
then serves the same V2 protocol as `python -m serve`:

    tritonserver --model-repository=artifacts/triton

Config reference: github.com/triton-inference-server/server docs/user_guide/model_configuration.md.
With `max_batch_size` > 0, `dims` exclude the batch dimension: x is [n], y is [1].

Last, `<out>/.made_from.json` records the manifest's sha256, the configuration and each model's ONNX
entry (export/triton_state.py): `python -m export.all` refreshes ARTIFACTS/triton from it after
each export, and `python -m serve.check` says which models in it are stale.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.triton_state import DEFAULT_DIR, MARKER, Marker
from oneneuron import cli
from oneneuron.dtypes import DTYPES
from oneneuron.errors import IntegrityError, MissingArtifactError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, removing_new_dirs_on_error
from oneneuron.manifest import read_verified
from oneneuron.schema import MANIFEST, ArtifactEntry, Manifest, Variant, check_name
from oneneuron.selftest import PROBE_KEY, embedded, missing

logger = logging.getLogger(__name__)

# ONNX TensorProto element type (onnx.TensorProto.FLOAT etc., by value: onnx is imported where used,
# so `--help` stays fast) -> Triton DataType name (model_config.proto), for the manifest's dtypes.
TRITON_TYPES = {d.onnx: d.triton for d in DTYPES if d.manifest}

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class TritonConfig:
    """How each model is configured for Triton."""

    max_batch_size: int = 1024  # rows per batch Triton may form (client batches and dynamic batching)
    max_queue_delay_us: int = 100  # dynamic batching: wait at most this long to fill a batch
    instances: int = 1  # model instances on CPU


def _tensors(values: Any) -> list[tuple[str, str, list[int]]]:
    """(name, Triton type, dims without the batch dim) for ONNX graph inputs or outputs."""
    out = []
    for v in values:
        t = v.type.tensor_type
        if t.elem_type not in TRITON_TYPES:
            raise IntegrityError(
                f"tensor {v.name}: ONNX element type {t.elem_type} has no Triton mapping; "
                f"supported: {', '.join(sorted(TRITON_TYPES.values()))}"
            )
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out.append((v.name, TRITON_TYPES[t.elem_type], dims[1:]))
    return out


def config_pbtxt(name: str, model: onnx.ModelProto, cfg: TritonConfig, variant: Variant | None = None) -> str:
    """The config.pbtxt text for one ONNX model, built as Triton's `ModelConfig` protobuf and printed
    with protobuf's text format (no string pasting: no name can inject a field). A variant
    (export.optimize) says so in `parameters` (`variant_of`, `variant_method`, `variant_parent_sha256`):
    Triton returns them with the model's configuration and its onnxruntime backend ignores keys it
    does not know."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    check_name(name, lambda problem: _refuse(problem))
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=cfg.max_batch_size)
    initializers = {i.name for i in model.graph.initializer}
    for tensor_name, dtype, dims in _tensors(i for i in model.graph.input if i.name not in initializers):
        config.input.add(name=tensor_name, data_type=mc.DataType.Value(dtype), dims=dims)
    for tensor_name, dtype, dims in _tensors(model.graph.output):
        config.output.add(name=tensor_name, data_type=mc.DataType.Value(dtype), dims=dims)
    config.dynamic_batching.max_queue_delay_microseconds = cfg.max_queue_delay_us
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=cfg.instances)
    if variant is not None:
        for key, value in (
            ("variant_of", variant.parent),
            ("variant_method", variant.method),
            ("variant_parent_sha256", variant.parent_sha256),
        ):
            config.parameters[key].string_value = value
    return text_format.MessageToString(config)


def _check_selftest(path: Path, model: onnx.ModelProto, entry: ArtifactEntry) -> None:
    """Refuse to publish a file whose self-test is unusable or missing (the loader would refuse to serve
    it), by the loader's own rules (oneneuron/selftest.py), for every model: an embedded test, or a
    probe file the manifest names with the sha256 the metadata records. Running it is the server's job."""
    metadata = {p.key: p.value for p in model.metadata_props}
    inputs = [s.name for s in entry.signature.inputs]
    try:
        test = embedded(metadata, inputs, [s.name for s in entry.signature.outputs])
    except ValueError as exc:
        raise IntegrityError(f"{path}: metadata has no usable self-test ({exc}); {fix('onnx')}") from None
    digest = metadata.get(PROBE_KEY)
    if test is not None:
        return
    if digest is None:
        raise IntegrityError(f"{path}: {missing(inputs)}; {fix('onnx')}")
    if entry.probe is None or entry.probe.sha256 != digest:
        raise IntegrityError(
            f"{path}: metadata '{PROBE_KEY}' {digest[:12]}... is not the manifest's probe "
            f"({entry.probe.sha256[:12] + '...' if entry.probe else 'none'}); {fix('export')}"
        )


def _refuse(problem: str) -> None:
    raise IntegrityError(f"Triton model name: {problem}; {fix('export')}")


def export_triton(artifacts: Path, out: Path | None = None, cfg: TritonConfig = TritonConfig()) -> list[Path]:
    """Write the repository; returns the model directories written.

    Every name comes from the validated manifest (`oneneuron.schema.NAME_PATTERN`) and every file is
    written through `oneneuron.fsio.Root(out)`, so nothing lands outside the repository directory.
    """
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    import onnx  # here, not at the top: `--help` and argument errors stay fast

    source = Root(artifacts)
    out = Path(out) if out is not None else source.path(DEFAULT_DIR)  # never a symlink leaving artifacts
    written = []
    with source.locked(), removing_new_dirs_on_error(out):  # the manifest does not change underneath us
        repo = Root(cli.ensure_dir(out, create=True))
        entries = Manifest.load(artifacts).entries("onnx")
        manifest_sha256 = hashlib.sha256(source.read_bytes(MANIFEST)).hexdigest()
        previous = _previous_marker(repo.dir)
        if not entries:
            raise MissingArtifactError(
                f"{artifacts / 'manifest.json'}: no ONNX models; {fix('onnx', artifacts)}"
            )
        for entry in entries:
            data = read_verified(source, entry)  # read once: the bytes hashed are the bytes written
            model = onnx.load_from_string(data)
            _check_selftest(source.dir / entry.path, model, entry)
            config = config_pbtxt(entry.model, model, cfg, entry.variant)
            repo.path(entry.model).mkdir(exist_ok=True)
            repo.path(f"{entry.model}/1").mkdir(exist_ok=True)
            repo.write_bytes(f"{entry.model}/1/model.onnx", data)
            repo.write_bytes(f"{entry.model}/config.pbtxt", config.encode())
            logger.info("[ok] %s: %s -> %s", entry.model, entry.path, repo.dir / entry.model)
            written.append(repo.dir / entry.model)
        exported = {e.model for e in entries}
        for model in sorted(set(previous.models) - exported) if previous else ():  # ours, no longer exported
            if repo.path(model).is_dir():
                repo.remove(model)
                logger.info("removed %s: no longer in the manifest", repo.dir / model)
        marker = Marker(manifest_sha256, {e.model: (e.path, e.sha256) for e in entries}, asdict(cfg))
        repo.write_json(MARKER, marker.to_json())  # last: a run stopped before this reads as stale
    return written


def _previous_marker(repo: Path) -> Marker | None:
    try:
        return Marker.load(repo)
    except (IntegrityError, MissingArtifactError) as exc:
        logger.warning("ignoring an unreadable %s (it is rewritten): %s", MARKER, exc)
        return None


def refresh(artifacts: Path) -> list[Path] | None:
    """Rewrite ARTIFACTS/triton if `export.triton` made it (its marker is there), with the configuration
    it was made with; returns the model directories, or None when there is no such repository."""
    repo = Root(artifacts).dir / DEFAULT_DIR
    if not repo.is_dir() or repo.is_symlink():
        return None
    try:
        marker = Marker.load(repo)
    except (IntegrityError, MissingArtifactError) as exc:
        logger.warning("not refreshing %s: %s", repo, exc)
        return None
    if marker is None:  # not ours (or from before the marker): never touched
        return None
    known = {f.name for f in fields(TritonConfig)}
    dirs = export_triton(
        artifacts, None, TritonConfig(**{k: v for k, v in marker.config.items() if k in known})
    )
    logger.info("refreshed Triton model repository %s (%s)", repo, ", ".join(d.name for d in dirs))
    return dirs


def main() -> None:
    p = cli.parser(
        "Write a Triton model repository (config.pbtxt + 1/model.onnx per ONNX model).",
        "python -m export.triton --artifacts artifacts && tritonserver --model-repository=artifacts/triton",
        command="export.triton",
    )
    cli.artifacts_arg(p)
    cli.lock_timeout_arg(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="repository directory (default: ARTIFACTS/triton)",
    )
    p.add_argument(
        "--max-batch-size",
        type=cli.positive_int,
        default=TritonConfig.max_batch_size,
        metavar="ROWS",
        help="rows per batch Triton may form (config.pbtxt max_batch_size; client and dynamic batching)",
    )

    def _main(args) -> int:
        dirs = export_triton(args.artifacts, args.out, TritonConfig(max_batch_size=args.max_batch_size))
        for d in dirs:
            print(f"[ok] {d.name}: config.pbtxt, 1/model.onnx")
        print(f"wrote Triton model repository {dirs[0].parent}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
