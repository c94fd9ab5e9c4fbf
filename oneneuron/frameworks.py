"""TensorFlow and torch, imported on demand and quietly (no command imports them at module level).

`--help` and argument errors must answer without paying for TensorFlow (~2 s) or torch
(~1 s), so every module imports them inside the functions that need them, through the two
helpers here:

- `quiet_tensorflow()` imports TensorFlow with its C++ start-up logs held back. TensorFlow
  2.21 writes "All log messages before absl::InitializeLog() ..." and a oneDNN info line
  straight to file descriptor 2 from C++, ignoring `TF_CPP_MIN_LOG_LEVEL` (measured here), so
  the descriptor is pointed at a temporary file during the import; the lines are replayed on
  stderr only when this module logs at DEBUG (`-v`).
- `torch_jit_quiet()` silences exactly torch 2.13's "`torch.jit.*` is deprecated" warning
  around a `torch.jit` call (TorchScript is still exported: C++ and mobile runtimes load it).

Standard library only at import time, like the rest of `oneneuron`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from types import ModuleType

logger = logging.getLogger(__name__)


def quiet_tensorflow() -> ModuleType:
    """Import and return `tensorflow`; its start-up logs reach stderr only with -v (DEBUG)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # Later C++ info/warning logs (after start-up) honour this; set before the first import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    if text and logger.isEnabledFor(logging.DEBUG):
        sys.stderr.write(text)
        sys.stderr.flush()
    return tensorflow


@contextlib.contextmanager
def torch_jit_quiet() -> Iterator[None]:
    """Hide torch 2.13's "`torch.jit.script` is deprecated ..." (and jit.save/load); others still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield
