"""`start(config, registry)`: the gRPC server on the running event loop (the HTTP server's uvloop).

Called by `python -m serve` after uvicorn has started; the same host as HTTP (loopback unless
told), `--grpc-port`, and a message size limit of `--max-body-bytes` both ways in (larger
requests get RESOURCE_EXHAUSTED from grpcio itself).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from serve.engine import Engine
from serve.grpc.service import InferenceService
from serve.http.config import ServeConfig

logger = logging.getLogger(__name__)


async def start(config: ServeConfig, engine: Engine) -> grpc.aio.Server:
    """Start serving; RuntimeError naming the address when it cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.max_send_message_length", -1),  # the answer is at most 4 bytes a row
            ("grpc.so_reuseport", 0),  # a port in use is an error, not shared with another server
            # A connection that completes no handshake, or that then holds no call, is closed: 1,100
            # connections that sent the HTTP/2 preface and nothing else used to be kept forever and
            # exhausted the file limit (issue 23).
            ("grpc.server_handshake_timeout_ms", int(config.header_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(config.grpc_idle_seconds * 1000)),
            ("grpc.max_allowed_incoming_connections", config.grpc_max_connections),
        ]
    )
    server.add_generic_rpc_handlers((handlers(InferenceService(engine, config)),))
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"{host}:{config.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise RuntimeError(
            f"cannot listen for gRPC on {address} (port in use?); "
            "pick another --grpc-port, or 0 to disable gRPC"
        )
    await server.start()
    logger.info("gRPC (KServe V2 / Triton GRPCInferenceService) on %s", address)
    return server


def handlers(service: InferenceService) -> grpc.GenericRpcHandler:
    """The service's unary methods, each parsing its own request: grpcio's deserializer answers a
    malformed message with UNKNOWN and a traceback per call; here it is INVALID_ARGUMENT and one
    log line. Methods the service does not implement (shared memory, trace, logs, streaming) are
    left out, so grpcio answers UNIMPLEMENTED."""
    descriptor = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    table = {}
    for method in descriptor.methods:
        implementation = getattr(service, method.name, None)
        if (
            method.client_streaming
            or method.server_streaming
            or not inspect.iscoroutinefunction(implementation)
        ):
            continue
        table[method.name] = grpc.unary_unary_rpc_method_handler(
            _parsing(method.name, getattr(pb, method.input_type.name), implementation),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    return grpc.method_handlers_generic_handler(descriptor.full_name, table)


def _parsing(
    name: str, request_type: Any, implementation: Callable[[Any, Any], Awaitable[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            what = request_type.__name__
            logger.warning("gRPC %s: a malformed %s (%d bytes): %s", name, what, len(raw), exc)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {request_type.__name__} protobuf message ({exc})",
            )
        return await implementation(request, context)

    return handle
