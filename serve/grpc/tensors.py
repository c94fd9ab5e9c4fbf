"""ModelInfer for a model of any signature: named inputs as raw or typed contents, selected outputs.

Each input comes as `raw_input_contents` (one per input, in the order of `inputs`: what tritonclient
sends) or typed `contents` (BOOL in bool_contents; FP16 has no typed field), in a V2 datatype that
maps exactly onto the model's (serve/http/tensors.py, the HTTP rules). The response holds the
requested outputs (all when none are named) as `raw_output_contents` in their own datatype.
The article's models keep their fast path in service.py.
"""

from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from serve.http import tensors
from serve.http.httpio import ApiError, preview
from serve.loader import Model

# V2 datatype -> InferTensorContents field (the values are range-checked against the datatype).
TYPED = {
    "BOOL": "bool_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}


def decode(model: Model, request: pb.ModelInferRequest, max_rows: int) -> dict[str, np.ndarray]:
    """The feeds of a ModelInferRequest, validated like an HTTP V2 request."""
    by_name = {s.name: s for s in tensors.specs(model)[0]}
    names = [t.name for t in request.inputs]
    if sorted(names) != sorted(by_name):
        raise ApiError(
            400, f"'inputs' name {preview(names)}; the model's inputs are {sorted(by_name)}, each once"
        )
    raw = request.raw_input_contents
    if raw and len(raw) != len(names):
        raise ApiError(
            400, f"{len(raw)} raw_input_contents for {len(names)} inputs; send one per input, in order"
        )
    feeds = {}
    for i, tensor in enumerate(request.inputs):
        spec = by_name[tensor.name]
        source = tensors.check_datatype(spec, tensor.datatype)
        shape = tensors.check_shape(spec, list(tensor.shape), max_rows)
        typed = tensor.HasField("contents")
        if raw:
            if typed:
                raise ApiError(400, f"input {spec.name!r} has both contents and raw_input_contents; send one")
            feeds[spec.name] = tensors.from_bytes(spec, source, shape, memoryview(raw[i]))
            continue
        field = TYPED.get(tensor.datatype)
        if field is None:
            raise ApiError(
                400, f"input {spec.name!r}: datatype {tensor.datatype} has no typed contents; send raw"
            )
        values = getattr(tensor.contents, field)
        dtype = np.bool_ if field == "bool_contents" else None
        flat = np.array(values, dtype=dtype) if len(values) else np.array([], dtype=source)
        if flat.dtype.kind == "f" and source.kind != "f":
            raise ApiError(400, f"input {spec.name!r}: {field} holds floats for datatype {tensor.datatype}")
        tensors.check_range(flat, spec.name, tensor.datatype)
        feeds[spec.name] = tensors.from_flat(spec, source, shape, flat)
    return feeds


def encode(
    model: Model, request: pb.ModelInferRequest, outputs: dict[str, np.ndarray]
) -> pb.ModelInferResponse:
    """The response with the requested outputs (all when none are named), raw little-endian bytes."""
    requested = []
    for out in request.outputs:
        if "classification" in out.parameters:
            raise ApiError(400, "the classification extension is not supported")
        requested.append((out.name, False))
    chosen = tensors.select_outputs(model, requested, False)
    return pb.ModelInferResponse(
        model_name=request.model_name,
        id=request.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=spec.name,
                datatype=tensors.datatype(outputs[spec.name].dtype),
                shape=outputs[spec.name].shape,
            )
            for spec, _ in chosen
        ],
        raw_output_contents=[tensors.to_bytes(outputs[spec.name]) for spec, _ in chosen],
    )
