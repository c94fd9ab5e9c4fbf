"""Train one framework in a child process while this process trains the others (bench row 1).

The child is forked while no framework is loaded (it skips an interpreter start and the imports),
spawned otherwise; it trains, saves the model to a scratch path, hands the `FitResult` (or the
exception) back through a pipe and exits at once.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import sys
from pathlib import Path

from oneneuron import cli
from train.config import TrainConfig
from train.data import Dataset
from train.result import FitResult


def fit_and_save(framework: str, data: Dataset, config: TrainConfig, path: Path) -> FitResult:
    """Train `framework` (a module under train/) and save its model to `path`."""
    trainer = importlib.import_module(f"train.{framework}")
    model, result = trainer.train(data, config)
    trainer.save(model, path)
    return result


def _context() -> multiprocessing.context.BaseContext:
    heavy = {"tensorflow", "torch", "keras"} & set(sys.modules)
    return multiprocessing.get_context("spawn" if heavy else "fork")


def _child_main(conn, framework: str, data: Dataset, config: TrainConfig, path: Path, verbose: bool) -> None:
    """Child: train, send ("ok", result) or ("error", exception), exit without interpreter teardown."""
    cli.configure_logging(verbose)
    try:
        reply = ("ok", fit_and_save(framework, data, config, path))
    except BaseException as exc:  # handed to the parent, which re-raises it
        reply = ("error", exc)
    with contextlib.suppress(OSError):
        conn.send(reply)
        conn.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class ChildTrainer:
    """One framework trained in a child process; `result()` waits for it."""

    def __init__(self, framework: str, data: Dataset, config: TrainConfig, path: Path):
        self.framework = framework
        ctx = _context()
        self._recv, send = ctx.Pipe(duplex=False)
        verbose = logging.getLogger("train").getEffectiveLevel() <= logging.DEBUG
        self._proc = ctx.Process(
            target=_child_main, args=(send, framework, data, config, path, verbose), daemon=True
        )
        self._proc.start()
        send.close()

    def result(self) -> FitResult:
        """The child's FitResult; re-raises the child's exception (DivergenceError etc.)."""
        try:
            kind, payload = self._recv.recv()
        except EOFError:
            raise RuntimeError(
                f"the training process for {self.framework} died (exit code {self._proc.exitcode})"
            ) from None
        finally:
            self._proc.join()
        if kind == "error":
            raise payload
        return payload
