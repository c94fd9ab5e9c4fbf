"""Re-exporting the same trained models changes nothing on disk (issue 19): no new stored version,
the manifest not rewritten, no genuine old version evicted by idle re-runs; a failed export leaves
no stored version behind and the next run succeeds."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

import export._core
from export.all import export_all
from oneneuron.fsio import VERSIONED
from oneneuron.schema import Manifest
from tests.conftest import run_cli


def stored(artifacts: Path) -> dict[str, bytes]:
    """Every stored version (file, or each file of a SavedModel directory) and its bytes."""
    out = {}
    for path in sorted(artifacts.iterdir()):
        if not VERSIONED.match(path.name):
            continue
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out |= {f.relative_to(artifacts).as_posix(): f.read_bytes() for f in files}
    return out


def on_disk(artifacts: Path) -> tuple[bytes, int, int, dict[str, bytes]]:
    """The manifest's bytes, inode and mtime (a rewrite changes them), and the stored versions."""
    info = (artifacts / "manifest.json").stat()
    return (artifacts / "manifest.json").read_bytes(), info.st_ino, info.st_mtime_ns, stored(artifacts)


@pytest.fixture
def trained_copy(trained_dir, tmp_path) -> Path:
    return Path(shutil.copytree(trained_dir, tmp_path / "artifacts"))


def test_idle_re_exports_change_nothing_and_evict_nothing(trained_copy):
    from train.all import train_all
    from train.config import TrainConfig
    from train.data import article_data

    export_all(trained_copy)
    first = Manifest.load(trained_copy)
    train_all(TrainConfig(artifacts=trained_copy, seed=1), article_data())  # a genuine new version
    export_all(trained_copy)
    before = on_disk(trained_copy)
    genuine_old = {e.path for e in Manifest.load(trained_copy).previous}
    # (the torch model trains to the same weights with seed 1: its TorchScript stays one version)
    assert genuine_old and genuine_old <= {e.path for e in first.artifacts}
    for _ in range(3):  # KEEP_VERSIONS idle re-runs used to push the genuine old version out
        export_all(trained_copy)
        assert on_disk(trained_copy) == before
    assert {e.path for e in Manifest.load(trained_copy).previous} == genuine_old
    assert all((trained_copy / p).exists() for p in genuine_old)


@pytest.mark.slow
def test_cli_re_export_in_processes_of_other_hash_seeds_changes_nothing(exported_copy, monkeypatch):
    """TorchScript's bytes follow the string hash seed: seeds 0 and 2 give the two byte strings."""
    runs = []
    for seed in ("0", "2"):
        monkeypatch.setenv("PYTHONHASHSEED", seed)
        result = run_cli("-m", "export.all", "--artifacts", str(exported_copy))
        assert result.returncode == 0, result.stderr
        runs.append(on_disk(exported_copy))
    assert runs[0] == runs[1]


def test_a_failed_export_leaves_no_stored_version_and_the_next_run_succeeds(trained_copy, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(trained_copy))

    before = sorted(p.name for p in trained_copy.iterdir() if p.name != ".lock")
    with monkeypatch.context() as m:
        m.setattr(export._core, "commit", disk_full)
        with pytest.raises(OSError, match="No space left"):
            export_all(trained_copy)
    assert stored(trained_copy) == {}
    assert sorted(p.name for p in trained_copy.iterdir() if p.name != ".lock") == before
    entries = export_all(trained_copy)
    assert {e.path for e in entries} == {p.split("/")[0] for p in stored(trained_copy)}
