"""A full disk in any stage: one `error:` line, a non-zero exit, no process abort, nothing
half-written (the manifest and every file it names still agree) and no temporaries left behind.

Each case runs the real command on a small tmpfs filled to the last block. Skips, with the
reason, where mounting a tmpfs is not permitted (not root, or no mount namespace).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oneneuron.fsio import Root
from oneneuron.manifest import verify
from oneneuron.schema import Manifest
from tests.conftest import run_cli

STAGES = {
    "train.all": ("trained", ["-m", "train.all", "--epochs", "20"]),
    "export.savedmodel": ("trained", ["-m", "export.savedmodel"]),
    "export.torchscript": ("trained", ["-m", "export.torchscript"]),
    "export.onnx": ("trained", ["-m", "export.onnx"]),
    "export.all on an exported directory": ("exported", ["-m", "export.all"]),
    "train.report": ("exported", ["-m", "train.report"]),
    "export.triton": ("exported", ["-m", "export.triton"]),
}


@contextlib.contextmanager
def full_tmpfs(where: Path, source: Path):
    """`source` copied onto a 4 MiB tmpfs at `where`, then the tmpfs filled to the last byte."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); run as root")
    try:
        artifacts = where / "artifacts"
        shutil.copytree(source, artifacts, symlinks=True)
        fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        yield artifacts
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def snapshot(artifacts: Path) -> dict[str, bytes]:
    return {
        p.relative_to(artifacts).as_posix(): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(artifacts.rglob("*"))
        if not p.is_symlink()
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_disk_full(stage, trained_dir, exported_dir, tmp_path):
    kind, args = STAGES[stage]
    source = trained_dir if kind == "trained" else exported_dir
    with full_tmpfs(tmp_path / "mnt", source) as artifacts:
        before = snapshot(artifacts)
        result = run_cli(*args, "--artifacts", str(artifacts), timeout=240)
        assert result.returncode not in (0, -6), (result.returncode, result.stderr)  # -6: SIGABRT
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
        assert "Traceback" not in result.stderr and "terminate" not in result.stderr
        leftovers = [p.name for p in artifacts.rglob(".*.tmp")]
        assert leftovers == [], leftovers
        after = snapshot(artifacts)
        assert {k: v for k, v in after.items() if k != ".lock"} == {
            k: v for k, v in before.items() if k != ".lock"
        }, "files changed after a failed write"
        if (artifacts / "manifest.json").exists():
            manifest, root = Manifest.load(artifacts), Root(artifacts)
            for entry in manifest.artifacts:
                verify(root, entry)
