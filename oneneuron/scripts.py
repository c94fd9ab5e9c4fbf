"""The console scripts (`oneneuron-*`, pyproject.toml [project.scripts]) and the extra each needs.

`pip install oneneuron-toolkit` installs the loader's dependencies only (numpy, onnxruntime, onnx);
each script's third-party imports come with an extra (`pip install 'oneneuron-toolkit[serve]'`).
Without it a script exits 2 with one line naming the extra, before anything is imported
(issue 21: `oneneuron-serve` used to end in "No module named 'uvicorn'").
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

DIST = "oneneuron-toolkit"

# Extra -> the top-level import names its packages provide (pyproject.toml lists the packages;
# tests/test_install.py checks that both name the same extras).
EXTRAS = {
    "train": ("tensorflow", "keras", "torch", "tf2onnx", "onnxscript", "matplotlib"),
    "serve": (
        "starlette",
        "uvicorn",
        "httptools",
        "uvloop",
        "prometheus_client",
        "orjson",
        "grpc",
        "tritonclient",
        "google.protobuf",
    ),  # fmt: skip
    "web": ("starlette", "uvicorn"),
    "batch": ("pyarrow", "dask", "distributed", "tqdm"),
    "sign": ("model_signing", "OpenSSL", "cryptography"),
    "triton": ("tritonclient", "google.protobuf"),
}

# Script -> (module whose main() it runs, the extra it needs).
SCRIPTS = {
    "oneneuron-train": ("train.all", "train"),
    "oneneuron-export": ("export.all", "train"),
    "oneneuron-check": ("serve.check", "train"),  # runs the Keras and torch models beside the ONNX
    "oneneuron-pipeline": ("oneneuron.pipeline", "train"),
    "oneneuron-serve": ("serve.__main__", "serve"),
    "oneneuron-web": ("serve.web.__main__", "web"),
    "oneneuron-batch": ("serve.batch.__main__", "batch"),
    "oneneuron-triton": ("export.triton", "triton"),
    "oneneuron-keys": ("export.keys", "sign"),
    "oneneuron-sign": ("export.sign", "sign"),
}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent of a dotted name (google of google.protobuf) is missing
        return False


def needs_extra(command: str, extra: str, module: str) -> str:
    """The one line a command prints when `module` (from `extra`) is not installed."""
    install = f"pip install '{DIST}[{extra}]'"
    return f"error: {command} needs the [{extra}] extra: {install} (missing module {module})"


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """The line for a third-party module a command imported late (e.g. cryptography for --trust-key);
    None when the missing module is ours (a broken install, not a missing extra)."""
    top = (exc.name or "").split(".")[0]
    if not top or top in ("oneneuron", "train", "export", "serve", "bench"):
        return None
    own = SCRIPTS.get(command, ("", "all"))[1]
    extra = next((e for e in [own, *EXTRAS] if any(n.split(".")[0] == top for n in EXTRAS.get(e, ()))), "all")
    return needs_extra(command, extra, exc.name or top)


def _entry(script: str) -> Callable[[], None]:
    module, extra = SCRIPTS[script]

    def main() -> None:
        missing = next((name for name in EXTRAS[extra] if not _installed(name)), None)
        if missing is not None:
            print(needs_extra(script, extra, missing), file=sys.stderr)
            sys.exit(2)
        importlib.import_module(module).main()

    main.__doc__ = f"`{script}`: `python -m {module.removesuffix('.__main__')}` once [{extra}] is installed."
    return main


train = _entry("oneneuron-train")
export = _entry("oneneuron-export")
check = _entry("oneneuron-check")
pipeline = _entry("oneneuron-pipeline")
serve = _entry("oneneuron-serve")
web = _entry("oneneuron-web")
batch = _entry("oneneuron-batch")
triton = _entry("oneneuron-triton")
keys = _entry("oneneuron-keys")
sign = _entry("oneneuron-sign")
