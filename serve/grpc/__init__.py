"""The KServe V2 / Triton `GRPCInferenceService` on grpcio, started by `python -m serve --grpc-port 8001`.

The service definition is tritonclient's own generated code (`tritonclient.grpc.service_pb2` /
`service_pb2_grpc`), so `tritonclient.grpc` talks to it unchanged. An adapter over the
engine (serve/engine/), like the HTTP protocols: the same validation, messages and statistics.
"""
