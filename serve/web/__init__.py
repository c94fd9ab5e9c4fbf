"""The browser page: both ONNX models in onnxruntime-web (WASM), served by `python -m serve.web`.

`serve.web.app.build_app(WebConfig(...))` returns the Starlette app, so another server can
mount it under a path; `python -m serve.web` runs it alone on uvicorn.
"""
