"""Serve every ONNX model in the manifest: `python -m serve [--artifacts DIR] [--port 8000]`.

Speaks the Open Inference Protocol (KServe V2) REST with Triton's binary tensor data
extension, TF Serving's REST API, and the KServe V2 / Triton gRPC service; see README
"Serving". HTTP runs on uvicorn with httptools + uvloop. Ctrl-C or SIGTERM shuts down
gracefully (in-flight HTTP and gRPC requests finish).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import uvicorn

from oneneuron import cli
from oneneuron.errors import InputError
from serve.engine.registry import Registry
from serve.http.app import create_app
from serve.http.config import MODEL_CONTROL, ServeConfig
from serve.http.protocol import protocol_class
from serve.listen import bind, bound_port

logger = logging.getLogger(__name__)


def serve(config: ServeConfig) -> None:
    """Check the manifest and bind the port, then run the server until interrupted. A start-up
    failure (port in use, an address not of this machine, the gRPC port) is an InputError, exit 2."""
    cli.ensure_dir(config.artifacts, create=False)
    if config.trust_key is not None:  # a missing or wrong key file is exit 2 now, not N unready models
        from oneneuron.signing import load_public_key

        load_public_key(config.trust_key)
    registry = Registry(  # a missing/empty manifest fails here, exit 2; below --min-generation, exit 1
        config.artifacts, config.threads, trust_key=config.trust_key, min_generation=config.min_generation
    )
    sockets = bind(config.host, config.port)  # before any model loads: a bind error is the last line
    app = create_app(config, registry)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http=protocol_class(config.header_timeout, config.max_header_bytes),
            log_level="info",
            access_log=config.access_log,
            lifespan="on",
            log_config=None,
        ),
        config,
        registry,
    )
    server.engine = app.state.engine
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:  # uvicorn's own start-up failure (it logged why), exit 3 otherwise
        server.failure = server.failure or f"the server failed to start (uvicorn exit {exc.code}); see above"
    finally:
        for sock in sockets:
            sock.close()
    if server.failure:
        raise InputError(server.failure)


class _Server(uvicorn.Server):
    """uvicorn's server, with the gRPC service started and stopped on the same event loop."""

    def __init__(self, uv_config: uvicorn.Config, config: ServeConfig, registry: Registry):
        super().__init__(uv_config)
        self.serve_config, self.registry, self.grpc = config, registry, None
        self.failure: str | None = None

    async def startup(self, sockets=None) -> None:
        # gRPC first: its port failing stops the start before the lifespan loads any model, so the
        # error line is the last one (uvicorn skips shutdown when startup did not finish).
        if self.serve_config.grpc_port:
            from serve.grpc.server import start  # grpcio loads only when gRPC is on

            try:
                self.grpc = await start(self.serve_config, self.engine)
            except RuntimeError as exc:
                self.failure = str(exc)  # serve() reports it, exit 2
                self.should_exit = True
                return
        try:
            await super().startup(sockets)
        except BaseException:  # uvicorn's start-up failure exits; stop gRPC on the loop first
            if self.grpc is not None:
                await self.grpc.stop(grace=None)
            raise
        if not self.should_exit:  # said once every port is bound, with the real one for --port 0
            c = self.serve_config
            logger.info(
                "serving %s from %s on http://%s:%d%s",
                ", ".join(self.registry.names),
                c.artifacts,
                c.host,
                bound_port([s for server in self.servers for s in server.sockets]),
                f" and grpc://{c.host}:{c.grpc_port}" if c.grpc_port else "",
            )

    async def shutdown(self, sockets=None) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=5)
        await super().shutdown(sockets)


def main() -> None:
    d = ServeConfig()
    p = cli.parser(
        "Serve the exported ONNX models over KServe V2 / Triton and TF Serving REST.",
        "python -m serve --artifacts artifacts --port 8000   # then, from another terminal:\n"
        "  curl localhost:8000/v2/health/ready",
        command="serve",
    )
    cli.artifacts_arg(p, writes=False)
    p.add_argument("--host", default=d.host, help="interface to bind; 0.0.0.0 for every interface")
    p.add_argument("--port", type=cli.port, default=d.port, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--max-body-bytes",
        type=cli.positive_int,
        default=d.max_body_bytes,
        help="larger request bodies are refused with 413",
    )
    p.add_argument(
        "--max-rows",
        type=cli.positive_int,
        default=None,
        help="more rows in one request are refused with 413 (default: --max-body-bytes, since a row "
        "takes at least one byte, so only the body limit applies)",
    )
    p.add_argument(
        "--body-timeout",
        type=cli.positive_float,
        default=d.body_timeout,
        metavar="SECONDS",
        help="a request body not received in full within this time is answered 408 and the connection closed",
    )
    p.add_argument(
        "--header-timeout",
        type=cli.positive_float,
        default=d.header_timeout,
        metavar="SECONDS",
        help="a connection that has not sent complete request headers within this time is closed",
    )
    p.add_argument(
        "--max-header-bytes",
        type=cli.positive_int,
        default=d.max_header_bytes,
        metavar="BYTES",
        help="a request whose head (request line and headers) is larger gets 431 and is closed",
    )
    p.add_argument(
        "--grpc-port",
        type=cli.port,
        default=d.grpc_port,
        help="KServe V2 / Triton gRPC port on --host; 0 disables gRPC",
    )
    p.add_argument(
        "--grpc-idle-seconds",
        type=cli.positive_float,
        default=d.grpc_idle_seconds,
        metavar="SECONDS",
        help="a gRPC connection that holds no call for this long is closed (its handshake must "
        "complete within --header-timeout)",
    )
    p.add_argument(
        "--grpc-max-connections",
        type=cli.positive_int,
        default=d.grpc_max_connections,
        metavar="N",
        help="gRPC connections open at once; more are refused (keep it under the file limit, ulimit -n)",
    )
    p.add_argument(
        "--threads", type=cli.positive_int, default=d.threads, help="onnxruntime intra-op threads per model"
    )
    p.add_argument(
        "--instances",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="worker threads running each model (Triton's instance_group; default: the model's "
        "triton/<model>/config.pbtxt, else 1)",
    )
    p.add_argument(
        "--max-queue",
        type=cli.positive_int,
        default=d.max_queue,
        metavar="N",
        help="requests queued per model beyond those running; more are answered 503 with Retry-After",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="dynamic batching: merge concurrent requests into runs of up to ROWS rows; 0 turns it off "
        "(default: the dynamic_batching block of triton/<model>/config.pbtxt, else off)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        metavar="US",
        help="dynamic batching: longest wait for more rows, only while requests arrive concurrently",
    )
    p.add_argument(
        "--preferred-batch-sizes",
        type=lambda v: tuple(sorted(int(x) for x in v.split(","))),
        default=None,
        metavar="N,N",
        help="dynamic batching: batch sizes worth waiting (up to --max-queue-delay-us) for",
    )
    p.add_argument(
        "--model-control",
        choices=MODEL_CONTROL,
        default=d.model_control,
        help="poll: load new versions when the manifest changes (checked before they are served); "
        "explicit: only POST /v2/repository/models/{m}/load and /unload; none: load once at start",
    )
    p.add_argument(
        "--poll-seconds",
        type=cli.positive_float,
        default=d.poll_seconds,
        metavar="SECONDS",
        help="poll mode: how often the manifest is checked for a new export",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")
    p.add_argument(
        "--trust-key",
        type=Path,
        metavar="PEM",
        help="public key (python -m export.keys): a model whose model.sig it does not verify stays unready",
    )
    cli.min_generation_arg(p, "at start: exit 1; later: the server keeps the versions it serves")

    def _main(args) -> int:
        config = ServeConfig(
            artifacts=args.artifacts,
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            max_rows=args.max_rows,
            threads=args.threads,
            instances=args.instances,
            max_queue=args.max_queue,
            max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            preferred_batch_sizes=args.preferred_batch_sizes,
            body_timeout=args.body_timeout,
            header_timeout=args.header_timeout,
            max_header_bytes=args.max_header_bytes,
            grpc_port=args.grpc_port,
            grpc_idle_seconds=args.grpc_idle_seconds,
            grpc_max_connections=args.grpc_max_connections,
            access_log=args.access_log,
            trust_key=args.trust_key,
            min_generation=args.min_generation,
            model_control=args.model_control,
            poll_seconds=args.poll_seconds,
        )
        print(f"config {json.dumps(config.describe())}", flush=True)
        serve(config)
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
