"""Model control: the manifest watcher (`--model-control poll`) and Triton's model-repository API.

Routes (Triton's HTTP shapes): POST /v2/repository/index -> [{name, version, state, reason}];
POST /v2/repository/models/{name}/load and /unload -> {} (explicit mode; 400 otherwise, as Triton
answers in poll mode); GET /v2/models/{name}[/versions/{v}]/stats -> {"model_stats": [...]}.
gRPC's RepositoryIndex / RepositoryModelLoad / RepositoryModelUnload / ModelStatistics call the
same functions (serve/grpc/service.py).

The watcher checks the manifest's commit point (its inode, size and mtime: an export renames a
new manifest into place) and `model.sig` every `--poll-seconds`; on a change it reloads in a
worker thread (`Registry.reload`: new versions are checked before they are swapped in).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from oneneuron.schema import MANIFEST
from serve.engine import stats as statistics
from serve.engine.errors import InputError, preview
from serve.engine.registry import FAILED, READY, UNLOADED, Registry
from serve.http.config import ServeConfig
from serve.http.httpio import json_response, parse_json_object, read_body

logger = logging.getLogger(__name__)

SIGNATURE_FILE = "model.sig"  # oneneuron.signing.SIGNATURE (not imported: cryptography loads lazily)
TRITON_STATES = {READY: "READY", FAILED: "UNAVAILABLE", UNLOADED: "UNAVAILABLE"}


def stamp(registry: Registry) -> tuple:
    """What changes when an export commits (or a signature is written): inode, size, mtime."""
    out = []
    for name in (MANIFEST, SIGNATURE_FILE):
        try:
            st = os.stat(registry.artifacts / name)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


async def watch(registry: Registry, seconds: float) -> None:
    """Poll mode: reload whenever the manifest (or its signature) changes; runs until cancelled."""
    loop = asyncio.get_running_loop()
    seen = stamp(registry)
    if not registry.loaded:
        await loop.run_in_executor(None, registry.load_all)
    while True:
        await asyncio.sleep(seconds)
        now = stamp(registry)
        if now != seen:
            seen = now
            logger.info("%s changed: reloading", MANIFEST)
            await loop.run_in_executor(None, registry.reload)


def index(registry: Registry, ready_only: bool) -> list[dict[str, Any]]:
    """Triton's repository index: one row per known version (a model with none: one row)."""
    rows = []
    for state in list(registry.states.values()):
        versions = list(state.versions.values())
        if not versions:
            rows.append(
                {
                    "name": state.name,
                    "state": TRITON_STATES.get(state.state, "LOADING"),
                    "reason": state.error or "",
                }
            )
        for v in versions:
            rows.append(
                {
                    "name": state.name,
                    "version": v.label,
                    "state": TRITON_STATES.get(v.state, "LOADING"),
                    "reason": registry.reason(state, v),
                }
            )
    return [r for r in rows if not ready_only or r["state"] == "READY"]


def control(registry: Registry, config: ServeConfig, name: str, action: str) -> None:
    """Load (re-read the manifest for `name`, check and swap in its versions) or unload `name`.
    Blocking: call it from a worker thread."""
    if config.model_control != "explicit":
        registry.state(name)  # 404 for a model the server does not know
        raise InputError(
            f"cannot {action} {preview(name)}: the server runs with --model-control {config.model_control} "
            "(models follow the manifest); start it with --model-control explicit to load and unload",
        )
    if action == "unload":
        registry.unload(name)
        return
    registry.reload(only=name)
    if registry.refusal is not None:  # a rolled-back manifest: nothing changed
        raise InputError(registry.refusal)
    state = registry.state(name)
    if state.default is None:
        raise InputError(state.error or f"model {name!r} has no version that passed its checks")


def stats(registry: Registry, name: str | None, version: str | None) -> dict[str, Any]:
    """Triton's statistics response for one model (every version, or `version`) or every model."""
    out = []
    for model in [name] if name else registry.names:
        state = registry.state(model, version)  # 404 for an unknown model or version
        versions = [v for v in state.versions.values() if version is None or v.label == version]
        out += [statistics.triton(model, v.label, v.counts, v.batch_stats) for v in versions]
    return {"model_stats": out}


class Repository:
    """The HTTP route handlers."""

    def __init__(self, registry: Registry, config: ServeConfig):
        self.registry, self.config = registry, config

    async def index(self, request: Request) -> Response:
        body = (await read_body(request, 65536, timeout=self.config.body_timeout))[0]
        ready = False
        if body.strip():
            ready = parse_json_object(body, "repository index request").get("ready", False)
            if not isinstance(ready, bool):
                raise InputError(f"'ready' must be true or false, got {preview(ready)}")
        return json_response(index(self.registry, ready))

    async def _control(self, request: Request, action: str) -> Response:
        name = request.path_params["name"]
        await read_body(request, 65536, timeout=self.config.body_timeout)  # parameters are not used
        await asyncio.get_running_loop().run_in_executor(
            None, control, self.registry, self.config, name, action
        )
        return json_response({})

    async def load(self, request: Request) -> Response:
        return await self._control(request, "load")

    async def unload(self, request: Request) -> Response:
        return await self._control(request, "unload")

    async def stats(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        return json_response(stats(self.registry, name, version))

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("/v2/repository/index", "POST", self.index),
            ("/v2/repository/models/{name}/load", "POST", self.load),
            ("/v2/repository/models/{name}/unload", "POST", self.unload),
            ("/v2/models/{name}/stats", "GET", self.stats),
            ("/v2/models/{name}/versions/{version}/stats", "GET", self.stats),
        ]
