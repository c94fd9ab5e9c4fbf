"""Signed artifacts in Python: export.keys, export.sign / export.all --sign-key, the verifier
(oneneuron/signing.py), `load(..., trust_key=...)` and `serve.check --trust-key`; every refusal."""

from __future__ import annotations

import json
import re
import shutil
import stat

import pytest

from oneneuron.errors import InputError, IntegrityError
from oneneuron.signing import SIGNATURE, SignatureError, load_public_key, verify_dir
from serve import load
from serve.check import report
from tests.conftest import run_cli
from tests.signed import CASES, damage, keras_onnx


def test_keys_cli_writes_a_private_pair_and_never_overwrites(tmp_path):
    out = tmp_path / "keys"
    result = run_cli("-m", "export.keys", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((out / "private.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    _, fp = load_public_key(out / "public.pem")
    assert f"key fingerprint sha256:{fp}" in result.stdout
    before = (out / "private.pem").read_bytes()
    again = run_cli("-m", "export.keys", "--out", str(out))
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        == f"error: {out / 'private.pem'}: already exists; refusing to overwrite a key, choose another --out"
    )
    assert (out / "private.pem").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["private.pem", "public.pem"]  # no temporaries left


def test_sign_then_verify(signed_dir, signing_keys):
    verified = verify_dir(signed_dir, signing_keys["trusted"] / "public.pem")
    manifest = json.loads((signed_dir / "manifest.json").read_text())
    stored = {e["path"] for e in manifest["artifacts"]}
    # exactly manifest.json and every file of the stored versions; never an alias or the training files
    assert {f.split("/")[0] for f in verified.files} == stored | {"manifest.json"}
    assert not {"keras_linear.onnx", "torch_linear.onnx", "keras_linear.savedmodel", "training.json"} & {
        f.split("/")[0] for f in verified.files
    }
    assert any(
        f.startswith("keras_linear.") and f.endswith("savedmodel/saved_model.pb") for f in verified.files
    )
    assert verified.key_fingerprint == load_public_key(signing_keys["trusted"] / "public.pem")[1]
    assert stat.S_IMODE((signed_dir / SIGNATURE).stat().st_mode) == 0o644


def test_model_signing_own_verifier_accepts_the_bundle(signed_dir, signing_keys, tmp_path):
    """Interoperability: the reference implementation verifies what we write, and not with another key."""
    import model_signing.verifying

    def verify(key):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key).set_ignore_unsigned_files(
            True
        ).verify(signed_dir, signed_dir / SIGNATURE)

    verify(signing_keys["trusted"] / "public.pem")
    with pytest.raises(ValueError, match="Key mismatch"):
        verify(signing_keys["other"] / "public.pem")


def test_loader_with_and_without_a_key(signed_dir, signing_keys):
    model = load("keras_linear", signed_dir, trust_key=signing_keys["trusted"] / "public.pem")
    assert model.signed_by == load_public_key(signing_keys["trusted"] / "public.pem")[1]
    assert abs(float(model.predict(10.0)[0, 0]) - 19) < 0.05
    by_alias = load(signed_dir / "torch_linear.onnx", trust_key=signing_keys["trusted"] / "public.pem")
    assert by_alias.signed_by == model.signed_by
    assert load("keras_linear", signed_dir).signed_by is None  # no key: as before, and says unsigned


def test_loader_imports_no_crypto_without_a_key(signed_dir):
    code = (
        "import sys; from serve import load; load('keras_linear', sys.argv[1]); "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('cryptography', 'model_signing', 'oneneuron.signing'))))"
    )
    result = run_cli("-c", code, str(signed_dir))
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize("kind", sorted(CASES))
def test_verifier_and_loader_refuse(signed_copy, signing_keys, kind):
    pattern = damage(signed_copy, signing_keys, kind)
    key = signing_keys["trusted"] / "public.pem"
    with pytest.raises(SignatureError) as info:
        verify_dir(signed_copy, key)
    assert re.search(pattern, str(info.value)), str(info.value)
    with pytest.raises(SignatureError) as info:
        load("keras_linear", signed_copy, trust_key=key)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert load("keras_linear", signed_copy, verify_sha256=False, selftest=False).signed_by is None


def test_loader_refuses_an_unsigned_file_by_path(signed_copy, signing_keys):
    extra = signed_copy / "keras_linear.0123456789ab.onnx"
    shutil.copyfile(keras_onnx(signed_copy), extra)
    with pytest.raises(SignatureError, match=r"keras_linear\.0123456789ab\.onnx: not named by the signed"):
        load(extra, trust_key=signing_keys["trusted"] / "public.pem")


def test_one_tampered_model_does_not_refuse_the_other(signed_copy, signing_keys):
    damage(signed_copy, signing_keys, "changed")  # keras_linear's ONNX file
    key = signing_keys["trusted"] / "public.pem"
    assert load("torch_linear", signed_copy, trust_key=key).signed_by
    with pytest.raises(SignatureError, match="changed after signing"):
        load("keras_linear", signed_copy, trust_key=key)


def test_trust_key_must_be_a_public_p256_key(signed_dir, signing_keys, tmp_path):
    with pytest.raises(InputError, match="is a private key; pass the public key"):
        load("keras_linear", signed_dir, trust_key=signing_keys["trusted"] / "private.pem")
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(InputError, match="not a PEM public key"):
        verify_dir(signed_dir, tmp_path / "junk.pem")
    with pytest.raises(FileNotFoundError, match="trust key not found"):
        verify_dir(signed_dir, tmp_path / "missing.pem")


def test_check_prints_the_signature_row(signed_dir, signing_keys, capsys):
    fp = load_public_key(signing_keys["trusted"] / "public.pem")[1]
    assert report(signed_dir, trust_key=signing_keys["trusted"] / "public.pem") == 0
    out = capsys.readouterr().out.splitlines()
    assert re.match(
        rf"\[ok\]   model\.sig +signature +verified: signed by key sha256:{fp[:16]} \(.*\), \d+ files", out[0]
    )
    assert out[-1].startswith("all ") and out[-1].endswith(" checks passed")


@pytest.mark.parametrize("kind", ["other_key", "changed", "older_export", "not_json"])
def test_check_refuses_and_runs_nothing(signed_copy, signing_keys, kind, capsys):
    pattern = damage(signed_copy, signing_keys, kind)
    assert report(signed_copy, trust_key=signing_keys["trusted"] / "public.pem") == IntegrityError.exit_code
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[FAIL] model.sig") and re.search(pattern, out[0]), out
    assert report(signed_copy, trust_key=signing_keys["trusted"] / "public.pem", as_json=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["ok"] is False
        and doc["signature"]["ok"] is False
        and re.search(pattern, doc["signature"]["error"])
    )


def test_cli_sign_and_check(exported_copy, signing_keys):
    key, pub = signing_keys["other"] / "private.pem", signing_keys["other"] / "public.pem"
    signed = run_cli("-m", "export.sign", "--artifacts", str(exported_copy), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    assert re.fullmatch(
        r"signed \d+ files \(manifest\.json and 4 stored versions\) -> "
        rf"{re.escape(str(exported_copy / SIGNATURE))}; "
        r"key sha256:[0-9a-f]{16}\n",
        signed.stdout,
    ), signed.stdout
    checked = run_cli(
        "-m", "serve.check", "--artifacts", str(exported_copy), "--trust-key", str(pub), "--json"
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["signature"]["ok"] is True
    refused = run_cli(
        "-m",
        "serve.check",
        "--artifacts",
        str(exported_copy),
        "--trust-key",
        str(signing_keys["trusted"] / "public.pem"),
    )
    assert refused.returncode == 1 and "not the trusted key" in refused.stdout
    assert not list(exported_copy.glob(".*.tmp"))  # the signing temporaries are gone


def test_cli_bad_input_is_one_line_and_exit_2(exported_copy, signing_keys, tmp_path):
    (tmp_path / "junk.pem").write_text("junk\n")
    cases = [
        (
            ("-m", "export.sign", "--artifacts", str(exported_copy), "--key", str(tmp_path / "none.pem")),
            "not found",
        ),
        (
            ("-m", "export.sign", "--artifacts", str(exported_copy), "--key", str(tmp_path / "junk.pem")),
            "not an unencrypted",
        ),
        (
            (
                "-m",
                "export.sign",
                "--artifacts",
                str(exported_copy),
                "--key",
                str(signing_keys["trusted"] / "public.pem"),
            ),
            "not an unencrypted",
        ),
        (
            (
                "-m",
                "export.sign",
                "--artifacts",
                str(tmp_path / "nodir"),
                "--key",
                str(signing_keys["trusted"] / "private.pem"),
            ),
            "no such directory",
        ),
        (
            ("-m", "export.all", "--artifacts", str(exported_copy), "--sign-key", str(tmp_path / "junk.pem")),
            "not an unencrypted",
        ),
        (
            (
                "-m",
                "serve.check",
                "--artifacts",
                str(exported_copy),
                "--trust-key",
                str(signing_keys["trusted"] / "private.pem"),
            ),
            "is a private key",
        ),
        (
            ("-m", "serve", "--artifacts", str(exported_copy), "--trust-key", str(tmp_path / "none.pem")),
            "trust key not found",
        ),
    ]
    manifest = (exported_copy / "manifest.json").read_bytes()
    for args, expected in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert (
            lines[-1].startswith("error: ") and expected in lines[-1] and "Traceback" not in result.stderr
        ), args
    assert (exported_copy / "manifest.json").read_bytes() == manifest  # export.all stopped before exporting
    assert not (exported_copy / SIGNATURE).exists()


@pytest.mark.slow
def test_export_all_sign_key_end_to_end(trained_dir, signing_keys, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(trained_dir, art)
    result = run_cli(
        "-m",
        "export.all",
        "--artifacts",
        str(art),
        "--sign-key",
        str(signing_keys["trusted"] / "private.pem"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("signed ")
    key = signing_keys["trusted"] / "public.pem"
    assert verify_dir(art, key).files
    code = (
        "import sys; from serve import load; "
        "print(load('torch_linear', sys.argv[1], trust_key=sys.argv[2]).signed_by)"
    )
    loaded = run_cli("-c", code, str(art), str(key))
    assert loaded.returncode == 0 and loaded.stdout.strip() == load_public_key(key)[1], loaded.stderr
