"""The ceiling of the stack: `python -m bench.serving_baseline --model M.onnx --port P`.

A bare Starlette route on the same uvicorn stack as `python -m serve` (httptools + uvloop),
parsing the same V2 JSON with the same parser (orjson) and running the same onnxruntime session
(same options as `serve.loader`), with no validation, metrics or error handling.
bench/serving.py compares the server with it side by side.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app(model_path: str) -> Starlette:
    """One POST route, /v2/models/{name}/infer, answering the V2 JSON response."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3  # as serve.loader
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    x_name, y_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    async def infer(request: Request) -> Response:
        body = orjson.loads(await request.body())
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = session.run([y_name], {x_name: x})[0]
        out = {
            "model_name": request.path_params["name"],
            "model_version": "1",
            "outputs": [
                {"name": y_name, "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}
            ],
        }
        return Response(orjson.dumps(out), media_type="application/json")

    return Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.serving_baseline", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    # The same uvicorn settings as serve/__main__.py (which adds only the header-timeout sweep).
    uvicorn.run(
        create_app(args.model),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
        log_config=None,
    )


if __name__ == "__main__":
    main()
