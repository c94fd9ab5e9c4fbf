"""The signature row of `python -m serve.check --trust-key PEM`: which key signed, verified or not.

The check verifies the whole directory (every signed file's sha256, core.signing.verify_dir) before
running any artifact; a directory the trusted key did not sign is one [FAIL] row and exit 1, and no
artifact from it is run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import IntegrityError
from core.signing import SIGNATURE, load_public_key, verify_dir


@dataclass(frozen=True)
class SignatureRow:
    """The outcome of verifying `model.sig` with the trusted key."""

    ok: bool
    trust_key: str  # the public key file given
    key_fingerprint: str  # sha256 of the trusted key's PEM (model-signing's key hint)
    files: int = 0  # how many signed files were verified
    error: str | None = None

    def line(self) -> str:
        mark = "[ok]  " if self.ok else "[FAIL]"
        what = (
            f"verified: signed by key sha256:{self.key_fingerprint[:16]} ({self.trust_key}), "
            f"{self.files} files"
            if self.ok
            else self.error
        )
        return f"{mark} {SIGNATURE:30}{'signature':16}{what}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_signature(artifacts: Path, trust_key: Path) -> SignatureRow:
    """Verify `artifacts` with `trust_key`; a bad key file raises (exit 2), a refusal is a failed row."""
    _, fingerprint = load_public_key(trust_key)
    try:
        verified = verify_dir(artifacts, trust_key)
    except IntegrityError as exc:
        return SignatureRow(False, str(trust_key), fingerprint, error=str(exc))
    return SignatureRow(True, str(trust_key), fingerprint, files=len(verified.files))
