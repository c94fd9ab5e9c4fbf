"""Verify a signed artifacts directory against a trusted public key (`model.sig`, OpenSSF model signing).

What is signed (export/sign.py writes it with `model-signing` in key mode, EC P-256): the files
consumers load, never an alias: `manifest.json` and every file of every stored version the
manifest names (`keras_linear.<sha12>.onnx`, each file inside `keras_linear.<sha12>.savedmodel/`).
The stable names (hard links, symlinks), the training files and the signature itself are not.

Where the signature is: always `model.sig` beside `manifest.json`, committed with it in one
transaction (export/sign.py `Sealer`). The manifest names it in its `signing` field, with the
signing key's fingerprint; that field is covered by the signature, so it is only trusted once the
bundle verifies (then it must name the trusted key). A consumer given a trusted key looks for
`model.sig` whatever the manifest says: no file there is "unsigned" and refused.

Verification, in order: (1) the bundle is a Sigstore bundle holding a DSSE envelope over an in-toto
statement; (2) its ECDSA signature over the DSSE pre-authentication encoding verifies with the
trusted key; (3) `manifest.json` has the signed sha256 (so a signature copied from another export
is refused); (4) the files that manifest names are exactly the signed files (none added, none
removed); (5) every file has its signed sha256. Only then is the manifest trusted.

This module imports `cryptography` (lazily, ~45 ms) and never `model_signing` (~0.4 s), so a loader
that verifies stays within 1.2x of one that does not (bench row 3). tests/test_signing.py checks
that `model_signing`'s own verifier accepts what export.sign writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneneuron.errors import InputError, IntegrityError, MissingArtifactError
from oneneuron.fixes import fix
from oneneuron.fsio import kind_of, read_regular, sha256_file
from oneneuron.schema import MANIFEST, MAX_JSON_BYTES, SIGNATURE, Manifest

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"  # followed by .v0.3+json
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"


class SignatureError(IntegrityError):
    """The directory is unsigned, signed by another key, or changed after signing (exit 1)."""


@dataclass(frozen=True)
class Verified:
    """A directory whose signature verified with the trusted key."""

    artifacts: Path
    key_fingerprint: str  # sha256 (hex) of the trusted public key's PEM, model-signing's key hint
    digests: tuple[tuple[str, str], ...]  # (relative path, sha256) of every signed file, sorted
    manifest: Manifest  # parsed from the manifest bytes whose signed sha256 was checked

    @property
    def files(self) -> list[str]:
        return [name for name, _ in self.digests]

    def digest(self, relative: str) -> str | None:
        return dict(self.digests).get(relative)

    def describe(self) -> dict[str, Any]:
        return {"verified": True, "key_fingerprint": self.key_fingerprint, "files": len(self.digests)}


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is computed over."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def load_public_key(path: str | Path) -> tuple[Any, str]:
    """Read a PEM EC P-256 public key; returns (key, fingerprint). Refuses anything else (exit 2)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(
            f"{path}: trust key not found; pass the public key (public.pem) that python -m export.keys wrote"
        )
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        raise InputError(
            f"{path}: is a private key; pass the public key (public.pem) to verify, never the private one"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{path}: not a PEM public key ({str(exc)[:120]}); pass public.pem from python -m export.keys"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InputError(
            f"{path}: not an EC P-256 public key; make a key pair with python -m export.keys --out DIR"
        )
    return key, fingerprint(key)


def fingerprint(public_key: Any) -> str:
    """sha256 (hex) of the key's SubjectPublicKeyInfo PEM: the `hint` model-signing puts in a bundle."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def signed_files(artifacts: Path, manifest: Manifest | None = None) -> list[str]:
    """The files a signature of `artifacts` covers: manifest.json and every file of every stored
    version the manifest names (relative POSIX paths, sorted). Refuses a path that leaves the
    directory or a symlink (an alias could be repointed after signing)."""
    artifacts = Path(artifacts)
    root = artifacts.resolve()
    manifest = manifest if manifest is not None else Manifest.load(artifacts)
    files = {MANIFEST}
    for entry in manifest.all_entries():  # every kept version: a server may load any of them
        rel = entry.path
        path = artifacts / rel
        if not isinstance(rel, str) or not path.resolve().is_relative_to(root) or path.resolve() == root:
            raise InputError(
                f"{artifacts / MANIFEST}: entry path {rel!r} leaves {artifacts}; {fix('export', artifacts)}"
            )
        if path.is_symlink():
            raise InputError(f"{path}: is a symlink; the manifest must name stored versions, not aliases")
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                for name in dirnames + filenames:
                    full = Path(dirpath) / name
                    if full.is_symlink():
                        raise SignatureError(
                            f"{full}: a symlink inside a stored version; {fix('export', artifacts)}"
                        )
                    if name in filenames:
                        files.add(full.relative_to(artifacts).as_posix())
        else:
            files.add(Path(rel).as_posix())
    return sorted(files)


def check_signature_path(artifacts: Path, error: type[Exception] = InputError) -> None:
    """`model.sig` must be absent or a regular file; anything else (a directory, a FIFO, a symlink)
    is refused with `error`, in one line naming it and the fix: by a signer before it stages a
    replacement it could not rename over (a directory there left the commit's journal unfinishable,
    issue 19), by a verifier before it reads."""
    path = Path(artifacts) / SIGNATURE
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise error(
            f"{path}: a {kind_of(mode)}, expected the regular file {SIGNATURE} (the signature bundle) or "
            f"nothing; remove it (rm -r {path}) and {fix('sign', artifacts)}"
        )


def read_bundle(path: Path, data: bytes) -> tuple[bytes, bytes, str]:
    """Parse the Sigstore bundle `data` read from `path`; returns (payload, signature DER, key
    hint). Malformed: SignatureError naming `path`."""
    resign = f"re-sign with {fix('sign', path.parent).removeprefix('re-run ')}"
    try:
        bundle = json.loads(data)
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        sig = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        hint = (bundle.get("verificationMaterial") or {}).get("publicKey", {}).get("hint") or ""
        media, payload_type = bundle["mediaType"], envelope["payloadType"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error) as exc:
        raise SignatureError(
            f"{path}: not a valid signature bundle ({type(exc).__name__}: {str(exc)[:100]}); "
            f"it is truncated or not model-signing's JSON; {resign}"
        ) from None
    if not str(media).startswith(BUNDLE_MEDIA_TYPE) or payload_type != PAYLOAD_TYPE:
        raise SignatureError(
            f"{path}: bundle type {media!r} / {payload_type!r} is not a model-signing DSSE bundle; {resign}"
        )
    return payload, sig, str(hint)


def parse_statement(path: Path, payload: bytes) -> dict[str, str]:
    """The signed in-toto statement's resources as {relative path: sha256}."""
    try:
        statement = json.loads(payload)
        predicate = statement["predicate"]
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise ValueError(f"statement type {statement['_type']!r} / {statement['predicateType']!r}")
        if predicate["serialization"]["method"] != "files":
            raise ValueError(f"serialization {predicate['serialization']['method']!r}, expected 'files'")
        resources = {}
        for r in predicate["resources"]:
            if r["algorithm"] != "sha256":
                raise ValueError(f"algorithm {r['algorithm']!r}, expected sha256")
            resources[str(r["name"])] = str(r["digest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(
            f"{path}: the signed statement is not model-signing's v1.0 file list ({exc})"
        ) from None
    return resources


def verify_dir(artifacts: str | Path, trust_key: str | Path, only: str | None = None) -> Verified:
    """Verify `artifacts/model.sig` with the public key file `trust_key`; raise SignatureError
    naming the file and the reason, or return what was verified (with the manifest it verified).

    With `only` (a stored version's relative path), file contents are hashed for that version
    alone: a loader verifies the signed index and what it loads, so one tampered model does not
    keep a server from serving the others. The signature, the manifest and the file set are
    always checked in full.

    The manifest and the signature are each read once; the manifest returned is parsed from the
    bytes whose sha256 was checked. An export commits `manifest.json` and `model.sig` with two
    renames back to back, so a reader can see one new and one old: a failed verification is
    retried while either file is still changing, and reported once both are stable.
    """
    artifacts = Path(artifacts)
    key, fp = load_public_key(trust_key)
    how = fix("sign", artifacts).removeprefix("re-run ")
    pair = _read_pair(artifacts, how)
    for attempt in range(_RETRIES + 1):
        try:
            return _verify(artifacts, key, fp, trust_key, pair, only)
        except SignatureError:
            if attempt == _RETRIES:
                raise
            time.sleep(_RETRY_PAUSE)
            again = _read_pair(artifacts, how)
            if again == pair:
                raise  # nothing moved: the error stands
            pair = again
    raise AssertionError("unreachable")


_RETRIES = 5  # re-reads of a (model.sig, manifest.json) pair that fails while an export commits
_RETRY_PAUSE = 0.02


def _read_pair(artifacts: Path, how: str) -> tuple[bytes | None, bytes | None]:
    """model.sig's and manifest.json's bytes (bounded, regular files only; None when absent)."""

    def read(path: Path) -> bytes | None:
        if not path.exists() and not path.is_symlink():
            return None
        return read_regular(path, MAX_JSON_BYTES, f"re-sign with {how}")

    check_signature_path(artifacts, SignatureError)
    return read(artifacts / SIGNATURE), read(artifacts / MANIFEST)


def _verify(
    artifacts: Path,
    key: Any,
    fp: str,
    trust_key: str | Path,
    pair: tuple[bytes | None, bytes | None],
    only: str | None,
) -> Verified:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    sig_bytes, manifest_bytes = pair
    sig_path, manifest_path = artifacts / SIGNATURE, artifacts / MANIFEST
    how = fix("sign", artifacts).removeprefix("re-run ")
    if sig_bytes is None:
        raise SignatureError(f"{sig_path}: not found: {artifacts} is unsigned; sign it with {how}")
    payload, sig, hint = read_bundle(sig_path, sig_bytes)
    if hint and hint != fp:
        raise SignatureError(
            f"{sig_path}: signed by key {hint[:16]}, not the trusted key {fp[:16]} ({trust_key}); "
            f"pass that key's public.pem, or re-sign with {how}"
        )
    try:
        key.verify(sig, pae(payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(
            f"{sig_path}: the signature does not verify with the trusted key {fp[:16]} ({trust_key}): "
            f"signed by another key, or the bundle was altered; re-sign with {how}"
        ) from None
    signed = parse_statement(sig_path, payload)
    if MANIFEST not in signed:
        raise SignatureError(f"{sig_path}: does not cover {MANIFEST}; re-sign with {how}")
    if manifest_bytes is None:
        raise SignatureError(f"{manifest_path}: removed after signing; {fix('sign', artifacts)}")
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if actual != signed[MANIFEST]:
        raise SignatureError(
            f"{manifest_path}: sha256 {actual[:12]} != signed {signed[MANIFEST][:12]}: the manifest changed "
            f"after signing (or {SIGNATURE} comes from another export); re-sign with {how}"
        )
    manifest = Manifest.load(artifacts, manifest_bytes)  # the signed bytes, parsed
    if manifest.signing is not None and manifest.signing.key_sha256 != fp:
        raise SignatureError(  # the bundle verified with the trusted key, so the manifest lies
            f"{manifest_path}: names signing key {manifest.signing.key_sha256[:16]}, but {SIGNATURE} "
            f"verifies with {fp[:16]}; re-sign with {how}"
        )
    present = set(signed_files(artifacts, manifest))
    added, removed = sorted(present - signed.keys()), sorted(signed.keys() - present)
    for name in removed:
        if not (artifacts / name).exists():
            raise SignatureError(
                f"{artifacts / name}: signed but removed after signing; {fix('sign', artifacts)}"
            )
    if added or removed:
        raise SignatureError(
            f"{artifacts / (added or removed)[0]}: {'added' if added else 'no longer named by the manifest'} "
            f"after signing (the signature covers {len(signed)} files); re-sign with {how}"
        )
    for name in sorted(signed):
        if name == MANIFEST or (only is not None and name != only and not name.startswith(f"{only}/")):
            continue
        digest = sha256_file(artifacts / name)
        if digest != signed[name]:
            raise SignatureError(
                f"{artifacts / name}: sha256 {digest[:12]} != signed {signed[name][:12]}: changed after "
                f"signing; {fix('sign', artifacts)}"
            )
    return Verified(artifacts, fp, tuple(sorted(signed.items())), manifest)


def verify_file(
    path: str | Path, artifacts: str | Path, trust_key: str | Path, data: bytes | None = None
) -> Verified:
    """Verify the directory, then require that `path` (a stored version or its alias) holds the
    bytes the signature records for the entry of the verified manifest it belongs to. Whatever a
    concurrent writer does, the bytes hashed here equal a signed digest or nothing is returned.

    With `data` (the bytes a caller read from `path` once, and will run), those bytes are hashed
    and the file is not read again: a consumer runs exactly what was verified (issue 19)."""
    path, artifacts = Path(path), Path(artifacts)
    verified = verify_dir(artifacts, trust_key, only=MANIFEST)  # signature, manifest, file set
    for entry in verified.manifest.all_entries():  # the newest first: an alias names the newest
        if (artifacts / entry.path).resolve() == path.resolve() or (
            path.parent.resolve() == artifacts.resolve() and path.name == entry.alias
        ):
            expected = verified.digest(entry.path)
            digest = sha256_file(path) if data is None else hashlib.sha256(data).hexdigest()
            if digest == expected:
                return verified
            what = path if path.name == Path(entry.path).name else f"{path} (stable name of {entry.path})"
            raise SignatureError(
                f"{what}: sha256 {digest[:12]} != signed {(expected or 'nothing')[:12]}: changed after "
                f"signing; {fix('sign', artifacts)}"
            )
    raise SignatureError(
        f"{path}: not named by the signed {artifacts / MANIFEST}, so not covered by {SIGNATURE}"
    )
