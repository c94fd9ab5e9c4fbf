"""Helpers for the server tests: an in-process app over loaded models, and reference predictions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import warnings

import numpy as np

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient; httpx is what we pin
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from serve import load
from serve.app import create_app
from serve.config import ServeConfig
from serve.registry import Registry

MODELS = ["keras_linear", "torch_linear"]


def client(artifacts: Path, load_models: bool = True, **overrides) -> TestClient:
    """A TestClient for a server over `artifacts`; models loaded synchronously unless told not to.

    Without `load_models` the client is not entered, so the lifespan never starts loading them
    and the server stays "not ready".
    """
    config = replace(ServeConfig(artifacts=artifacts), **overrides)
    registry = Registry(artifacts)
    if load_models:
        registry.load_all()
    return TestClient(create_app(config, registry), raise_server_exceptions=False)


def reference(artifacts: Path, name: str, x) -> np.ndarray:
    """What the embeddable loader predicts: the server must return exactly this."""
    return load(name, artifacts).predict(np.asarray(x, dtype=np.float32).reshape(-1, 1))
