"""The ASGI app behind `python -m serve.web`: the page, onnxruntime-web's files and the models.

Only what the page needs is served, each from an allowlist (anything else is a 404, and so is
any path that leaves its directory):

    /                 serve/web/static/ (index.html, app.mjs, style.css)
    /lib/<file>       serve/node's runtime-agnostic modules (the checks the Node CLI runs) and
                      contract.json (the limits, dtypes and fixes Python and JavaScript share)
    /ort/<file>       onnxruntime-web's WASM build, from node_modules (never a CDN)
    /artifacts/<file> manifest.json, model.sig, the ONNX files the manifest lists and their probe
                      files (the self-test of a model too large to embed; re-read on every request,
                      so a re-export shows up without a restart)
    /trust/public.pem the key given with --trust-key (read once at start), when there is one
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from oneneuron.errors import MissingArtifactError, ToolkitError
from oneneuron.fixes import fix
from oneneuron.fsio import Root
from oneneuron.schema import MANIFEST, Manifest
from oneneuron.signing import SIGNATURE

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
STATIC = Path(__file__).resolve().parent / "static"
NODE_LIB = ROOT / "serve" / "node"


def _find_ort_dist() -> Path:
    """onnxruntime-web's dist/: the checkout's node_modules, else ./node_modules (installed with pip,
    the toolkit lives in site-packages: run `npm install onnxruntime-web@1.30.0` where you start it)."""
    for base in (ROOT, Path.cwd()):
        candidate = base / "node_modules" / "onnxruntime-web" / "dist"
        if candidate.is_dir():
            return candidate
    return ROOT / "node_modules" / "onnxruntime-web" / "dist"


ORT_DIST = _find_ort_dist()

# The page imports ort.wasm.min.mjs, which loads this WASM build (numThreads = 1: no workers,
# no SharedArrayBuffer, so no cross-origin-isolation headers are needed).
ORT_FILES = frozenset({"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"})
LIB_FILES = frozenset(
    {
        "contract.json",
        "contract.mjs",
        "core.mjs",
        "errors.mjs",
        "manifest.mjs",
        "npz.mjs",
        "onnx_info.mjs",
        "selftest.mjs",
        "signature_core.mjs",
        "tensors.mjs",
    }
)
PAGE_FILES = frozenset({"index.html", "app.mjs", "form.mjs", "signature.mjs", "style.css"})


@dataclass(frozen=True)
class WebConfig:
    """One run of the page server."""

    artifacts: Path = Path("artifacts")  # directory holding manifest.json and the ONNX files
    host: str = "127.0.0.1"  # loopback by default; the page is a demo, not a public service
    port: int = 8080  # TCP port; 0 picks a free one
    ort_dist: Path = ORT_DIST  # onnxruntime-web's dist/ in node_modules
    trust_key: Path | None = None  # PEM public key: the page verifies model.sig with it (signature.mjs)


class AllowlistFiles(StaticFiles):
    """StaticFiles that serves only the relative paths `allowed()` returns ("." is the index page)."""

    def __init__(self, directory: Path, allowed: Callable[[], frozenset[str]], html: bool = False):
        super().__init__(directory=directory, html=html, check_dir=True)
        self._allowed = allowed

    async def get_response(self, path: str, scope: Any):
        # `path` is already normalised by StaticFiles.get_path; "../x" stays "../x" and is refused.
        if path.replace("\\", "/") not in self._allowed():
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def onnx_files(artifacts: Path) -> frozenset[str]:
    """manifest.json plus the stored versions and aliases of the ONNX models it lists, and their probe files.

    The manifest is parsed with `oneneuron.schema` (names and paths validated); every name is then
    resolved inside the directory (symlinks followed) and must be a regular file; a stable name is
    served only while it is the stored version's own file (a hard link, checked by stat). A manifest
    that does not parse serves only itself, so the page can fetch it and say what is wrong.
    """
    root = Root(artifacts)
    try:
        entries = Manifest.load(artifacts).entries("onnx")
    except ToolkitError as exc:
        logger.warning("%s", exc)
        return frozenset({MANIFEST})
    names = set()
    for entry in entries:
        try:
            stored = root.existing(entry.path)
        except ToolkitError:
            continue  # a FIFO, a symlink leaving the directory, missing: neither name is served
        names.add(entry.path)
        if entry.probe is not None:  # the self-test's rows; the page checks its sha256 before use
            with contextlib.suppress(ToolkitError):
                root.existing(entry.probe.path)
                names.add(entry.probe.path)
        with contextlib.suppress(ToolkitError, OSError):
            if os.path.samefile(root.existing(entry.alias), stored):  # the stable name is a hard link to it
                names.add(entry.alias)
    if (root.dir / SIGNATURE).is_file() and not (root.dir / SIGNATURE).is_symlink():
        names.add(SIGNATURE)
    return frozenset(names | {MANIFEST})


def check_inputs(config: WebConfig) -> None:
    """Fail early, with the fix, when the manifest or onnxruntime-web's files are missing."""
    root = Root(config.artifacts)
    for entry in Manifest.load(config.artifacts).entries("onnx"):  # raises naming the file and the fix
        root.existing(entry.path)
    missing = sorted(name for name in ORT_FILES if not (config.ort_dist / name).is_file())
    if missing:
        raise MissingArtifactError(f"{config.ort_dist}: missing {', '.join(missing)}; {fix('npm')}")


def trust_route(trust_key: Path) -> Route:
    """GET /trust/public.pem: the trusted key, checked and read once at start (exit 2 if unusable)."""
    from oneneuron.signing import load_public_key

    load_public_key(trust_key)
    pem = Path(trust_key).read_bytes()

    async def public_key(request):
        return Response(pem, media_type="application/x-pem-file")

    return Route("/trust/public.pem", public_key, methods=["GET"])


def build_app(config: WebConfig) -> Starlette:
    """The Starlette app serving the page; checks its inputs first."""
    check_inputs(config)
    artifacts = Path(config.artifacts)
    routes = [trust_route(config.trust_key)] if config.trust_key is not None else []
    routes += [
        Mount("/artifacts", app=AllowlistFiles(artifacts, lambda: onnx_files(artifacts))),
        Mount("/ort", app=AllowlistFiles(config.ort_dist, lambda: ORT_FILES)),
        Mount("/lib", app=AllowlistFiles(NODE_LIB, lambda: LIB_FILES)),
        Mount("/", app=AllowlistFiles(STATIC, lambda: PAGE_FILES | {"."}, html=True)),
    ]
    return Starlette(routes=routes)
