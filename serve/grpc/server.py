"""`start(config, registry)`: the gRPC server on the running event loop (the HTTP server's uvloop).

Called by `python -m serve` after uvicorn has started; the same host as HTTP (loopback unless
told), `--grpc-port`, and a message size limit of `--max-body-bytes` both ways in (larger
requests get RESOURCE_EXHAUSTED from grpcio itself).
"""

from __future__ import annotations

import logging

import grpc
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serve.grpc.service import InferenceService
from serve.http.config import ServeConfig
from serve.http.registry import Registry

logger = logging.getLogger(__name__)


async def start(config: ServeConfig, registry: Registry) -> grpc.aio.Server:
    """Start serving; RuntimeError naming the address when it cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.max_send_message_length", -1),  # the answer is at most 4 bytes a row
            ("grpc.so_reuseport", 0),  # a port in use is an error, not shared with another server
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(registry, config), server)
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
