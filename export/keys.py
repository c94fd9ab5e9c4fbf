"""python -m export.keys --out DIR: make an EC P-256 key pair for signing exports.

Writes DIR/private.pem (PKCS#8, unencrypted, mode 0600) and DIR/public.pem (the trust key that
consumers are given with --trust-key). Refuses to overwrite either file. This is for development
and CI: production keys live in a KMS or HSM (model-signing's PKCS#11 and certificate modes), never
in a file next to the code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from oneneuron import cli
from oneneuron.errors import InputError
from oneneuron.signing import fingerprint

logger = logging.getLogger(__name__)

PRIVATE, PUBLIC = "private.pem", "public.pem"


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary in path's directory, then hard-link it to `path`: all or nothing,
    and never over an existing file (link fails with EEXIST)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise InputError(
                f"{path}: already exists; refusing to overwrite a key, choose another --out"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def make_keys(out: Path) -> tuple[Path, Path, str]:
    """Generate the pair in `out` (made 0700 if missing); returns (private, public, fingerprint)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; pass --out DIR with a directory")
    for name in (PRIVATE, PUBLIC):
        if (out / name).exists():
            raise InputError(
                f"{out / name}: already exists; refusing to overwrite a key, choose another --out"
            )
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create_exclusive(out / PRIVATE, private_pem, 0o600)
    try:
        _create_exclusive(out / PUBLIC, public_pem, 0o644)
    except BaseException:
        (out / PRIVATE).unlink()  # a pair or nothing
        raise
    return out / PRIVATE, out / PUBLIC, fingerprint(key.public_key())


def main() -> None:
    p = cli.parser(
        "Make an EC P-256 key pair for signing exports (private.pem mode 0600, public.pem).",
        "python -m export.keys --out keys && python -m export.all --sign-key keys/private.pem",
        command="export.keys",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for private.pem and public.pem"
    )

    def _main(args) -> int:
        private, public, fp = make_keys(args.out)
        print(f"wrote {private} (mode 0600: keep it secret) and {public} (give it to consumers: --trust-key)")
        print(f"key fingerprint sha256:{fp}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
