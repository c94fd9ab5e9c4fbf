"""The signature is part of the export's commit: the manifest names `model.sig` and its key, both are
renamed into place by one journaled transaction, a signature that does not verify is never committed,
and readers verifying while signed commits land never see a manifest with another commit's signature."""

from __future__ import annotations

import json
import signal
import textwrap
import threading
from dataclasses import replace

import pytest

from export.sign import Sealer
from oneneuron.fsio import JOURNAL, Root
from oneneuron.manifest import write
from oneneuron.schema import SIGNATURE, Manifest, Signing
from oneneuron.signing import SignatureError, load_public_key, verify_dir
from serve import load
from serve.check import report
from tests.conftest import run_cli


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name != ".lock")


def test_the_manifest_names_its_signature_and_key(signed_dir, signing_keys):
    fp = load_public_key(signing_keys["trusted"] / "public.pem")[1]
    assert json.loads((signed_dir / "manifest.json").read_text())["signing"] == {
        "bundle": "model.sig",
        "key_sha256": fp,
    }
    assert verify_dir(signed_dir, signing_keys["trusted"] / "public.pem").manifest.signing == Signing(
        SIGNATURE, fp
    )


def test_check_without_a_key_says_signed_but_not_verified(signed_dir, exported_dir, signing_keys, capsys):
    fp = load_public_key(signing_keys["trusted"] / "public.pem")[1]
    assert report(signed_dir) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("[--]   model.sig") and f"signed by key sha256:{fp[:16]}" in first, first
    assert "pass --trust-key" in first
    assert report(exported_dir) == 0
    assert "model.sig" not in capsys.readouterr().out  # an unsigned directory: no row, output as before


def test_an_unsigned_commit_removes_the_old_signature(signed_copy, signing_keys):
    root = Root(signed_copy)
    with root.locked():  # what python -m export.onnx (no --sign-key) does to a signed directory
        write(root, replace(Manifest.load(signed_copy), selftest_rtol=2e-5))
    assert not (signed_copy / SIGNATURE).exists()
    assert "signing" not in json.loads((signed_copy / "manifest.json").read_text())
    with pytest.raises(SignatureError, match=r"model\.sig: not found: .* is unsigned"):
        load("keras_linear", signed_copy, trust_key=signing_keys["trusted"] / "public.pem")


def test_a_signature_that_does_not_verify_is_never_committed(signed_copy, signing_keys):
    """The sealer verifies its bundle over the staged files before staging it: here the manifest
    would name another key than the one that signs, so nothing changes."""
    before = {p.name: p.read_bytes() for p in (signed_copy / "manifest.json", signed_copy / SIGNATURE)}
    sealer = Sealer(signing_keys["trusted"] / "private.pem")
    sealer.signing = Signing(SIGNATURE, load_public_key(signing_keys["other"] / "public.pem")[1])
    root = Root(signed_copy)
    with pytest.raises(SignatureError, match="names signing key"), root.locked():
        write(root, replace(Manifest.load(signed_copy), selftest_rtol=2e-5), sealer)
    assert {n: (signed_copy / n).read_bytes() for n in before} == before
    assert leftovers(signed_copy) == []


@pytest.mark.parametrize("renames_before_kill", [0, 1])
def test_sign_killed_mid_commit_is_finished_by_the_next_writer(
    exported_copy, signing_keys, renames_before_kill
):
    """A real `export.sign` SIGKILLs itself after 0 or 1 of the commit's two renames (manifest.json,
    then model.sig): the next writer rolls the journal forward and the directory verifies."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from oneneuron import fsio
        from export.sign import sign_artifacts
        real, count = os.replace, [0]
        def replace(src, dst):
            if Path(fsio.JOURNAL).name in str(dst):
                return real(src, dst)
            if Path(str(src)).name.startswith((".manifest.json.", ".model.sig.")):
                if count[0] == {renames_before_kill}:
                    os.kill(os.getpid(), signal.SIGKILL)
                count[0] += 1
            real(src, dst)
        os.replace = replace
        sign_artifacts(Path({str(exported_copy)!r}), Path({str(signing_keys["trusted"] / "private.pem")!r}))
    """)
    result = run_cli("-c", script, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (exported_copy / JOURNAL).exists()
    with Root(exported_copy).locked():  # the next writer finishes the commit first
        pass
    verified = verify_dir(exported_copy, signing_keys["trusted"] / "public.pem")
    assert verified.manifest.signing is not None and leftovers(exported_copy) == []


def test_readers_never_see_another_commits_signature(signed_copy, signing_keys):
    """40 signed commits (each changes the manifest) while a reader verifies and loads in a loop:
    every verification succeeds, though manifest.json and model.sig are two renames."""
    root, key = Root(signed_copy), signing_keys["trusted"] / "public.pem"
    sealer = Sealer(signing_keys["trusted"] / "private.pem")
    done, failures, reads = threading.Event(), [], [0]

    def reader():
        while not done.is_set():
            try:
                verify_dir(signed_copy, key, only="manifest.json")
                load("keras_linear", signed_copy, trust_key=key, selftest=False)
            except Exception as exc:  # every failure is the finding
                failures.append(repr(exc))
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            with root.locked():
                write(root, replace(Manifest.load(signed_copy), selftest_rtol=(1 + i % 2) * 1e-5), sealer)
    finally:
        done.set()
        thread.join(60)
    assert failures == [] and reads[0] > 10, (failures[:3], reads[0])


def test_a_model_sig_that_is_a_directory_is_refused_in_one_line(signed_copy, signing_keys):
    """It used to be "IsADirectoryError: 6" for a verifier and, for export.sign, a journal that every
    later writer failed to finish (issue 19)."""
    path = signed_copy / SIGNATURE
    path.unlink()
    path.mkdir()
    manifest = (signed_copy / "manifest.json").read_bytes()
    sign = [
        "-m",
        "export.sign",
        "--artifacts",
        str(signed_copy),
        "--key",
        str(signing_keys["trusted"] / "private.pem"),
    ]
    result = run_cli(*sign)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {path}: a directory, expected the regular file model.sig (the signature bundle) or nothing; "
        f"remove it (rm -r {path}) and re-run python -m export.sign --artifacts {signed_copy} --key PEM "
        "(or export.all --sign-key PEM)"
    ]
    assert leftovers(signed_copy) == [] and (signed_copy / "manifest.json").read_bytes() == manifest
    with pytest.raises(SignatureError, match=rf"^{path}: a directory, expected the regular file .*rm -r "):
        verify_dir(signed_copy, signing_keys["trusted"] / "public.pem")
    path.rmdir()  # the fix the message gives
    result = run_cli(*sign)
    assert result.returncode == 0, result.stderr
    verify_dir(signed_copy, signing_keys["trusted"] / "public.pem")
