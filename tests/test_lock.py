"""The artifacts directory's lock: a writer waiting for another says who holds it, once, and gives
up after --lock-timeout with exit 2; a lock file that is a symlink is refused, never followed."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap

import pytest

from oneneuron.errors import IntegrityError, LockTimeoutError
from oneneuron.fsio import Root
from tests.conftest import ROOT, run_cli


@contextlib.contextmanager
def holding_lock(directory):
    """A separate process holding `directory`'s lock until the block ends."""
    script = textwrap.dedent(f"""
        import time
        from oneneuron.fsio import Root
        with Root({str(directory)!r}).locked():
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def held_lock(tmp_path):
    with holding_lock(tmp_path) as proc:
        yield proc


@pytest.fixture
def held_lock_on_copy(exported_copy):
    with holding_lock(exported_copy) as proc:
        yield proc


def test_waiting_writer_names_the_holder_once_then_gives_up(tmp_path, held_lock, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="oneneuron.fsio"),
        pytest.raises(LockTimeoutError) as err,
        Root(tmp_path).locked(timeout=0.6),
    ):
        pass
    waits = [r.getMessage() for r in caplog.records if "waiting for the lock" in r.getMessage()]
    assert len(waits) == 1 and f"on {tmp_path} held by pid {held_lock.pid} (since " in waits[0]
    assert f"held by pid {held_lock.pid}" in str(err.value) and "--lock-timeout" in str(err.value)


def test_cli_gives_up_with_exit_2(exported_copy, held_lock_on_copy):
    result = run_cli("-m", "export.triton", "--artifacts", str(exported_copy), "--lock-timeout", "0.5")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert sum("waiting for the lock" in line for line in lines) == 1
    assert lines[-1].startswith("error: ") and f"pid {held_lock_on_copy.pid}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_free_lock_is_taken_at_once_and_records_the_holder(tmp_path):
    with Root(tmp_path).locked(timeout=0):
        holder = (tmp_path / ".lock").read_text().split()
    assert holder[0].isdigit()


def test_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep me")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / ".lock").symlink_to(victim)
    with pytest.raises(IntegrityError, match="symlink"), Root(artifacts).locked(timeout=0):
        pass
    assert victim.read_text() == "keep me"


def forge(directory, text="999999 2000-01-01T00:00:00+00:00\n"):
    """Overwrite the pid and time the holder wrote into .lock (anyone who can write it can)."""
    with open(directory / ".lock", "r+") as f:
        f.truncate(0)
        f.write(text)


def test_the_holder_named_is_the_kernels_not_the_pid_written_in_the_lock(tmp_path, held_lock):
    forge(tmp_path)
    with pytest.raises(LockTimeoutError) as err, Root(tmp_path).locked(timeout=0.3):
        pass
    assert f"held by pid {held_lock.pid} " in str(err.value) and "999999" not in str(err.value)


def test_sign_gives_up_after_lock_timeout_naming_the_holder(exported_copy, held_lock_on_copy, signing_keys):
    forge(exported_copy)
    key = str(signing_keys["trusted"] / "private.pem")
    result = run_cli(
        "-m", "export.sign", "--artifacts", str(exported_copy), "--key", key, "--lock-timeout", "0.5"
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"held by pid {held_lock_on_copy.pid} " in last, last
    assert "wait for that process to finish" in last and "--lock-timeout" in last
    assert "999999" not in result.stderr and "Traceback" not in result.stderr
    assert "--lock-timeout SECONDS" in run_cli("-m", "export.sign", "--help").stdout
