"""oneneuron.fsio.Root.transaction: staged writes land together; a writer killed at any point of the commit
leaves old files (before the journal) or is finished by the next `locked` (after it)."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from oneneuron.fsio import JOURNAL, Root, Transaction
from tests.conftest import run_cli


def write_generation(txn: Transaction, gen: int) -> None:
    """Two files, a directory and a manifest naming their contents, as one transaction."""
    txn.write_bytes("a.bin", f"a{gen}".encode())
    txn.write_bytes("b.bin", f"b{gen}".encode())

    def make_dir(p: Path) -> None:
        p.mkdir()
        (p / "inner.txt").write_text(f"d{gen}")

    txn.stage("d.dir", make_dir)
    txn.write_json("manifest.json", {"gen": gen})


def commit_generation(directory: Path, gen: int) -> None:
    root = Root(directory)
    with root.locked(), root.transaction() as txn:
        write_generation(txn, gen)


def state(directory: Path) -> tuple:
    return (
        (directory / "a.bin").read_text(),
        (directory / "b.bin").read_text(),
        (directory / "d.dir" / "inner.txt").read_text(),
        json.loads((directory / "manifest.json").read_text())["gen"],
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name != ".lock")


def test_writes_are_staged_then_land_together(tmp_path):
    commit_generation(tmp_path, 1)
    root = Root(tmp_path)
    with root.locked(), root.transaction() as txn:
        write_generation(txn, 2)
        assert state(tmp_path) == ("a1", "b1", "d1", 1)  # nothing visible before the commit
        assert txn.staged("a.bin").read_text() == "a2"
    assert state(tmp_path) == ("a2", "b2", "d2", 2) and leftovers(tmp_path) == []


def test_a_failing_block_changes_nothing(tmp_path):
    commit_generation(tmp_path, 1)
    root = Root(tmp_path)
    with pytest.raises(RuntimeError), root.locked(), root.transaction() as txn:
        write_generation(txn, 2)
        raise RuntimeError("conversion failed")
    assert state(tmp_path) == ("a1", "b1", "d1", 1) and leftovers(tmp_path) == []


@pytest.mark.parametrize("renames_before_kill", [0, 1, 2, 3, 4])
def test_sigkill_during_the_commit_is_finished_by_the_next_writer(tmp_path, renames_before_kill):
    """A real process SIGKILLs itself after n of the commit's renames (0: right after the journal)."""
    commit_generation(tmp_path, 1)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from oneneuron import fsio
        from tests.test_fsio_transaction import commit_generation
        real, count = os.replace, [0]
        def replace(src, dst):
            if Path(fsio.JOURNAL).name in str(dst):
                return real(src, dst)
            if count[0] == {renames_before_kill}:
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
            real(src, dst)
        os.replace = replace
        commit_generation(Path({str(tmp_path)!r}), 2)
    """)
    result = run_cli("-c", script, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (tmp_path / JOURNAL).exists()
    with Root(tmp_path).locked():  # the next writer finishes the commit first
        pass
    assert state(tmp_path) == ("a2", "b2", "d2", 2) and leftovers(tmp_path) == []


def test_killed_before_the_journal_leaves_the_old_generation(tmp_path, monkeypatch):
    commit_generation(tmp_path, 1)
    monkeypatch.setattr(Root, "roll_forward", lambda self: 0)  # as if killed right after staging
    commit_generation(tmp_path, 2)
    (tmp_path / JOURNAL).unlink()  # ... and before the journal was renamed into place
    monkeypatch.undo()
    assert state(tmp_path) == ("a1", "b1", "d1", 1)
    with Root(tmp_path).locked():  # stale temporaries removed
        pass
    assert state(tmp_path) == ("a1", "b1", "d1", 1) and leftovers(tmp_path) == []
