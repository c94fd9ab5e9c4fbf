"""What every consumer's signing tests share: the ways a signed directory is damaged, and the
message each must produce (the Python, Node and browser verifiers word them alike)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from export.sign import sign_artifacts
from oneneuron.signing import SIGNATURE


def stored(artifacts: Path, name: str) -> Path:
    """The stored version the manifest names for artifact `name` (e.g. keras_linear.<sha12>.onnx)."""
    manifest = json.loads((artifacts / "manifest.json").read_text())
    return artifacts / next(e["path"] for e in manifest["artifacts"] if e["name"] == name)


def keras_onnx(artifacts: Path) -> Path:
    return stored(artifacts, "keras_linear.onnx")  # keras_linear.onnx is a hard link to it


def savedmodel(artifacts: Path) -> Path:
    return stored(artifacts, "keras_linear.savedmodel")


def _unsigned(a: Path, keys: dict[str, Path]) -> None:
    (a / SIGNATURE).unlink()


def _other_key(a: Path, keys: dict[str, Path]) -> None:
    sign_artifacts(a, keys["other"] / "private.pem")


def _forged_hint(a: Path, keys: dict[str, Path]) -> None:
    """Signed by the other key, with the trusted key's hint written into the bundle."""
    from oneneuron.signing import load_public_key

    sign_artifacts(a, keys["other"] / "private.pem")
    bundle = json.loads((a / SIGNATURE).read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = load_public_key(keys["trusted"] / "public.pem")[1]
    (a / SIGNATURE).write_text(json.dumps(bundle))


def _changed(a: Path, keys: dict[str, Path]) -> None:
    path = keras_onnx(a)  # written in place: the alias (same inode) changes too
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of metadata: still a loadable model, just not the signed one
    path.write_bytes(bytes(data))


def _added(a: Path, keys: dict[str, Path]) -> None:
    (savedmodel(a) / "assets").mkdir(exist_ok=True)
    (savedmodel(a) / "assets" / "extra.txt").write_text("added after signing\n")


def _removed(a: Path, keys: dict[str, Path]) -> None:
    (savedmodel(a) / "fingerprint.pb").unlink()


def _manifest_edited(a: Path, keys: dict[str, Path]) -> None:
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["artifacts"][0]["created"] = "2000-01-01T00:00:00+00:00"
    (a / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _older_export(a: Path, keys: dict[str, Path]) -> None:
    """A genuine signature by the trusted key, copied from another export (another manifest)."""
    other = a.parent / "older-export"
    shutil.copytree(a, other, symlinks=True)
    _manifest_edited(other, keys)
    sign_artifacts(other, keys["trusted"] / "private.pem")
    shutil.copyfile(other / SIGNATURE, a / SIGNATURE)
    shutil.rmtree(other)


def _truncated(a: Path, keys: dict[str, Path]) -> None:
    data = (a / SIGNATURE).read_bytes()
    (a / SIGNATURE).write_bytes(data[: len(data) // 2])


def _not_json(a: Path, keys: dict[str, Path]) -> None:
    (a / SIGNATURE).write_bytes(b"\x00\xffnot a bundle\n")


def _bad_payload(a: Path, keys: dict[str, Path]) -> None:
    bundle = json.loads((a / SIGNATURE).read_text())
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(b"[1, 2").decode()
    (a / SIGNATURE).write_text(json.dumps(bundle))


# kind -> (damage, a regular expression the refusal must match). Each names the file and the reason.
CASES = {
    "unsigned": (_unsigned, r"model\.sig: not found: .* is unsigned; sign it with python -m export\.sign"),
    "other_key": (_other_key, r"model\.sig: signed by key [0-9a-f]{16}, not the trusted key [0-9a-f]{16}"),
    "forged_hint": (_forged_hint, r"model\.sig: the signature does not verify with the trusted key"),
    "changed": (_changed, r"keras_linear\.[0-9a-f]{12}\.onnx: sha256 [0-9a-f]{12} != signed [0-9a-f]{12}"),
    "added": (_added, r"savedmodel/assets/extra\.txt: added after signing"),
    "removed": (_removed, r"savedmodel/fingerprint\.pb: signed but removed after signing"),
    "manifest_edited": (
        _manifest_edited,
        r"manifest\.json: sha256 [0-9a-f]{12} != signed .*changed after signing",
    ),
    "older_export": (_older_export, r"manifest\.json: sha256 .* \(or model\.sig comes from another export\)"),
    "truncated": (_truncated, r"model\.sig: not a valid signature bundle"),
    "not_json": (_not_json, r"model\.sig: not a valid signature bundle"),
    "bad_payload": (_bad_payload, r"model\.sig: the signature does not verify with the trusted key"),
}


def damage(artifacts: Path, keys: dict[str, Path], kind: str) -> str:
    """Apply damage `kind` to a signed copy; returns the pattern its refusal must match."""
    fn, pattern = CASES[kind]
    fn(artifacts, keys)
    return pattern
