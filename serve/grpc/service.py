"""`InferenceService`: the GRPCInferenceService methods over a `Registry`, with HTTP's validation.

Errors are the HTTP server's `ApiError`s with their messages, mapped to gRPC status codes:
400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE;
anything unexpected is logged and answered INTERNAL with a fixed message.
Inputs come as `raw_input_contents` (what tritonclient sends) or typed `contents`; the output
is always `raw_output_contents` (FP32, little-endian), as Triton answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serve.grpc import tensors as any_signature
from serve.http import binary, repository, stats, tensors
from serve.http.config import ServeConfig
from serve.http.httpio import INTERNAL, ApiError, preview
from serve.http.registry import READY, Registry
from serve.http.v2 import EXTENSIONS, PLATFORM, SERVER_NAME, SERVER_VERSION, check_input, check_prediction
from serve.loader import Model, PredictInputError

logger = logging.getLogger(__name__)

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# V2 datatype -> (InferTensorContents field, numpy dtype); FP16 and BF16 have no typed field.
TYPED = {
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
}


def decode_infer(model: Model, request: pb.ModelInferRequest, max_rows: int) -> np.ndarray:
    """The float32 (rows, n) batch of a ModelInferRequest, validated like an HTTP V2 request."""
    if len(request.inputs) != 1:
        raise ApiError(
            400,
            f"'inputs' must hold exactly one tensor named {model.input_name!r}, got {len(request.inputs)}",
        )
    tensor = request.inputs[0]
    name, datatype = tensor.name, tensor.datatype
    rows = check_input(model, name, datatype, list(tensor.shape), max_rows)
    count = rows * model.n_features
    typed = tensor.HasField("contents")
    if request.raw_input_contents:
        if typed:
            raise ApiError(400, f"input {name!r} has both contents and raw_input_contents; send one of them")
        if len(request.raw_input_contents) != 1:
            raise ApiError(
                400, f"{len(request.raw_input_contents)} raw_input_contents for 1 input; send one per input"
            )
        flat = binary.decode(memoryview(request.raw_input_contents[0]), datatype, count, name)
    else:
        if datatype not in TYPED:
            raise ApiError(400, f"input {name!r}: datatype {datatype} has no typed contents; send raw bytes")
        field, dtype = TYPED[datatype]
        values = getattr(tensor.contents, field)
        if len(values) != count:
            raise ApiError(
                400, f"input {name!r}: shape needs {count} values, contents.{field} has {len(values)}"
            )
        flat = np.array(values, dtype=dtype)
        tensors.check_range(flat, name, datatype)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 -> inf, refused by predict
        return flat.astype(np.float32, copy=False).reshape(rows, model.n_features)


def _outputs(model: Model, request: pb.ModelInferRequest) -> None:
    for out in request.outputs:
        if out.name != model.output_name:
            raise ApiError(
                400, f"unknown output {preview(out.name)}; the model's output is {model.output_name!r}"
            )
        if "classification" in out.parameters:
            raise ApiError(400, "the classification extension is not supported: the model is a regression")


def _tensors(args: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=a["name"], datatype=tensors.datatype(a["dtype"]), shape=tensors.dims(a["shape"])
        )
        for a in args
    ]


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The service; methods not listed here answer UNIMPLEMENTED (shared memory, trace, logs)."""

    def __init__(self, registry: Registry, config: ServeConfig):
        self.registry, self.config, self.max_rows = registry, config, config.row_limit

    async def _call(self, context: grpc.aio.ServicerContext, method: str, fn, *args):
        start = time.perf_counter()
        status = 200
        try:
            return fn(*args)
        except ApiError as exc:
            status = exc.status
            await context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception:
            status = 500
            logger.exception("internal error in gRPC %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL)
        finally:
            self.registry.metrics.observe(f"grpc {method}", "GRPC", status, time.perf_counter() - start)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.registry.ready)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelReady(self, request, context):
        def ready():
            state = self.registry.state(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=state.state == READY)

        return await self._call(context, "ModelReady", ready)

    async def ModelMetadata(self, request, context):
        def metadata():
            sig = self.registry.model(request.name, request.version or None).signature
            state = self.registry.state(request.name)
            return pb.ModelMetadataResponse(
                name=request.name,
                versions=[v.label for v in state.versions.values() if v.model is not None],
                platform=PLATFORM,
                inputs=_tensors(sig["inputs"]),
                outputs=_tensors(sig["outputs"]),
            )

        return await self._call(context, "ModelMetadata", metadata)

    async def ModelInfer(self, request, context):
        return await self._call(context, "ModelInfer", self._infer, request)

    def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        start = time.perf_counter_ns()
        name = request.model_name
        served = self.registry.served(name, request.model_version or None)  # held to the end
        model = served.model
        if model.n_features is None:  # any other signature: serve/grpc/tensors.py
            try:
                outputs = tensors.run(model, any_signature.decode(model, request, self.max_rows))
                response = any_signature.encode(model, request, outputs)
            except ApiError:
                stats.fail(served.counts, start)
                raise
            rows = len(next(iter(outputs.values())))
            self.registry.metrics.rows(name, "grpc", rows)
            stats.ok(served.counts, rows, start)
            response.model_version = served.label
            return response
        try:
            batch = decode_infer(model, request, self.max_rows)
            _outputs(model, request)
            try:
                y = model.predict(batch)
            except PredictInputError as exc:
                raise ApiError(400, f"input {model.input_name!r}: {exc}") from None
            check_prediction(y)
        except ApiError:
            stats.fail(served.counts, start)  # counted per version, with HTTP's
            raise
        self.registry.metrics.rows(name, "grpc", len(y))
        stats.ok(served.counts, len(y), start)
        out = pb.ModelInferResponse.InferOutputTensor(name=model.output_name, datatype="FP32", shape=y.shape)
        return pb.ModelInferResponse(
            model_name=name,
            model_version=served.label,
            id=request.id,
            outputs=[out],
            raw_output_contents=[y.astype("<f4", copy=False).tobytes()],
        )

    async def ModelStatistics(self, request, context):
        def statistics():
            found = repository.stats(self.registry, request.name or None, request.version or None)
            return pb.ModelStatisticsResponse(model_stats=[_model_stats(s) for s in found["model_stats"]])

        return await self._call(context, "ModelStatistics", statistics)

    async def RepositoryIndex(self, request, context):
        rows = repository.index(self.registry, request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**r) for r in rows])

    async def RepositoryModelLoad(self, request, context):
        return await self._control(context, "RepositoryModelLoad", request.model_name, "load")

    async def RepositoryModelUnload(self, request, context):
        return await self._control(context, "RepositoryModelUnload", request.model_name, "unload")

    async def _control(self, context, method: str, name: str, action: str):
        start = time.perf_counter()
        status = 200
        try:  # a load verifies and self-tests: a worker thread, not the event loop
            await asyncio.get_running_loop().run_in_executor(
                None, repository.control, self.registry, self.config, name, action
            )
        except ApiError as exc:
            status = exc.status
            await context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        finally:
            self.registry.metrics.observe(f"grpc {method}", "GRPC", status, time.perf_counter() - start)
        return pb.RepositoryModelLoadResponse() if action == "load" else pb.RepositoryModelUnloadResponse()


def _model_stats(s: dict[str, Any]) -> pb.ModelStatistics:
    """Triton's JSON statistics entry (serve.http.stats) as the protobuf message."""
    i = s["inference_stats"]

    def duration(key: str) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=i[key]["count"], ns=i[key]["ns"])

    return pb.ModelStatistics(
        name=s["name"],
        version=s["version"],
        last_inference=s["last_inference"],
        inference_count=s["inference_count"],
        execution_count=s["execution_count"],
        inference_stats=pb.InferStatistics(
            success=duration("success"), fail=duration("fail"), compute_infer=duration("compute_infer")
        ),
    )
