"""The ceiling of a gRPC benchmark's client: `python -m bench.grpc_ceiling --port P`.

A grpc.aio server on uvloop (as `python -m serve` runs gRPC) whose `ModelInfer` returns one
canned `ModelInferResponse` (the answer `keras_linear` gives for x = 10) without reading the
request or running anything; it counts its answers and reports them as `ModelStatistics`' success
count (how bench/grpc_h2load.py verifies h2load's answers). bench/peers.py drives it with the same
clients (tritonclient.grpc, h2load) as the servers it compares: what it reaches is what that
client can send on this machine, so a server's gRPC req/s can be read against it.
"""

from __future__ import annotations

import argparse

import grpc
import numpy as np
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


class Canned(pb_grpc.GRPCInferenceServiceServicer):
    """Ready, and answers every infer with the same response."""

    def __init__(self) -> None:
        out = pb.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[1, 1])
        self.response = pb.ModelInferResponse(
            model_name="keras_linear",
            model_version="1",
            outputs=[out],
            raw_output_contents=[np.array([[18.981693]], "<f4").tobytes()],
        )
        self.answered = 0  # ModelInfer calls answered (one event loop: no lock)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=True)

    async def ModelInfer(self, request, context):
        self.answered += 1
        return self.response

    async def ModelStatistics(self, request, context):
        success = pb.StatisticDuration(count=self.answered)
        stats = pb.ModelStatistics(
            name="keras_linear", version="1", inference_stats=pb.InferStatistics(success=success)
        )
        return pb.ModelStatisticsResponse(model_stats=[stats])


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Canned(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.grpc_ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    uvloop.run(serve(p.parse_args().port))


if __name__ == "__main__":
    main()
