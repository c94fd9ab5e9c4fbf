"""`make test` checks the programs the suite drives first (tests/prerequisites.py), and CI installs them."""

import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.prerequisites import PREREQUISITES, missing


def test_each_missing_program_is_one_line_with_its_install_command():
    lines = missing(found=lambda name: False)
    assert len(lines) == len(PREREQUISITES) == 5
    for line, p in zip(lines, PREREQUISITES, strict=True):
        assert line.startswith(f"missing: {p.name}, ") and line.endswith(f"install it with: {p.install}")
    assert missing(found=lambda name: True) == []
    assert {p.install for p in PREREQUISITES} == {
        "apt-get install -y chromium",
        "apt-get install -y nodejs npm",
        "apt-get install -y wrk",
        "apt-get install -y nghttp2-client",
    }


def test_the_check_fails_when_programs_are_missing():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "prerequisites.py")],
        env={**os.environ, "PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    for program in ("node", "npm", "wrk", "h2load"):
        assert any(line.startswith(f"missing: {program}, ") for line in lines), proc.stderr
    assert lines[-1].startswith("error: make test needs the programs above")


def test_make_test_checks_first_and_ci_installs_every_prerequisite():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert recipe.split()[0] == "prerequisites", recipe  # the first prerequisite of the target
    assert "tests/prerequisites.py" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    for p in PREREQUISITES:
        assert p.install.replace("apt-get install -y ", "apt-get install -y -qq ") in ci, p.install
