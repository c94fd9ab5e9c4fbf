"""`InferenceService`: the GRPCInferenceService methods over a `Registry`, with HTTP's validation.

Errors are the HTTP server's `ApiError`s with their messages, mapped to gRPC status codes:
400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE;
anything unexpected is logged and answered INTERNAL with a fixed message.
Inputs come as `raw_input_contents` (what tritonclient sends) or typed `contents`; the output
is always `raw_output_contents` (FP32, little-endian), as Triton answers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serve.grpc import tensors as any_signature
from serve.http import binary, tensors
from serve.http.httpio import INTERNAL, ApiError, preview
from serve.http.registry import FAILED, READY, VERSION, Registry
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

    def __init__(self, registry: Registry, max_rows: int):
        self.registry, self.max_rows = registry, max_rows
        self.stats: dict[
            str, list[int]
        ] = {}  # model -> [ok count, ok ns, fail count, fail ns, rows, last ms]

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
            return pb.ModelMetadataResponse(
                name=request.name,
                versions=[VERSION],
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
        model = self.registry.model(name, request.model_version or None)
        if model.n_features is None:  # any other signature: serve/grpc/tensors.py
            try:
                outputs = tensors.run(model, any_signature.decode(model, request, self.max_rows))
                response = any_signature.encode(model, request, outputs)
            except ApiError:
                self._count(name, ok=False, ns=time.perf_counter_ns() - start, rows=0)
                raise
            rows = len(next(iter(outputs.values())))
            self.registry.metrics.rows(name, "grpc", rows)
            self._count(name, ok=True, ns=time.perf_counter_ns() - start, rows=rows)
            response.model_version = VERSION
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
            self._count(name, ok=False, ns=time.perf_counter_ns() - start, rows=0)
            raise
        self.registry.metrics.rows(name, "grpc", len(y))
        self._count(name, ok=True, ns=time.perf_counter_ns() - start, rows=len(y))
        out = pb.ModelInferResponse.InferOutputTensor(name=model.output_name, datatype="FP32", shape=y.shape)
        return pb.ModelInferResponse(
            model_name=name,
            model_version=VERSION,
            id=request.id,
            outputs=[out],
            raw_output_contents=[y.astype("<f4", copy=False).tobytes()],
        )

    def _count(self, name: str, ok: bool, ns: int, rows: int) -> None:
        s = self.stats.setdefault(name, [0, 0, 0, 0, 0, 0])
        i = 0 if ok else 2
        s[i] += 1
        s[i + 1] += ns
        s[4] += rows
        if ok:
            s[5] = int(time.time() * 1000)

    async def ModelStatistics(self, request, context):
        def statistics():
            names = [request.name] if request.name else self.registry.names
            out = []
            for name in names:
                self.registry.state(name, request.version or None)  # NOT_FOUND for unknown ones
                ok, ok_ns, fail, fail_ns, rows, last = self.stats.get(name, [0] * 6)
                out.append(
                    pb.ModelStatistics(
                        name=name,
                        version=VERSION,
                        last_inference=last,
                        inference_count=rows,
                        execution_count=ok,
                        inference_stats=pb.InferStatistics(
                            success=pb.StatisticDuration(count=ok, ns=ok_ns),
                            fail=pb.StatisticDuration(count=fail, ns=fail_ns),
                            compute_infer=pb.StatisticDuration(count=ok, ns=ok_ns),
                        ),
                    )
                )
            return pb.ModelStatisticsResponse(model_stats=out)

        return await self._call(context, "ModelStatistics", statistics)

    async def RepositoryIndex(self, request, context):
        states = {READY: "READY", FAILED: "UNAVAILABLE"}
        models = [
            pb.RepositoryIndexResponse.ModelIndex(
                name=s.name, version=VERSION, state=states.get(s.state, "LOADING"), reason=s.error or ""
            )
            for s in self.registry.states.values()
            if not request.ready or s.state == READY
        ]
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(self, request, context):
        def load():
            state = self.registry.state(request.model_name)  # NOT_FOUND unless in the manifest
            if state.state != READY:
                self.registry.model(request.model_name)  # UNAVAILABLE: loading, or failed (with why)
            return pb.RepositoryModelLoadResponse()  # already loaded: every manifest model is

        return await self._call(context, "RepositoryModelLoad", load)

    async def RepositoryModelUnload(self, request, context):
        def unload():
            self.registry.state(request.model_name)
            raise ApiError(
                503,
                f"model {request.model_name!r} cannot be unloaded: this server serves every model in the "
                "manifest for its whole run (no model control yet); stop the server instead",
            )

        return await self._call(context, "RepositoryModelUnload", unload)
