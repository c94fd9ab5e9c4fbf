"""The signature row of `python -m serve.check`: which key signed, verified or not.

With `--trust-key PEM` the check verifies the whole directory (every signed file's sha256,
oneneuron.signing.verify_dir) before running any artifact; a directory the trusted key did not sign is
one [FAIL] row and exit 1, and no artifact from it is run. Without a key, a signed directory gets
a "not verified" row naming the key its manifest records (an unsigned one gets no row: the
article's output stays as it is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oneneuron.errors import IntegrityError
from oneneuron.schema import Manifest
from oneneuron.signing import SIGNATURE, load_public_key, verify_dir


@dataclass(frozen=True)
class SignatureRow:
    """The outcome of verifying `model.sig` with the trusted key."""

    ok: bool
    trust_key: str | None  # the public key file given; None: nothing was verified
    key_fingerprint: str  # sha256 of the trusted key's PEM (model-signing's key hint), or the manifest's
    files: int = 0  # how many signed files were verified
    error: str | None = None
    verified: bool = True
    generation: int | None = None  # the signed manifest's (--min-generation compares this one)

    def line(self) -> str:
        mark = "[ok]  " if self.ok and self.verified else "[--]  " if self.ok else "[FAIL]"
        what = (
            f"verified: signed by key sha256:{self.key_fingerprint[:16]} ({self.trust_key}), "
            f"{self.files} files"
            if self.ok and self.verified
            else f"not verified: the manifest says signed by key sha256:{self.key_fingerprint[:16]}; "
            "pass --trust-key public.pem to verify"
            if self.ok
            else self.error
        )
        return f"{mark} {SIGNATURE:30}{'signature':16}{what}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def unverified(manifest: Manifest) -> SignatureRow | None:
    """Without a trust key: the row for a manifest that records a signing key, else None."""
    if manifest.signing is None:
        return None
    return SignatureRow(True, None, manifest.signing.key_sha256, verified=False)


def check_signature(artifacts: Path, trust_key: Path) -> tuple[SignatureRow, Manifest | None]:
    """Verify `artifacts` with `trust_key`; a bad key file raises (exit 2), a refusal is a failed row.
    Returns the row and the manifest parsed from the signed bytes (None when refused): what the
    check then runs against, not a manifest read again afterwards."""
    _, fingerprint = load_public_key(trust_key)
    try:
        verified = verify_dir(artifacts, trust_key)
    except IntegrityError as exc:
        return SignatureRow(False, str(trust_key), fingerprint, error=str(exc)), None
    row = SignatureRow(
        True, str(trust_key), fingerprint, files=len(verified.files), generation=verified.manifest.generation
    )
    return row, verified.manifest
