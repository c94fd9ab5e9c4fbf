"""Write a Triton model repository: `python -m export.triton [--artifacts DIR] [--out DIR]`.

For every ONNX model in the manifest: `<out>/<model>/config.pbtxt` and `<out>/<model>/1/model.onnx`
(default out: `<artifacts>/triton`). Triton (and KServe's Triton runtime) then serves the same
V2 protocol as `python -m serve`:

    tritonserver --model-repository=artifacts/triton

Config reference: github.com/triton-inference-server/server docs/user_guide/model_configuration.md.
With `max_batch_size` > 0, `dims` exclude the batch dimension: x is [n], y is [1].
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import cli
from core.errors import IntegrityError, MissingArtifactError
from core.fsio import atomic_write_bytes, locked
from core.manifest import load_manifest

logger = logging.getLogger(__name__)

ONNX_FIX = "python -m export.onnx"
# ONNX TensorProto element type -> Triton data type; our models are float32 throughout.
TRITON_TYPES = {1: "TYPE_FP32"}  # onnx.TensorProto.FLOAT (onnx is imported where used: fast --help)

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
                f"tensor {v.name}: ONNX element type {t.elem_type} has no Triton mapping here; "
                "the models are float32"
            )
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out.append((v.name, TRITON_TYPES[t.elem_type], dims[1:]))
    return out


def config_pbtxt(name: str, model: onnx.ModelProto, cfg: TritonConfig) -> str:
    """The config.pbtxt text for one ONNX model, from its graph's inputs and outputs."""

    def block(kind: str, tensors: list[tuple[str, str, list[int]]]) -> str:
        items = ",\n".join(
            f'  {{\n    name: "{n}"\n    data_type: {t}\n    dims: [ {", ".join(map(str, d))} ]\n  }}'
            for n, t, d in tensors
        )
        return f"{kind} [\n{items}\n]\n"

    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {cfg.max_batch_size}\n'
        + block("input", _tensors(inputs))
        + block("output", _tensors(model.graph.output))
        + f"dynamic_batching {{\n  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}\n"
        + f"instance_group [\n  {{\n    kind: KIND_CPU\n    count: {cfg.instances}\n  }}\n]\n"
    )


def export_triton(artifacts: Path, out: Path | None = None, cfg: TritonConfig = TritonConfig()) -> list[Path]:
    """Write the repository; returns the model directories written."""
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    import onnx  # here, not at the top: `--help` and argument errors stay fast

    out = Path(out) if out is not None else artifacts / "triton"
    written = []
    with locked(artifacts):  # the manifest and the files it names do not change underneath us
        entries = [e for e in load_manifest(artifacts)["artifacts"] if e["format"] == "onnx"]
        if not entries:
            raise MissingArtifactError(
                f"{artifacts / 'manifest.json'}: no ONNX models; run {ONNX_FIX} --artifacts {artifacts}"
            )
        for entry in entries:
            src = artifacts / entry["path"]
            if not src.is_file():
                raise MissingArtifactError(f"{src}: named in the manifest but missing; re-run {ONNX_FIX}")
            data = src.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise IntegrityError(
                    f"{src}: sha256 differs from the manifest's {entry['sha256'][:12]}...; re-run {ONNX_FIX}"
                )
            name = entry.get("model", src.stem)
            model_dir = out / name
            (model_dir / "1").mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(model_dir / "1" / "model.onnx", data)
            atomic_write_bytes(
                model_dir / "config.pbtxt", config_pbtxt(name, onnx.load_from_string(data), cfg).encode()
            )
            logger.info("[ok] %s: %s -> %s", name, src.name, model_dir)
            written.append(model_dir)
    return written


def main() -> None:
    p = cli.parser(
        "Write a Triton model repository (config.pbtxt + 1/model.onnx per ONNX model).",
        "python -m export.triton --artifacts artifacts && tritonserver --model-repository=artifacts/triton",
        command="export.triton",
    )
    cli.artifacts_arg(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="repository directory (default: ARTIFACTS/triton)",
    )
    p.add_argument("--max-batch-size", type=cli.positive_int, default=TritonConfig.max_batch_size)

    def _main(args) -> int:
        dirs = export_triton(args.artifacts, args.out, TritonConfig(max_batch_size=args.max_batch_size))
        for d in dirs:
            print(f"[ok] {d.name}: config.pbtxt, 1/model.onnx")
        print(f"wrote Triton model repository {dirs[0].parent}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
