"""The main job in one process: `python -m pipeline [train flags]` (what `make run` runs).

train -> export (every format) -> report -> check, exactly as `python -m train.all`, `python -m
export.all`, `python -m train.report` and `python -m serve.check` run them one after the other, but importing
TensorFlow and torch once instead of three times: that import cost (~3-4 s a process here)
was the biggest item of `make run` (bench row "main job"). Takes `python -m train.all`'s flags.
"""

from __future__ import annotations

import sys

from export._core import print_entries
from export.all import export_all
from oneneuron import cli
from serve import check
from train import cli as train_cli
from train.report import build_report


def run(args) -> int:
    """Train, export, write the report and check (its table last); returns the check's exit code."""
    code = train_cli.run(args)
    if code:
        return code
    print_entries(export_all(args.artifacts), args.artifacts)
    print(f"wrote {', '.join(str(f) for f in build_report(args.artifacts))}")
    sys.stdout.flush()
    return check.report(args.artifacts)


def main() -> None:
    p = train_cli.build_parser()
    p.description = "Train both models, export every format and check every artifact, in one process."
    p.epilog = "example:\n  python -m pipeline --artifacts artifacts --seed 0"
    p.prog = cli.prog_for("pipeline")
    cli.run(run, p.parse_args(), fast_exit=True)


if __name__ == "__main__":
    main()
