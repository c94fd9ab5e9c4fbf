"""python -m export.sign --artifacts DIR --key private.pem: sign an exported directory.

Signs, with OpenSSF model signing (`model-signing`, key mode), exactly the files consumers load:
`manifest.json` and every file of every stored version it names (`oneneuron.signing.signed_files`),
never the aliases (hard links `keras_linear.onnx`, symlink `keras_linear.savedmodel`). The bundle
(a Sigstore bundle: DSSE envelope over an in-toto statement of every file's sha256) is verified
with the public key, then committed as DIR/model.sig together with the manifest that names it, in
one journaled transaction under the directory lock (`Sealer`). `python -m export.all --sign-key
private.pem` signs inside its own commit the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from oneneuron import cli
from oneneuron.errors import InputError, MissingArtifactError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, Transaction
from oneneuron.manifest import write
from oneneuron.schema import FORMATS, MANIFEST, SIGNATURE, Manifest, Signing
from oneneuron.signing import Verified, signed_files, verify_dir

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


def _bundle(view: Path, key_path: Path, files: list[str]) -> bytes:
    """model-signing's bundle over exactly `files` of `view` (its public API: a hashing config that
    lists them)."""
    import model_signing.hashing
    import model_signing.signing

    class Listed(model_signing.hashing.Config):
        def hash(self, model_path, *, files_to_hash=None):  # always our list
            return super().hash(model_path, files_to_hash=[Path(model_path) / f for f in files])

    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path)
    config.set_hashing_config(Listed())
    config.sign(view, view / SIGNATURE)
    return (view / SIGNATURE).read_bytes()


class Sealer:
    """Signs a manifest in the transaction that commits it (oneneuron.manifest `Seal`): `stage(txn)`
    signs the staged manifest and the stored versions it names and stages `model.sig`, so the
    manifest and its signature are renamed into place together (one journal) or not at all.

    model-signing hashes files under one directory, and the staged manifest is a temporary file, so
    the signature is made over a view: a temporary directory inside ARTIFACTS holding hard links
    (the same bytes, no copy) named as consumers will see them. The bundle is verified with the
    public key over that view before it is staged: a signature that would not verify is never
    committed.
    """

    def __init__(self, key_path: Path):
        from oneneuron.signing import fingerprint

        self.key_path = Path(key_path)
        self.public = load_private_key(key_path).public_key()  # a wrong key fails before any export
        self.signing = Signing(SIGNATURE, fingerprint(self.public))
        self.verified: Verified | None = None

    def stage(self, txn: Transaction) -> None:
        from cryptography.hazmat.primitives import serialization

        root = txn.root
        artifacts = root.dir
        with tempfile.TemporaryDirectory(dir=artifacts, prefix=f".{SIGNATURE}.", suffix=".tmp") as tmp:
            view = Path(tmp) / "view"
            view.mkdir()
            os.link(txn.staged(MANIFEST), view / MANIFEST)
            manifest = Manifest.load(view)
            for entry in manifest.all_entries():  # a missing stored version: exit 2 naming it
                root.existing(entry.path, FORMATS[entry.format])
            files = signed_files(artifacts, manifest)
            for name in files:
                if name != MANIFEST:
                    (view / name).parent.mkdir(parents=True, exist_ok=True)
                    os.link(root.existing(name), view / name)
            bundle = _bundle(view, self.key_path, files)
            public = Path(tmp) / "public.pem"
            public.write_bytes(
                self.public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            self.verified = replace(verify_dir(view, public), artifacts=artifacts)
        txn.write_bytes(SIGNATURE, bundle)
        logger.debug("signed %s", ", ".join(files))

    def result(self) -> Verified:
        if self.verified is None:
            raise RuntimeError("Sealer.result() before a commit staged the signature")
        return self.verified

    def describe(self) -> str:
        """One line: how many files, where the signature went, and the key's fingerprint."""
        return describe(self.result())


def sign_artifacts(artifacts: Path, key_path: Path) -> Verified:
    """Sign `artifacts` (already exported) with the private key at `key_path`: the manifest gains
    its `signing` field and is committed with `model.sig` in one transaction. Returns what verified."""
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    if not (artifacts / MANIFEST).is_file():
        raise MissingArtifactError(f"{artifacts / MANIFEST}: not found; {fix('export', artifacts)} first")
    root = Root(artifacts)
    sealer = Sealer(key_path)
    with root.locked():
        write(root, Manifest.load(artifacts), sealer)
    return sealer.result()


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


def sign_option(p) -> Callable[[argparse.Namespace], Sealer | None]:
    """`--sign-key` for `python -m export.all` (export._core.main_for's `options`): the key is
    read before the export starts (a wrong key fails now, not after a 10 s export), and the export
    commits the manifest and its signature together."""
    key_arg(p, "--sign-key", required=False)
    return lambda args: None if args.sign_key is None else Sealer(args.sign_key)


def main() -> None:
    p = cli.parser(
        "Sign an exported directory (manifest.json and the stored versions it names) into model.sig.",
        "python -m export.sign --artifacts artifacts --key keys/private.pem",
        command="export.sign",
    )
    cli.artifacts_arg(p)
    key_arg(p)

    def _main(args) -> int:
        print(describe(sign_artifacts(args.artifacts, args.sign_key)))
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
