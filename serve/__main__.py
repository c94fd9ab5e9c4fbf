"""Serve every ONNX model in the manifest: `python -m serve [--artifacts DIR] [--port 8000]`.

Speaks the Open Inference Protocol (KServe V2) REST with Triton's binary tensor data
extension, and TF Serving's REST API; see README "Serving". Ctrl-C or SIGTERM shuts down
gracefully (uvicorn finishes in-flight requests).
"""

from __future__ import annotations

import json
import logging

import uvicorn

from core import cli
from serve.http.app import create_app
from serve.http.config import ServeConfig
from serve.http.registry import Registry

logger = logging.getLogger(__name__)


def serve(config: ServeConfig) -> None:
    """Check the manifest, then run the server until interrupted."""
    cli.ensure_dir(config.artifacts, create=False)
    registry = Registry(config.artifacts, config.threads)  # a missing/empty manifest fails here, exit 2
    logger.info(
        "serving %s from %s on http://%s:%d",
        ", ".join(registry.names),
        config.artifacts,
        config.host,
        config.port,
    )
    app = create_app(config, registry)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        access_log=config.access_log,
        lifespan="on",
        log_config=None,
    )


def main() -> None:
    d = ServeConfig()
    p = cli.parser(
        "Serve the exported ONNX models over KServe V2 / Triton and TF Serving REST.",
        "python -m serve --artifacts artifacts --port 8000   # then, from another terminal:\n"
        "  curl localhost:8000/v2/health/ready",
        command="serve",
    )
    cli.artifacts_arg(p)
    p.add_argument("--host", default=d.host, help="interface to bind; 0.0.0.0 for every interface")
    p.add_argument("--port", type=int, default=d.port, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--max-body-bytes",
        type=cli.positive_int,
        default=d.max_body_bytes,
        help="larger request bodies are refused with 413",
    )
    p.add_argument(
        "--max-rows",
        type=cli.positive_int,
        default=d.max_rows,
        help="more rows in one request are refused with 413",
    )
    p.add_argument(
        "--body-timeout",
        type=cli.positive_float,
        default=d.body_timeout,
        metavar="SECONDS",
        help="a request body not received in full within this time is answered 408 and the connection closed",
    )
    p.add_argument(
        "--threads", type=cli.positive_int, default=d.threads, help="onnxruntime intra-op threads per model"
    )
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")

    def _main(args) -> int:
        config = ServeConfig(
            artifacts=args.artifacts,
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            max_rows=args.max_rows,
            threads=args.threads,
            body_timeout=args.body_timeout,
            access_log=args.access_log,
        )
        print(f"config {json.dumps(config.describe())}", flush=True)
        serve(config)
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
