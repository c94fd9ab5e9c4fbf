"""`make test`'s first step: `python3 tests/prerequisites.py` checks the system programs the suite drives.

pytest on its own skips the browser, Node.js and load-generator tests when their program is
missing (a developer running one file needs none of them); `make test`, and so CI, must not go
green by skipping them, so it runs this first: one line per missing program with the command
that installs it (Debian), then exit 1. Standard library only: it runs before `.venv` exists.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Prerequisite:
    name: str  # a program on PATH, or an absolute path
    used_by: str  # the tests that need it
    install: str  # the Debian command that installs it


PREREQUISITES = (
    Prerequisite("/usr/bin/chromium", "the browser tests (test_web*.py)", "apt-get install -y chromium"),
    Prerequisite("node", "the Node.js tests (tests/test_node*.py)", "apt-get install -y nodejs npm"),
    Prerequisite("npm", "the Node.js and browser packages (npm ci)", "apt-get install -y nodejs npm"),
    Prerequisite("wrk", "the serving benchmark smoke test (tests/test_bench.py)", "apt-get install -y wrk"),
    Prerequisite("h2load", "the HTTP/2 load benchmarks", "apt-get install -y nghttp2-client"),
)


def _found(name: str) -> bool:
    if os.path.isabs(name):
        return os.access(name, os.X_OK)
    return shutil.which(name) is not None


def missing(found: Callable[[str], bool] = _found) -> list[str]:
    """One line per prerequisite that is not installed: what, what needs it, the install command."""
    return [
        f"missing: {p.name}, needed by {p.used_by}; install it with: {p.install}"
        for p in PREREQUISITES
        if not found(p.name)
    ]


def main() -> int:
    lines = missing()
    for line in lines:
        print(line, file=sys.stderr)
    if lines:
        print("error: make test needs the programs above (CI installs them: .ci/run)", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
