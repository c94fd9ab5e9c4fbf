"""What every `python -m ...` entry point shares: argparse setup, logging, error handling."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from oneneuron.errors import InputError, ToolkitError
from oneneuron.fixes import fix

OUR_PACKAGES = ("__main__", "oneneuron", "train", "export", "serve", "bench")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the epilog's example lines as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # A None default means "not given", which the help text explains; "(default: None)" says nothing.
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def prog_for(module: str) -> str:
    """The command the user typed: `python -m <module>`, or the console script's name (oneneuron-*).

    argparse would show the file's name (`all.py`, `__main__.py`), which is not a command.
    """
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return script if script.startswith("oneneuron-") else f"python -m {module}"


def parser(description: str, example: str, command: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with `-v` and an example in the epilog; `command` is the module (`train.all`)."""
    p = ArgumentParser(
        prog=prog_for(command) if command else None,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    return p


def artifacts_arg(p: argparse.ArgumentParser, writes: bool = True) -> None:
    """--artifacts DIR; `writes=False` for commands that only read it (serve, check, batch, web)."""
    p.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        metavar="DIR",
        help="artifacts directory to read and write" if writes else "artifacts directory to read",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give e.g. 500") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive; give an integer >= 1, e.g. 500")
    return value


def _number(text: str, allow_zero: bool, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. {example}") from None
    if not (0 <= value if allow_zero else 0 < value) or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text} must be a finite number {'>=' if allow_zero else '>'} 0, e.g. {example}"
        )
    return value


def positive_float(text: str) -> float:
    return _number(text, allow_zero=False, example="0.01")


def non_negative_float(text: str) -> float:
    return _number(text, allow_zero=True, example="60")


def lock_timeout_arg(p: argparse.ArgumentParser) -> None:
    """--lock-timeout for commands that write the artifacts directory (oneneuron.fsio.Root.locked)."""
    from oneneuron.fsio import LOCK_TIMEOUT

    p.add_argument(
        "--lock-timeout",
        type=non_negative_float,
        default=LOCK_TIMEOUT,
        metavar="SECONDS",
        help="give up after waiting this long for another writer's lock on the directory",
    )


def generation(text: str) -> int:
    """A manifest generation (oneneuron.schema `Manifest.generation`): 0 to MAX_GENERATION."""
    from oneneuron.schema import MAX_GENERATION

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a generation; give an integer, e.g. 5") from None
    if not 0 <= value <= MAX_GENERATION:
        raise argparse.ArgumentTypeError(f"{value} is not a generation; give 0-{MAX_GENERATION}")
    return value


def min_generation_arg(p: argparse.ArgumentParser, consequence: str = "exit 1") -> None:
    """--min-generation N: the rollback floor (docs/reliability.md "Rollback")."""
    p.add_argument(
        "--min-generation",
        type=generation,
        default=None,
        metavar="N",
        help="refuse a manifest.json whose generation is lower (an older export put back in place, "
        f"or a stale copy; {consequence}); the generation is the `generation` field of manifest.json",
    )


def port(text: str) -> int:
    """A TCP port: 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give 0-65535, e.g. 8000") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number; give 0-65535 (0 picks a free one)")
    return value


def ensure_dir(path: Path, create: bool) -> Path:
    """Check that `path` is (or, with `create`, can become) a writable directory."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory; pass --artifacts DIR with a directory")
    if not path.exists():
        if not create:
            raise InputError(f"{path}: no such directory; {fix('train', path)} first")
        path.mkdir(parents=True)
    return path


def configure_logging(verbose: bool) -> None:
    """Our own progress at INFO; third-party libraries (tf2onnx, onnxscript, TF) only from WARNING."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


def run(
    main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, fast_exit: bool = False
) -> NoReturn:
    """Configure logging, call `main(args)`, and turn project errors into one line + exit code.

    With `fast_exit`, a successful run ends with `os._exit(0)` after flushing: with TensorFlow
    loaded, the interpreter's own teardown takes ~0.9 s here (bench rows 1-2) and does nothing
    for us, since every file was written atomically and fsynced before `main` returned.
    """
    configure_logging(args.verbose)
    if getattr(args, "lock_timeout", None) is not None:  # the one setting writers read from the CLI
        from oneneuron import fsio

        fsio.LOCK_TIMEOUT = args.lock_timeout
    try:
        code = main(args) or 0
    except ToolkitError as exc:
        if args.verbose:
            logging.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except OSError as exc:  # permissions, disk full, a path that is a file: the user can fix these
        if args.verbose:
            logging.exception("failed")
        print(
            f"error: {exc.filename or ''}: {exc.strerror or exc}; check the path and its permissions"
            if exc.filename
            else f"error: {exc}",
            file=sys.stderr,
        )
        code = 2
    except ModuleNotFoundError as exc:  # a third-party module imported late, e.g. for --trust-key
        from oneneuron.scripts import missing_extra

        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
        line = missing_extra(exc, script if script.startswith("oneneuron-") else "this command")
        if args.verbose or line is None:
            logging.exception("failed")
        print(line or f"error: {exc}; the installation is incomplete, install it again", file=sys.stderr)
        code = 2 if line else 1
    except Exception as exc:  # a bug: one line, the traceback with -v
        if args.verbose:
            logging.exception("failed")
        print(
            f"error: unexpected {type(exc).__name__}: {str(exc)[:300]} (re-run with -v for the traceback)",
            file=sys.stderr,
        )
        code = 1
    if fast_exit and code == 0:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    sys.exit(code)
