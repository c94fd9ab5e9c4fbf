"""python -m serve.web [--artifacts DIR] [--host 127.0.0.1] [--port 8080] [--trust-key PEM]

Serves the page that runs both ONNX models in the browser with onnxruntime-web (WASM):
type x, see the Keras-origin and PyTorch-origin predictions beside the analytic reference.
Needs the npm packages (`npm ci --ignore-scripts`) and an exported artifacts directory.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from oneneuron import cli

logger = logging.getLogger("serve.web")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "Serve the page that runs both ONNX models in the browser (onnxruntime-web, WASM).",
        "python -m serve.web --artifacts artifacts --port 8080",
        command="serve.web",
    )
    cli.artifacts_arg(p, writes=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    p.add_argument("--port", type=cli.port, default=8080, help="TCP port (0 picks a free one)")
    p.add_argument(
        "--trust-key",
        type=Path,
        metavar="PEM",
        help="public key (python -m export.keys): the page refuses models its model.sig does not cover",
    )
    return p


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serve.web.app import WebConfig, build_app

    config = WebConfig(
        artifacts=Path(args.artifacts), host=args.host, port=args.port, trust_key=args.trust_key
    )
    logger.info("config: %s", {k: str(v) for k, v in asdict(config).items()})
    app = build_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    # Print the real address once bound (port 0 picks one), as the last line before serving.
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets=sockets)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                logger.info("serving http://%s:%d/ (Ctrl-C to stop)", host, port)

    server.startup = startup
    server.run()
    return 0


def main() -> None:
    cli.run(serve, build_parser().parse_args())


if __name__ == "__main__":
    main()
