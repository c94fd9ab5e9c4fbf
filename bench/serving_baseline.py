"""The ceiling of the stack: `python -m bench.serving_baseline --model M.onnx --port P`.

A bare Starlette route on the same uvicorn stack as `python -m serve` (httptools + uvloop),
parsing the same V2 JSON with the same parser (orjson) and running the same onnxruntime session
(same options as `serve.loader`), with no validation, metrics or error handling. Any number of
inputs (each in the V2 datatype its request names) and outputs (all of them, each in its own
datatype). bench/serving.py compares the server with it side by side.
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

# The dtype tables are the server's (serve/loader.py, serve/engine/tensors.py), copied rather than
# imported: the bare route loads none of the server's modules, so its process stays as lean as it is.
# V2 datatype -> numpy dtype, for the inputs (the loader's dtypes; BYTES and BF16 are not served)
DTYPES = {
    v2: np.dtype(t)
    for v2, t in (
        ("BOOL", np.bool_),
        ("INT8", np.int8),
        ("INT16", np.int16),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("UINT8", np.uint8),
        ("UINT16", np.uint16),
        ("UINT32", np.uint32),
        ("UINT64", np.uint64),
        ("FP16", np.float16),
        ("FP32", np.float32),
        ("FP64", np.float64),
    )
}
DATATYPES = {dtype: v2 for v2, dtype in DTYPES.items()}  # numpy dtype -> V2 datatype, for the outputs
# onnxruntime's element type -> numpy dtype (an output's dtype is fixed by the model)
ORT_DTYPES = {
    "tensor(bool)": np.bool_,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}


def create_app(model_path: str) -> Starlette:
    """One POST route, /v2/models/{name}/infer, answering the V2 JSON response with every output.

    Each input is taken as its request names it (name, V2 datatype, shape). The output names and
    datatypes are worked out here, once, and a model with one input and one output gets a route
    without the loops (they cost ~0.5 us a request), so a request does only the parse, the arrays,
    the run and the response."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3  # as serve.loader
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    outputs = [(o.name, DATATYPES[np.dtype(ORT_DTYPES[o.type])]) for o in session.get_outputs()]
    out_names = [name for name, _ in outputs]
    inputs = session.get_inputs()
    dtypes = DTYPES

    if len(inputs) == 1 and len(outputs) == 1:
        x_name, (y_name, y_type) = inputs[0].name, outputs[0]

        async def infer(request: Request) -> Response:
            body = orjson.loads(await request.body())
            tensor = body["inputs"][0]
            x = np.asarray(tensor["data"], dtype=dtypes[tensor["datatype"]]).reshape(tensor["shape"])
            y = session.run(out_names, {x_name: x})[0]
            out = {
                "model_name": request.path_params["name"],
                "model_version": "1",
                "outputs": [
                    {"name": y_name, "datatype": y_type, "shape": list(y.shape), "data": y.ravel().tolist()}
                ],
            }
            return Response(orjson.dumps(out), media_type="application/json")

    else:

        async def infer(request: Request) -> Response:
            body = orjson.loads(await request.body())
            feeds = {}
            for tensor in body["inputs"]:
                feeds[tensor["name"]] = np.asarray(tensor["data"], dtype=dtypes[tensor["datatype"]]).reshape(
                    tensor["shape"]
                )
            ys = session.run(out_names, feeds)
            tensors = []
            for (name, datatype), y in zip(outputs, ys, strict=True):
                tensors.append(
                    {"name": name, "datatype": datatype, "shape": list(y.shape), "data": y.ravel().tolist()}
                )
            out = {"model_name": request.path_params["name"], "model_version": "1", "outputs": tensors}
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
