"""The models a server serves: every ONNX entry in the manifest, loaded with `serve.loader.load`.

Loading (sha256, onnxruntime session, self-test) runs after the server starts listening, so
`/v2/health/live` answers at once and `/v2/health/ready` turns 200 only when every model has
loaded and passed its self-test. A model that fails stays failed (and the server not ready):
the log says why; clients get a message without filesystem paths.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import MissingArtifactError
from core.fixes import fix
from core.fsio import Root
from core.schema import Manifest
from serve.http.httpio import ApiError, preview
from serve.http.metrics import Metrics
from serve.loader import LoadOptions, Model, load_entry

logger = logging.getLogger(__name__)

VERSION = "1"  # one version per model: the artifact in the manifest
LOADING, READY, FAILED = "LOADING", "READY", "FAILED"


@dataclass
class ModelState:
    """One model's load state; `error` is safe to send to clients."""

    name: str
    state: str = LOADING
    model: Model | None = None
    error: str | None = None


class Registry:
    """Model name -> state, from the manifest of an artifacts directory."""

    def __init__(
        self, artifacts: Path, threads: int = 1, metrics: Metrics | None = None, trust_key: Path | None = None
    ):
        self.artifacts = Path(artifacts)
        self.trust_key = trust_key  # each model's load verifies the signature with it (core/signing.py)
        self.threads = threads
        self.metrics = metrics or Metrics()
        self.root = Root(self.artifacts)
        manifest = Manifest.load(self.artifacts)  # validated: names unique and safe, paths confined
        self.entries = {e.model: e for e in manifest.entries("onnx")}
        names = sorted(self.entries)
        if not names:
            raise MissingArtifactError(
                f"{self.artifacts / 'manifest.json'}: no ONNX models; {fix('onnx', self.artifacts)}"
            )
        for entry in self.entries.values():
            self.root.existing(entry.path)  # a missing file fails at start-up, exit 2
        self.states = {name: ModelState(name) for name in names}
        for name in names:
            self.metrics.model_loaded.labels(name).set(0)
            self.metrics.model_load_failed.labels(name).set(0)
        self.metrics.ready.set(0)
        self.loaded = False  # load_all has run (whatever its outcome)

    @property
    def names(self) -> list[str]:
        return list(self.states)

    @property
    def ready(self) -> bool:
        return all(s.state == READY for s in self.states.values())

    def load_all(self) -> bool:
        """Load and self-test every model; returns whether all of them passed."""
        for state in self.states.values():
            start = time.perf_counter()
            try:
                model = load_entry(
                    self.root,
                    self.entries[state.name],
                    LoadOptions(selftest=False, threads=self.threads, trust_key=self.trust_key),
                )
                expected, actual = model.selftest()  # raises IntegrityError beyond 1e-5
            except Exception as exc:  # one bad model must not stop the others from loading
                state.state, state.error = (
                    FAILED,
                    (
                        f"model {state.name} failed to load or failed its "
                        f"self-test ({type(exc).__name__}); see the server log"
                    ),
                )
                self.metrics.model_load_failed.labels(state.name).set(1)
                logger.error("model %s: %s", state.name, exc, exc_info=not isinstance(exc, ValueError))
                continue
            seconds = time.perf_counter() - start
            state.model, state.state = model, READY
            self.metrics.model_loaded.labels(state.name).set(1)
            self.metrics.selftest_error.labels(state.name).set(abs(actual - expected))
            self.metrics.load_seconds.labels(state.name).set(seconds)
            logger.info(
                "model %s ready: n_features %s, self-test y(%s) = %.6f (stored %.6f), %.1f ms",
                state.name,
                model.n_features,
                model.metadata.get("selftest_x"),
                actual,
                expected,
                seconds * 1e3,
            )
        self.loaded = True
        self.metrics.ready.set(1 if self.ready else 0)
        return self.ready

    def state(self, name: str, version: str | None = None) -> ModelState:
        """The named model's state; 404 for an unknown model or version."""
        state = self.states.get(name)
        if state is None:
            raise ApiError(404, f"unknown model {preview(name)}; this server serves {', '.join(self.states)}")
        if version is not None and version != VERSION:
            raise ApiError(
                404, f"model {name!r} has no version {preview(version)}; available versions: {VERSION}"
            )
        return state

    def model(self, name: str, version: str | None = None) -> Model:
        """The named model, ready to predict; 404 unknown, 503 still loading or failed."""
        state = self.state(name, version)
        if state.model is None:
            raise ApiError(
                503,
                state.error
                or f"model {name!r} is still loading; retry when GET /v2/models/{name}/ready returns 200",
            )
        return state.model
