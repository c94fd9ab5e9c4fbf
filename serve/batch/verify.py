"""What a batch job runs: the model's bytes, read once, verified, and every session built from them.

The job reads the model file once (a regular file opened without following a symlink, bounded:
`oneneuron.fsio.read_regular`), checks the bytes' sha256 against the manifest entry (with
`--trust-key`, against the digest the signature covers), and builds the onnxruntime session from
those bytes, in this process and on every Dask worker (which receives the same bytes and checks
them again). Nothing re-opens the file by path after it was hashed, so a file swapped between
the check and the load is never run (issue 19); no worker writes a copy of it anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from oneneuron.errors import IntegrityError
from oneneuron.fixes import fix
from oneneuron.fsio import read_regular
from oneneuron.schema import ArtifactEntry, Manifest
from oneneuron.signing import SignatureError
from serve.loader import LoadOptions, Model, check_floor, resolve

logger = logging.getLogger(__name__)

MAX_MODEL_BYTES = 1 << 31  # the loader's bound for one artifact (oneneuron.fsio.Root.read_bytes)


@dataclass(frozen=True)
class VerifiedModel:
    """The model's verified bytes and a session built from them."""

    path: str  # names the model in messages and in the final manifest; never opened again
    sha256: str  # of `data`: the manifest's or the signed digest (a lone file: its own)
    signed_by: str | None  # --trust-key: the key's fingerprint
    model: Model
    data: bytes = field(repr=False)
    entry: ArtifactEntry | None = None  # the manifest's entry (None: a lone file)


def check_bytes(data: bytes, sha256: str, signed_by: str | None, what: str) -> None:
    """Raise unless `data` hashes to `sha256` (SignatureError when that digest is a signed one)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest == sha256:
        return
    if signed_by is not None:
        raise SignatureError(
            f"{what}: the model bytes hash to {digest[:12]}, not the digest "
            f"{sha256[:12]} signed by key {signed_by[:16]}: changed after signing; "
            "re-run python -m export.all and sign again"
        )
    raise IntegrityError(
        f"{what}: sha256 {digest[:12]} != manifest {sha256[:12]}: changed or damaged; {fix('onnx')}"
    )


def session(data: bytes, sha256: str, path: str, threads: int, selftest: bool = True) -> Model:
    """An onnxruntime session built from `data` (verified by the caller), self-tested when it can be.

    The loader's self-test covers one float32 input [batch, n]; a model with another signature
    has no stored self-test yet (the any-model issue), which is logged, not ignored silently.
    """
    model = Model(Path(path), None, LoadOptions(verify_sha256=False, selftest=False, threads=threads), data)
    model.verified, model.sha256 = True, sha256  # checked against `sha256` by our caller
    if selftest and model.n_features is not None:
        model.selftest()
    elif selftest:
        logger.warning(
            "%s: no self-test for a model with inputs %s; sha256 verified only",
            path,
            [i["name"] for i in model.signature["inputs"]],
        )
    return model


def read_verified(
    path: str | Path, sha256: str | None, signed_by: str | None, threads: int, selftest: bool = True
) -> VerifiedModel:
    """Read `path` once, check the bytes against `sha256` (None: a lone file, nothing to check
    against) and build the session from them."""
    real = Path(os.path.realpath(path))  # a lone file may be a symlink; the last step is never followed
    data = read_regular(real, MAX_MODEL_BYTES, fix("onnx"))
    if sha256 is not None:
        check_bytes(data, sha256, signed_by, str(path))
    digest = sha256 or hashlib.sha256(data).hexdigest()
    model = session(data, digest, str(path), threads, selftest)
    model.verified = sha256 is not None
    return VerifiedModel(str(path), digest, signed_by, model, data)


def open_job_model(
    name: str,
    artifacts: str | Path | None,
    trust_key: str | Path | None,
    threads: int,
    min_generation: int | None = None,
) -> VerifiedModel:
    """Resolve `--model`, verify it (the signature first, with a trust key; then the manifest's
    generation against `min_generation`) and open it from its bytes."""
    path, entry, root = resolve(name, artifacts)
    sha256, signed_by, manifest = (entry.sha256 if entry is not None else None), None, None
    where = root.dir if root is not None else Path(path).parent
    if trust_key is not None:  # before onnxruntime reads a byte of the model
        from oneneuron.signing import verify_file

        verified = verify_file(path, where, trust_key)
        signed_by, manifest = verified.key_fingerprint, verified.manifest  # the floor: signed bytes
        stored = entry.path if entry is not None else path.name
        sha256 = next(
            (verified.digest(e.path) for e in verified.manifest.all_entries() if stored in (e.path, e.alias)),
            None,
        )
        if sha256 is None:  # verify_file found it: only a manifest replaced in between gets here
            raise SignatureError(f"{path}: not named by the signed manifest; {fix('sign', path.parent)}")
    elif min_generation is not None and root is not None:
        manifest = Manifest.load(root.dir)
    check_floor(where, min_generation, manifest)
    return replace(read_verified(path, sha256, signed_by, threads), entry=entry)
