"""Export both models to ONNX: `python -m export.onnx [--artifacts DIR]`.

Keras -> tf2onnx (`from_function`; `from_keras` breaks on Keras 3), torch -> `torch.onnx.export`
(the torch.export-based exporter, which runs on onnxscript). Both files get the same contract:
input `x` / output `y`, float32, shape [batch, n] -> [batch, 1] with the batch dimension named
`batch`, opset `OPSET`, one self-contained file that passes `onnx.checker` with `full_check`,
and `metadata_props` an app can read (onnxruntime's `custom_metadata_map`) including a
self-test: the source model's prediction at x = 10.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export._core import Run, Source, entry, export_formats, load_source, main_for, store, trained
from oneneuron.errors import IntegrityError
from oneneuron.frameworks import quiet_tensorflow
from oneneuron.manifest import KEEP_VERSIONS, Seal
from oneneuron.schema import ArtifactEntry
from oneneuron.selftest import article_metadata

FORMAT = "onnx"
# Opset 18: the newest both converters emit natively (tf2onnx 1.17 tops out at 18; torch's
# exporter starts at 18) and understood by every onnxruntime since 1.14 (2023), including
# onnxruntime-node and onnxruntime-web, which is what embedding apps run.
OPSET = 18
BATCH = "batch"

if TYPE_CHECKING:  # imported where used: `--help` never loads TensorFlow, torch or onnx
    import onnx
    import torch


def keras_to_onnx(model: Any, n_features: int) -> onnx.ModelProto:
    """Convert a Keras model through a `tf.function` with tf2onnx."""
    tf = quiet_tensorflow()
    import tf2onnx

    spec = [tf.TensorSpec([None, n_features], tf.float32, name="x")]
    fn = tf.function(lambda x: {"y": model(x, training=False)}, input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    return proto


@contextlib.contextmanager
def _quiet_torch_exporter() -> Iterator[None]:
    # The exporter logs one warning per torchvision op it cannot register (torchvision is
    # not a dependency) and pytree raises a FutureWarning from its own internals; neither
    # is actionable for the user. Everything else still shows.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
            )
            yield
    finally:
        registration.setLevel(level)


def torch_to_onnx(model: torch.nn.Module, n_features: int) -> onnx.ModelProto:
    """Convert a torch module with `torch.onnx.export` (the torch.export-based path)."""
    import torch

    # Example batch of 2: torch.export specialises dimensions of size 1.
    example = (torch.zeros(2, n_features),)
    with _quiet_torch_exporter():
        program = torch.onnx.export(
            model,
            example,
            input_names=["x"],
            output_names=["y"],
            opset_version=OPSET,
            dynamic_shapes=({0: torch.export.Dim(BATCH)},),
            dynamo=True,
            verbose=False,
        )
    return program.model_proto


def canonical_affine(proto: onnx.ModelProto) -> list[str]:
    """Rewrite the converter's affine graph into the form onnxruntime runs fastest; returns its old ops.

    tf2onnx emits MatMul + Add(bias [1]) and torch.onnx emits Gemm. onnxruntime's CPU
    broadcast of a [batch, 1] tensor with a [1]-shaped constant takes a per-row path (~50x
    slower than numpy at 10M rows, bench row 5), while [1, 1] constants take the vectorised
    one; and MatMul/Gemm with one input feature is a multiply. So: one feature ->
    Mul(x, w[1,1]) + Add(b[1,1]); n features -> MatMul(x, W[n,1]) + Add(b[1,1]). Same
    weights, same arithmetic (one product per output for n = 1); the check proves parity.
    Graphs of any other shape are left as the converter wrote them.
    """
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    ops = [node.op_type for node in graph.node]
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    if ops == ["MatMul", "Add"] and graph.node[0].input[1] in inits and graph.node[1].input[1] in inits:
        weights, bias = inits[graph.node[0].input[1]], inits[graph.node[1].input[1]]
    elif ops == ["Gemm"] and all(name in inits for name in graph.node[0].input[1:3]):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in graph.node[0].attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return ops
        weights = inits[graph.node[0].input[1]]
        weights = weights.T if attrs.get("transB", 0) else weights
        bias = inits[graph.node[0].input[2]]
    else:
        return ops
    n = weights.shape[0]
    if weights.shape != (n, 1) or bias.size != 1:
        return ops
    del graph.node[:]
    del graph.initializer[:]
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights.reshape(n, 1).astype("float32"), "weight"),
            numpy_helper.from_array(bias.reshape(1, 1).astype("float32"), "bias"),
        ]
    )
    graph.node.extend(
        [
            onnx.helper.make_node("Mul" if n == 1 else "MatMul", ["x", "weight"], ["xw"]),
            onnx.helper.make_node("Add", ["xw", "bias"], ["y"]),
        ]
    )
    return ops


# tf2onnx names the graph after the tf.function it converted (`converted from b'__inference_<lambda>_621'`),
# whose name ends in a per-process counter: the same model converted after training in one process
# (python -m pipeline) or alone (python -m export.all) got different bytes (issue 19).
_FUNCTION_COUNTER = re.compile(r"(__inference_[^'\s]*)_\d+")


def stable_graph_doc(proto: onnx.ModelProto) -> None:
    """Drop the converter's per-process function counter from the graph's doc_string."""
    doc = _FUNCTION_COUNTER.sub(r"\1", proto.graph.doc_string)
    if doc != proto.graph.doc_string:  # assigning even "" would add the field to the bytes
        proto.graph.doc_string = doc


def finish(proto: onnx.ModelProto, source: Source, record_sha256: str) -> onnx.ModelProto:
    """Give a converted model the shared contract: names, batch dim, opsets, metadata; check it."""
    import onnx

    graph = proto.graph
    names = ([i.name for i in graph.input], [o.name for o in graph.output])
    if names != (["x"], ["y"]):
        raise IntegrityError(
            f"{source.name}: converter produced inputs/outputs {names}, expected (['x'], ['y'])"
        )
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH
    del graph.value_info[:]  # intermediate shapes carry the converter's own dim names
    stable_graph_doc(proto)
    converted_ops = canonical_affine(proto)
    if converted_ops != [node.op_type for node in graph.node]:
        proto.doc_string = (
            f"converter graph {'+'.join(converted_ops)} rewritten as "
            f"{'+'.join(n.op_type for n in graph.node)} (export/onnx.py canonical_affine)"
        )
    used = {node.domain for node in graph.node}
    keep = [op for op in proto.opset_import if op.domain in used or op.domain in ("", "ai.onnx")]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    metadata = {
        "model": source.name,
        "source_framework": source.framework,
        "source_framework_version": " ".join(f"{k} {v}" for k, v in source.versions.items()),
        "training_record_sha256": record_sha256,
        "n_features": str(source.n_features),
        # the general self-test, and the same test in the keys the JavaScript loaders read
        **article_metadata([10.0] * source.n_features, source.headline_y),
    }
    if not source.architecture.is_linear:  # the article's models keep their metadata as it was
        metadata["architecture"] = json.dumps(source.architecture.to_json())
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_version = proto.producer_version.removesuffix(" None")  # tf2onnx appends its git hash
    computes = "y = x @ w + b" if source.architecture.is_linear else source.architecture.describe()
    proto.doc_string = f"{source.name}: {computes}, trained in {source.framework}. {proto.doc_string}".strip()
    onnx.checker.check_model(proto, full_check=True)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise IntegrityError(
            f"{source.name}: converter produced external data; expected one self-contained file"
        )
    return proto


def _keras_producer() -> dict[str, str]:
    import tf2onnx

    return {"tf2onnx": tf2onnx.__version__, "tensorflow": quiet_tensorflow().__version__}


def _torch_producer() -> dict[str, str]:
    import onnxscript
    import torch

    return {"torch": torch.__version__, "onnxscript": onnxscript.__version__}


_CONVERTERS = {  # source framework -> converter
    "tensorflow": (keras_to_onnx, _keras_producer),
    "torch": (torch_to_onnx, _torch_producer),
}


def write(run: Run) -> list[ArtifactEntry]:
    """Convert and store both models as ONNX; returns their manifest entries (uncommitted)."""
    import onnx

    entries = []
    models = [(name, *_CONVERTERS[fw]) for fw in _CONVERTERS for name in trained(run, fw)]
    for name, convert, producer in models:
        source = load_source(run, name)
        proto = finish(convert(source.model, source.n_features), source, run.record_sha256)
        data = proto.SerializeToString()
        stored = store(run, f"{name}.onnx", lambda p, data=data: p.write_bytes(data))
        entries.append(
            entry(
                run,
                source,
                FORMAT,
                f"{name}.onnx",
                stored,
                opset=OPSET,
                ir_version=proto.ir_version,
                graph=tuple(node.op_type for node in proto.graph.node),
                producer={**producer(), "onnx": onnx.__version__},
                metadata={p.key: p.value for p in proto.metadata_props},
            )
        )
    return entries


def export(
    artifacts: Path, keep_versions: int = KEEP_VERSIONS, seal: Seal | None = None
) -> list[ArtifactEntry]:
    """Write both ONNX models and record them in the manifest; returns the manifest entries."""
    return export_formats(artifacts, [write], keep_versions, seal=seal)


def main() -> None:
    main_for(FORMAT, export)


if __name__ == "__main__":
    main()
