"""The app factory: `create_app(ServeConfig)` -> a Starlette app serving V2 and TF Serving REST.

Routes: V2 (serve.http.v2), TF Serving (serve.http.tfserving), Triton's model repository and
statistics (serve.http.repository, which also runs the `--model-control poll` manifest watcher).
Plain Starlette routes, not FastAPI: request validation is hand-written in `serve.http.v2` /
`serve.http.tfserving` (errors name the input and what was expected), and skipping pydantic keeps
a batch-1 infer near the bare-stack ceiling (bench/serving.py measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serve.engine import Engine
from serve.engine.registry import Registry
from serve.http import openapi
from serve.http.config import ServeConfig
from serve.http.httpio import INTERNAL, clip, error_response, instrumented, json_response
from serve.http.repository import Repository, watch
from serve.http.tfserving import TFServing
from serve.http.v2 import V2

logger = logging.getLogger(__name__)


def create_app(config: ServeConfig, registry: Registry | None = None) -> InferFastLane:
    """Build the server. Models load in the background after start-up unless `registry` is
    already loaded (tests pass one); `/v2/health/ready` says when they are."""
    registry = registry or Registry(
        config.artifacts, config.threads, trust_key=config.trust_key, min_generation=config.min_generation
    )
    metrics = registry.metrics
    engine = Engine(registry, config.row_limit, config.limits)
    table = V2(engine, config).routes() + TFServing(engine, config).routes()
    table += Repository(registry, config).routes()

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def openapi_endpoint(request: Request) -> Response:
        return json_response(openapi.document(registry.names))

    table += [("/metrics", "GET", metrics_endpoint), ("/openapi.json", "GET", openapi_endpoint)]
    # Starlette tries routes in order: the inference routes first keeps the hot path's matching short.
    table.sort(key=lambda r: not r[0].endswith(("/infer", ":predict")))
    routes = [
        Route(path, instrumented(path, handler, metrics.observe), methods=[method])
        for path, method, handler in table
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own 404 (no such route) and 405 (wrong method), as JSON like every other error.
        assert isinstance(exc, HTTPException)
        metrics.observe("unmatched", request.method, exc.status_code, 0.0)
        message = {
            404: f"no route {clip(request.method)} {clip(request.url.path)}; see GET /openapi.json",
            405: f"method {clip(request.method)} is not allowed on {clip(request.url.path)}",
        }
        response = error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)))
        response.headers.update(exc.headers or {})  # keeps 405's Allow header
        return response

    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.error("internal error outside a route handler", exc_info=exc)
        return error_response(500, INTERNAL)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task, watcher = None, None
        if config.model_control == "poll":  # loads first (unless loaded), then follows the manifest
            watcher = asyncio.ensure_future(watch(registry, config.poll_seconds))
        elif not registry.loaded:  # load after the socket is up, so /v2/health/live answers meanwhile
            task = asyncio.get_running_loop().run_in_executor(None, registry.load_all)
        yield
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.registry, app.state.config, app.state.engine = registry, config, engine
    infer = {path: route.endpoint for path, route in zip((r[0] for r in table), routes, strict=True)}
    return InferFastLane(
        app, infer["/v2/models/{name}/infer"], infer["/v2/models/{name}/versions/{version}/infer"]
    )


class InferFastLane:
    """The ASGI app `python -m serve` runs: V2 infer requests go straight to their (instrumented)
    handler; everything else, and anything the lane does not recognise, to the Starlette app.

    Starlette's layers (error middleware, exception middleware, the router trying routes, the
    request/response adapter) cost ~8 us of a ~50 us batch-1 infer here; the lane matches the two
    infer paths by splitting the path (the router's `{name}` is one non-empty segment too) and
    calls the same endpoint the route would, so errors, metrics and statistics are the same.
    Attribute access (`state`, `router`, ...) reaches the Starlette app.
    """

    def __init__(self, app: Starlette, infer: Any, infer_version: Any):
        self.app, self.infer, self.infer_version = app, infer, infer_version

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if parts[-1] == "infer" and parts[1] == "v2" and parts[2] == "models" and parts[3]:
                if len(parts) == 5:
                    scope["path_params"] = {"name": parts[3]}
                    endpoint = self.infer
                elif len(parts) == 7 and parts[4] == "versions" and parts[5]:
                    scope["path_params"] = {"name": parts[3], "version": parts[5]}
                    endpoint = self.infer_version
                else:
                    endpoint = None
                if endpoint is not None:
                    scope["app"] = self.app
                    response = await endpoint(Request(scope, receive))
                    # what `Response.__call__` sends (these responses have no background task)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status_code,
                            "headers": response.raw_headers,
                        }
                    )
                    await send({"type": "http.response.body", "body": response.body})
                    return
        await self.app(scope, receive, send)
