"""Helpers for the server tests: an in-process app over loaded models, and reference predictions."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient; httpx is what we pin
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from serve import load
from serve.engine.registry import Registry
from serve.http.app import create_app
from serve.http.config import ServeConfig

MODELS = ["keras_linear", "torch_linear"]
LEAK_MARKERS = ("Traceback", "/tmp", 'File "')  # plus the artifacts path of the server at hand


def assert_no_leak(body: str, artifacts: Path | str) -> None:
    """An HTTP error body must not carry a stack trace or a filesystem path (README "Reliability")."""
    for marker in (*LEAK_MARKERS, str(artifacts), str(Path(artifacts).resolve())):
        assert marker not in body, f"error body leaks {marker!r}: {body[:300]}"


class CheckedClient(TestClient):
    """A TestClient that checks every error response it receives for stack traces and paths,
    so every server test also tests that (README "Reliability")."""

    artifacts: Path

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        if response.status_code >= 400:
            assert_no_leak(response.text, self.artifacts)
        return response


def client(artifacts: Path, load_models: bool = True, **overrides) -> CheckedClient:
    """A TestClient for a server over `artifacts`; models loaded synchronously unless told not to.

    Without `load_models` the client is not entered, so the lifespan never starts loading them
    and the server stays "not ready".
    """
    config = replace(ServeConfig(artifacts=artifacts), **overrides)
    registry = Registry(artifacts)
    if load_models:
        registry.load_all()
    api = CheckedClient(create_app(config, registry), raise_server_exceptions=False)
    api.artifacts = Path(artifacts)
    return api


def reference(artifacts: Path, name: str, x) -> np.ndarray:
    """What the embeddable loader predicts: the server must return exactly this."""
    return load(name, artifacts).predict(np.asarray(x, dtype=np.float32).reshape(-1, 1))
