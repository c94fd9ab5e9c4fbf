"""`InferenceService`: the GRPCInferenceService methods over the engine (serve/engine/).

An adapter: a ModelInferRequest becomes the engine's `Request` (each input as raw contents, one
per input in the order of `inputs`, what tritonclient sends, or typed `contents`; BOOL in
bool_contents; FP16 and BF16 only raw) and its `Result` a ModelInferResponse with the requested
outputs (all when none are named) as raw little-endian bytes in their own datatype, as Triton
answers. The engine's errors map to status codes by their `code` (INVALID_ARGUMENT, NOT_FOUND,
RESOURCE_EXHAUSTED, UNAVAILABLE); anything unexpected is logged and answered INTERNAL with a
fixed message.
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

from serve.engine import Engine, Input
from serve.engine import Request as InferRequest
from serve.engine.dtypes import TYPED_FIELDS, datatype
from serve.engine.errors import InputError, ServeError, preview
from serve.engine.registry import READY
from serve.engine.tensors import dims, to_bytes
from serve.http import repository
from serve.http.config import ServeConfig
from serve.http.httpio import INTERNAL
from serve.http.v2 import EXTENSIONS, PLATFORM, SERVER_NAME, SERVER_VERSION

logger = logging.getLogger(__name__)


def decode(request: pb.ModelInferRequest) -> InferRequest:
    """A ModelInferRequest as the engine's `Request`."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InputError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input, in order"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        typed = tensor.HasField("contents")
        if raw:
            if typed:
                raise InputError(
                    f"input {preview(tensor.name)} has both contents and raw_input_contents; send one"
                )
            inputs.append(Input(tensor.name, tensor.datatype, list(tensor.shape), raw=memoryview(raw[i])))
            continue
        field = TYPED_FIELDS.get(tensor.datatype)
        if field is None:
            raise InputError(
                f"input {preview(tensor.name)}: datatype {preview(tensor.datatype)} has no typed contents; "
                "send raw_input_contents"
            )
        values = getattr(tensor.contents, field)
        flat = np.array(values, dtype=np.bool_ if field == "bool_contents" else None)
        if not len(values):
            flat = np.array([], dtype=np.int64)
        inputs.append(Input(tensor.name, tensor.datatype, list(tensor.shape), flat))
    requested = []
    for out in request.outputs:
        if "classification" in out.parameters:
            raise InputError("the classification extension is not supported")
        requested.append((out.name, False))
    return InferRequest(inputs, request.id, requested)


async def _decoded(request: pb.ModelInferRequest) -> InferRequest:
    return decode(request)  # awaited by the engine: a refused request counts in its statistics


def _tensors(args: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=a["name"], datatype=datatype(a["dtype"]), shape=dims(a["shape"])
        )
        for a in args
    ]


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The service; methods not listed here answer UNIMPLEMENTED (shared memory, trace, logs)."""

    def __init__(self, engine: Engine, config: ServeConfig):
        self.engine, self.registry, self.config = engine, engine.registry, config

    async def _call(self, context: grpc.aio.ServicerContext, method: str, fn, *args):
        """Run `fn` (a coroutine function or a plain one); the engine's errors -> status codes."""
        start = time.perf_counter()
        status = 200
        try:
            out = fn(*args)
            return (await out) if asyncio.iscoroutine(out) else out
        except ServeError as exc:
            status = exc.status
            await context.abort(getattr(grpc.StatusCode, exc.code), exc.message)
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

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        served = self.engine.served(request.model_name, request.model_version or None)  # held to the end
        result = await self.engine.infer(served, _decoded(request), "grpc")
        return pb.ModelInferResponse(
            model_name=request.model_name,
            model_version=served.label,
            id=request.id,
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(name=o.name, datatype=o.datatype, shape=o.array.shape)
                for o in result.outputs
            ],
            raw_output_contents=[to_bytes(o.array) for o in result.outputs],
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
        except ServeError as exc:
            status = exc.status
            await context.abort(getattr(grpc.StatusCode, exc.code), exc.message)
        finally:
            self.registry.metrics.observe(f"grpc {method}", "GRPC", status, time.perf_counter() - start)
        return pb.RepositoryModelLoadResponse() if action == "load" else pb.RepositoryModelUnloadResponse()


def _model_stats(s: dict[str, Any]) -> pb.ModelStatistics:
    """Triton's JSON statistics entry (serve.engine.stats) as the protobuf message."""
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
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=b["batch_size"],
                compute_infer=pb.StatisticDuration(**b["compute_infer"]),
            )
            for b in s["batch_stats"]
        ],
    )
