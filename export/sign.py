"""python -m export.sign --artifacts DIR --key private.pem: sign an exported directory.

Signs, with OpenSSF model signing (`model-signing`, key mode), exactly the files consumers load:
`manifest.json` and every file of every stored version it names (`core.signing.signed_files`),
never the aliases (hard links `keras_linear.onnx`, symlink `keras_linear.savedmodel`). The bundle
(a Sigstore bundle: DSSE envelope over an in-toto statement of every file's sha256) is written
atomically to DIR/model.sig while holding the directory lock, and verified with the public key
before the command returns. `python -m export.all --sign-key private.pem` runs this after exporting.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import cli
from core.errors import InputError, MissingArtifactError
from core.fixes import fix
from core.fsio import Root
from core.schema import FORMATS, MANIFEST, Manifest
from core.signing import SIGNATURE, Verified, signed_files, verify_dir

logger = logging.getLogger(__name__)


def load_private_key(path: Path) -> Any:
    """Read a PEM EC P-256 private key (unencrypted); exit 2 with the fix for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(
            f"{path}: signing key not found; make one with python -m export.keys --out DIR"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{path}: not an unencrypted PEM private key ({str(exc)[:120]}); "
            "pass private.pem from python -m export.keys"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise InputError(
            f"{path}: not an EC P-256 private key; make one with python -m export.keys --out DIR"
        )
    return key


def _bundle(artifacts: Path, key_path: Path, files: list[str]) -> bytes:
    """model-signing's bundle over exactly `files` (its public API: a hashing config that lists them)."""
    import model_signing.hashing
    import model_signing.signing

    class Listed(model_signing.hashing.Config):
        def hash(self, model_path, *, files_to_hash=None):  # always our list
            return super().hash(model_path, files_to_hash=[Path(model_path) / f for f in files])

    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path)
    config.set_hashing_config(Listed())
    with tempfile.TemporaryDirectory(dir=artifacts, prefix=f".{SIGNATURE}.", suffix=".tmp") as tmp:
        config.sign(artifacts, Path(tmp) / SIGNATURE)
        return (Path(tmp) / SIGNATURE).read_bytes()


def sign_artifacts(artifacts: Path, key_path: Path) -> Verified:
    """Sign `artifacts` with the private key at `key_path`; returns the verified result."""
    from cryptography.hazmat.primitives import serialization

    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    key = load_private_key(key_path)
    if not (artifacts / MANIFEST).is_file():
        raise MissingArtifactError(f"{artifacts / MANIFEST}: not found; {fix('export', artifacts)} first")
    root = Root(artifacts)
    with root.locked():
        manifest = Manifest.load(artifacts)
        for (
            entry
        ) in manifest.all_entries():  # a missing stored version is exit 2 naming it, not a sign failure
            root.existing(entry.path, FORMATS[entry.format])
        files = signed_files(artifacts, manifest)
        bundle = _bundle(artifacts, Path(key_path), files)
        root.write_bytes(SIGNATURE, bundle)
        # Prove what was written verifies, with the public half, before saying it is signed.
        with tempfile.NamedTemporaryFile(dir=artifacts, prefix=".public.", suffix=".tmp") as pub:
            pub.write(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            pub.flush()
            verified = verify_dir(artifacts, pub.name)
    logger.debug("signed %s", ", ".join(files))
    return verified


def describe(verified: Verified) -> str:
    """One line: how many files, where the signature went, and the key's fingerprint."""
    versions = sorted({name.split("/")[0] for name in verified.files} - {MANIFEST})
    return (
        f"signed {len(verified.files)} files (manifest.json and {len(versions)} stored versions) -> "
        f"{verified.artifacts / SIGNATURE}; key sha256:{verified.key_fingerprint[:16]}"
    )


def key_arg(p: argparse.ArgumentParser, flag: str = "--key", required: bool = True) -> None:
    p.add_argument(
        flag,
        type=Path,
        required=required,
        metavar="PEM",
        help="EC P-256 private key (python -m export.keys writes one)",
        dest="sign_key",
    )


def sign_after(p) -> Callable[[argparse.Namespace], Callable[[], None] | None]:
    """`--sign-key` for `python -m export.all` (export._core.main_for's `options`): the key is
    checked before the export starts, and the directory signed after it."""
    key_arg(p, "--sign-key", required=False)

    def prepare(args: argparse.Namespace) -> Callable[[], None] | None:
        if args.sign_key is None:
            return None
        load_private_key(args.sign_key)  # a wrong key fails now, not after a 10 s export
        return lambda: print(describe(sign_artifacts(args.artifacts, args.sign_key)))

    return prepare


def main() -> None:
    p = cli.parser(
        "Sign an exported directory (manifest.json and the stored versions it names) into model.sig.",
        "python -m export.sign --artifacts artifacts --key keys/private.pem",
    )
    cli.artifacts_arg(p)
    key_arg(p)

    def _main(args) -> int:
        print(describe(sign_artifacts(args.artifacts, args.sign_key)))
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
