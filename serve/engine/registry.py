"""The models a server serves: every kept version of every ONNX model in the manifest.

Loading (sha256, the signature with a trust key, onnxruntime session, self-test) runs after the
server starts listening, so `/v2/health/live` answers at once and `/v2/health/ready` turns 200
when every model's newest version has loaded and passed its self-test (older versions follow).

Reload (`reload`, called by the manifest watcher in poll mode and by the repository API's load in
explicit mode): the manifest is read again; a version not loaded yet is loaded and checked
*before* it is swapped in, and each model's default (what routes without `/versions/{v}` serve)
becomes its newest READY version. A request holds the `Version` it started with, so in-flight
requests finish on it. A version that fails is never served: it shows as FAILED (log, `/metrics`,
metadata) and the previous default keeps serving, even when the manifest no longer lists it.
Clients get error messages without filesystem paths.

Rollback: the registry keeps the highest manifest `generation` it has accepted (`generation`,
at least `--min-generation`; with a trust key, only a generation whose signature verified raises
it). A manifest of a lower generation, e.g. an older signed manifest.json + model.sig put back, is
refused as a whole: nothing changes, one log line says why, `/metrics` counts it and the served
versions' status carries the reason (`refusal`) until a newer manifest is accepted. With a trust
key, a manifest whose signature does not verify changes nothing served: its new versions fail their
own verification, and the versions it no longer lists keep serving.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneneuron.errors import IntegrityError, MissingArtifactError, ToolkitError
from oneneuron.fixes import fix
from oneneuron.fsio import Root
from oneneuron.manifest import require_generation
from oneneuron.schema import MANIFEST, ArtifactEntry, Manifest
from serve.engine.errors import NotFound, Unavailable, preview
from serve.engine.metrics import Metrics
from serve.engine.stats import new_counts
from serve.loader import LoadOptions, Model, load_entry

logger = logging.getLogger(__name__)

LOADING, READY, FAILED, UNLOADED = "LOADING", "READY", "FAILED", "UNLOADED"
# A version label in a URL or a gRPC request: ASCII digits without a leading zero, up to 9 of them.
# str.isdigit() also takes '²', '١' and '１' (int() then fails on some and maps others to 1).
VERSION_LABEL = re.compile(r"[1-9][0-9]{0,8}")


@dataclass
class Version:
    """One stored version of a model; `error` is safe to send to clients."""

    number: int
    entry: ArtifactEntry
    state: str = LOADING
    model: Model | None = None
    error: str | None = None
    label: str = ""  # str(number): what responses carry as model_version
    counts: list[int] = field(default_factory=new_counts)  # serve.engine.stats: Triton's statistics
    batch_stats: dict[int, list[int]] = field(default_factory=dict)  # rows per run -> [runs, ns]
    runner: Any = None  # serve.engine.scheduler.Runner: its workers, queue and batcher (first request)

    def __post_init__(self) -> None:
        self.label = str(self.number)


@dataclass
class ModelState:
    """A model's versions. `versions` and `default` are replaced whole on reload (never mutated in
    place), so a request that read them keeps a consistent view."""

    name: str
    versions: dict[int, Version] = field(default_factory=dict)
    default: Version | None = None  # the newest READY version
    unloaded: bool = False  # explicit mode: POST .../unload; nothing served until .../load

    @property
    def state(self) -> str:
        if self.default is not None:
            return READY
        if self.unloaded:
            return UNLOADED
        return FAILED if self.versions and all(v.state == FAILED for v in self.versions.values()) else LOADING

    @property
    def model(self) -> Model | None:
        return self.default.model if self.default is not None else None

    @property
    def error(self) -> str | None:
        if self.unloaded:
            return f"model {self.name!r} is unloaded; POST /v2/repository/models/{self.name}/load"
        failed = [v for v in self.versions.values() if v.state == FAILED]
        return failed[-1].error if failed and self.default is None else None


class Registry:
    """Model name -> its versions, from the manifest of an artifacts directory."""

    def __init__(
        self,
        artifacts: Path,
        threads: int = 1,
        metrics: Metrics | None = None,
        trust_key: Path | None = None,
        min_generation: int | None = None,
    ):
        self.artifacts = Path(artifacts)
        self.trust_key = trust_key  # each version's load verifies the signature (oneneuron/signing.py)
        self.threads = threads
        self.metrics = metrics or Metrics()
        self.root = Root(self.artifacts)
        self._lock = threading.Lock()  # one reload at a time
        # The high-water mark: the highest manifest generation accepted (see the module docstring).
        self.generation = min_generation or 0
        self.refusal: str | None = None  # why the last manifest was refused (path-free), while it stands
        manifest = Manifest.load(self.artifacts)  # validated: names unique and safe, paths confined
        # RollbackError, exit 1: below --min-generation (with a key, each version's load checks the
        # signed manifest's generation again: this unverified one can only refuse, never admit)
        require_generation(self.artifacts / MANIFEST, manifest.generation, self.generation)
        if not manifest.entries("onnx"):
            raise MissingArtifactError(
                f"{self.artifacts / MANIFEST}: no ONNX models; {fix('onnx', self.artifacts)}"
            )
        for entry in manifest.entries("onnx"):
            self.root.existing(entry.path)  # a missing newest file fails at start-up, exit 2
        self.manifest = manifest
        self.states = {
            e.model: ModelState(
                e.model, {v.version: Version(v.version, v) for v in manifest.versions(e.model)}
            )
            for e in sorted(manifest.entries("onnx"), key=lambda e: e.model)
        }
        for name in self.states:
            self.metrics.model_loaded.labels(name).set(0)
            self.metrics.model_load_failed.labels(name).set(0)
        self.metrics.ready.set(0)
        self.metrics.generation.set(self.generation)
        self.loaded = False  # load_all has run (whatever its outcome)

    @property
    def names(self) -> list[str]:
        return list(self.states)

    @property
    def ready(self) -> bool:
        return all(s.default is not None or s.unloaded for s in self.states.values())

    # -- lookups (the request path) -------------------------------------------------------------
    def reason(self, state: ModelState, version: Version) -> str:
        """A version's status reason: why it failed, or for the default while a rolled-back manifest
        is refused, why it is still the default (path-free, like every client-facing message)."""
        if version.error:
            return version.error
        return self.refusal if self.refusal is not None and version is state.default else ""

    def state(self, name: str, version: str | None = None) -> ModelState:
        """The named model's state; 404 for an unknown model or version."""
        state = self.states.get(name)
        if state is None:
            raise NotFound(f"unknown model {preview(name)}; this server serves {', '.join(self.states)}")
        if version is not None and state.unloaded and VERSION_LABEL.fullmatch(version):
            raise Unavailable(
                f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load",
            )
        if version is not None and self._version(state, version) is None:
            raise NotFound(
                f"model {name!r} has no version {preview(version)}; available versions: "
                f"{', '.join(v.label for v in state.versions.values()) or 'none'}",
            )
        return state

    @staticmethod
    def _version(state: ModelState, version: str) -> Version | None:
        return state.versions.get(int(version)) if VERSION_LABEL.fullmatch(version) else None

    def served(self, name: str, version: str | None = None) -> Version:
        """The version a request runs on (default: the newest ready); 404 unknown, 503 not ready."""
        state = self.states.get(name)
        chosen = state.default if state is not None and version is None else None
        if chosen is not None:
            return chosen  # the hot path: one dict lookup
        state = self.state(name, version)
        chosen = state.default if version is None else self._version(state, version)
        if chosen is None or chosen.model is None:
            raise Unavailable(
                (chosen.error if chosen is not None else state.error)
                or f"model {name!r} is still loading; retry when GET /v2/models/{name}/ready returns 200",
            )
        return chosen

    def model(self, name: str, version: str | None = None) -> Model:
        """The named model, ready to predict; 404 unknown, 503 still loading or failed."""
        return self.served(name, version).model  # type: ignore[return-value]

    # -- loading and reloading -----------------------------------------------------------------
    def load_all(self) -> bool:
        """Load and self-test every model's versions, newest first; returns whether all are ready."""
        with self._lock:
            for state in self.states.values():  # the newest of each first: ready sooner
                newest = max(state.versions)
                self._swap(state, state.versions | {newest: self._load(state.name, state.versions[newest])})
            for state in self.states.values():
                loaded = {
                    n: v if v.state != LOADING else self._load(state.name, v)
                    for n, v in state.versions.items()
                }
                self._swap(state, loaded)
            # the generation each loaded version was verified against (with a key: the signed one's)
            models = [v.model for s in self.states.values() for v in s.versions.values() if v.model]
            self._accepted(max((m.generation or 0 for m in models), default=0))
            self.loaded = True
            self.metrics.ready.set(1 if self.ready else 0)
        return self.ready

    def reload(self, only: str | None = None) -> bool:
        """Read the manifest again and bring the served versions in line with it (all models, or
        `only`, which also loads it again after an unload). Returns False when the manifest could
        not be read, or was refused as older than the high-water mark (logged; everything keeps
        serving)."""
        with self._lock:
            try:
                manifest, trusted = self._read_manifest()
            except Exception as exc:  # an unreadable manifest must not stop serving
                logger.error("reload: %s; still serving the versions loaded before", exc)
                self.metrics.reloads.labels("failed").inc()
                return False
            if manifest.generation < self.generation:
                self._refuse(manifest.generation)
                return False
            self.manifest = manifest
            wanted = {e.model: manifest.versions(e.model) for e in manifest.entries("onnx")}
            if only is not None and only not in wanted:
                raise NotFound(f"unknown model {preview(only)}: {MANIFEST} does not list it")
            states = dict(self.states)  # copy on write: request handlers iterate self.states
            for name in [only] if only is not None else sorted(set(wanted) | set(states)):
                state = states.get(name)
                if state is None:
                    state = states[name] = ModelState(name)
                elif state.unloaded and only is None:
                    continue  # explicit mode: stays unloaded until asked
                if name not in wanted and not trusted:
                    continue  # an unverified manifest never stops what verified ones started
                if name not in wanted:  # the manifest no longer lists the model: stop serving it
                    logger.info("model %s: no longer in %s; unloaded", name, MANIFEST)
                    for v in state.versions.values():
                        self.metrics.forget_version(name, v.label, v.entry.sha256)
                    del states[name]
                    continue
                self._reload_model(state, wanted[name], trusted)
            self.states = {n: s for n, s in states.items() if s.versions or s.unloaded}
            self._accepted(manifest.generation if trusted else 0)
            self.metrics.reloads.labels("ok").inc()
            self.metrics.ready.set(1 if self.ready else 0)
            return True

    def _read_manifest(self) -> tuple[Manifest, bool]:
        """The manifest to reload from, and whether its generation may raise the high-water mark:
        without a trust key, the manifest as read; with one, the manifest whose signature verified
        (its bytes, parsed once: never a re-read), or, when it does not verify, the manifest as read,
        untrusted (each new version's load then refuses it, and the mark stays)."""
        manifest = Manifest.load(self.artifacts)
        if self.trust_key is None:
            return manifest, True
        from oneneuron.signing import verify_dir

        try:  # the signature, the manifest and the file set; each version's bytes at its load
            return verify_dir(self.artifacts, self.trust_key, only=MANIFEST).manifest, True
        except IntegrityError:
            return manifest, False

    def _refuse(self, generation: int) -> None:
        """Refuse a manifest older than the high-water mark: log, count, and say so in the status."""
        why = (
            f"{MANIFEST} generation {generation} < generation {self.generation}, which this server has "
            "already served: a rolled-back or stale directory; still serving the versions loaded before; "
            "export again (a newer generation) to change them"
        )
        if why != self.refusal:  # one line per refused manifest, not one per poll
            logger.error("reload refused: %s (%s)", why, self.artifacts)
        self.refusal = why
        self.metrics.reloads.labels("refused").inc()
        self.metrics.refused_generation.set(generation)

    def _accepted(self, generation: int) -> None:
        """A manifest was accepted: raise the high-water mark to `generation` (0 for one whose
        signature did not verify: it may not raise it); a refusal no longer stands."""
        self.generation = max(self.generation, generation)
        self.refusal = None
        self.metrics.generation.set(self.generation)
        self.metrics.refused_generation.set(0)

    def unload(self, name: str) -> None:
        """Stop serving `name` (explicit mode); in-flight requests finish on the versions they hold."""
        with self._lock:
            state = self.state(name)
            old = state.versions
            state.unloaded, state.default, state.versions = True, None, {}
            for v in old.values():
                self.metrics.forget_version(name, v.label, v.entry.sha256)
            self.metrics.model_loaded.labels(name).set(0)
            self.metrics.ready.set(1 if self.ready else 0)
            logger.info("model %s unloaded (versions %s)", name, ", ".join(v.label for v in old.values()))

    def _reload_model(
        self, state: ModelState, entries: tuple[ArtifactEntry, ...], trusted: bool = True
    ) -> None:
        old, keep = state.versions, {}
        for entry in reversed(entries):  # newest first
            prev = old.get(entry.version)
            if prev is not None and prev.entry.sha256 == entry.sha256 and prev.state == READY:
                keep[entry.version] = prev
            else:
                keep[entry.version] = self._load(state.name, Version(entry.version, entry))
        if not trusted:  # a manifest whose signature did not verify: it cannot admit a version (each
            # load verifies), nor may it retire one, or dropping the newest would roll the default back
            keep |= {n: v for n, v in old.items() if v.state == READY}
        serving = state.default
        if serving is not None and not any(v.state == READY for v in keep.values()):
            keep[serving.number] = serving  # nothing newer passed: the one serving keeps serving
            logger.error(
                "model %s: no version in the manifest passed its checks; still serving version %s",
                state.name,
                serving.label,
            )
        for v in old.values():
            if keep.get(v.number) is not v:
                self.metrics.forget_version(state.name, v.label, v.entry.sha256)
        state.unloaded = False
        self._swap(state, dict(sorted(keep.items())))

    def _swap(self, state: ModelState, versions: dict[int, Version]) -> None:
        ready = [v for v in versions.values() if v.state == READY]
        default = max(ready, key=lambda v: v.number) if ready else None
        before = state.default
        state.versions = versions
        state.default = default  # the swap: new requests use it; in-flight ones hold the old Version
        if default is not None and default is not before:
            logger.info(
                "model %s: serving version %s (sha256 %s)", state.name, default.label, default.entry.sha256
            )
        m = self.metrics
        m.model_loaded.labels(state.name).set(1 if default is not None else 0)
        m.model_load_failed.labels(state.name).set(
            1 if any(v.state == FAILED for v in versions.values()) else 0
        )
        m.default_version.labels(state.name).set(default.number if default is not None else 0)
        for v in versions.values():
            m.version_state(state.name, v.label, v.entry.sha256, v.state)

    def _load(self, name: str, version: Version) -> Version:
        """Verify, load and self-test one version (blocking); returns it READY or FAILED."""
        start = time.perf_counter()
        try:
            options = LoadOptions(
                selftest=False, threads=self.threads, trust_key=self.trust_key, min_generation=self.generation
            )  # with a trust key, the floor is checked on the manifest this load verifies
            model = load_entry(self.root, version.entry, options, self.manifest)
            expected, actual = model.selftest(self.root, version.entry)  # IntegrityError beyond tolerance
        except Exception as exc:  # one bad version must not stop the others from loading
            version.state = FAILED
            version.error = (
                f"model {name} version {version.label} failed to load or failed its self-test "
                f"({type(exc).__name__}); see the server log"
            )
            self.metrics.version_failures.labels(name).inc()
            # A refusal the toolkit explains (sha256, signature, self-test) is one line; the traceback
            # only with -v (DEBUG) or for an unexpected error (issue 21).
            expected = isinstance(exc, ToolkitError | ValueError)
            logger.error(
                "model %s version %s: %s",
                name,
                version.label,
                exc,
                exc_info=not expected or logger.isEnabledFor(logging.DEBUG),
            )
            return version
        seconds = time.perf_counter() - start
        version.model, version.state = model, READY
        self.metrics.selftest_error.labels(name).set(abs(actual - expected))
        self.metrics.load_seconds.labels(name).set(seconds)
        logger.info(
            "model %s version %s ready: sha256 %s, self-test y(%s) = %.6f (stored %.6f), %.1f ms",
            name,
            version.label,
            version.entry.sha256[:12],
            model.metadata.get("selftest_x"),
            actual,
            expected,
            seconds * 1e3,
        )
        return version
