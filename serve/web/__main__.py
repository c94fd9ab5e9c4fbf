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

    from serve.listen import bind, bound_port
    from serve.web.app import WebConfig, build_app

    config = WebConfig(
        artifacts=Path(args.artifacts), host=args.host, port=args.port, trust_key=args.trust_key
    )
    logger.info("config: %s", {k: str(v) for k, v in asdict(config).items()})
    app = build_app(config)
    sockets = bind(config.host, config.port)  # a port in use: one error line naming --port, exit 2
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    # The real address (port 0 picks one), as the last line before serving.
    logger.info("serving http://%s:%d/ (Ctrl-C to stop)", config.host, bound_port(sockets))
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0


def main() -> None:
    cli.run(serve, build_parser().parse_args())


if __name__ == "__main__":
    main()
