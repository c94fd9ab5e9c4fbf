"""What a batch job runs: the model's bytes, read once, verified, and every session built from them.

The job reads the model file once (a regular file opened without following a symlink, bounded:
`oneneuron.fsio.read_regular`), checks the bytes' sha256 against the manifest entry (with
`--trust-key`, against the digest the signature covers), and builds the onnxruntime session from
those bytes, in this process and on every Dask worker (which receives the same bytes and checks
them again). Nothing re-opens the file by path after it was hashed, so a file swapped between
the check and the load is never run (issue 19); no worker writes a copy of it anywhere.

Every model runs its self-test before any row is scored, whatever its signature (the loader's
`Model.selftest`): rows embedded in its metadata, or, for rows too large to embed (an image), the
first rows of its probe file, which the job reads through the artifacts directory and checks
against the model's metadata (serve/selftest.py `probe_values`), then hands to each Dask worker
with the job (`BatchJob.selftest_rows`): workers have no artifacts directory. A model without any
self-test is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from oneneuron.errors import IntegrityError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, read_regular
from oneneuron.schema import ArtifactEntry, Manifest
from oneneuron.selftest import KEY, PROBE_KEY
from oneneuron.signing import SignatureError
from serve.loader import LoadOptions, Model, check_floor, resolve
from serve.selftest import probe_values
from serve.selftest import run as run_general

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
    # the probe rows its self-test ran on (None: rows embedded in its metadata): what workers run
    selftest_rows: tuple | None = field(default=None, repr=False)


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


def session(
    data: bytes, sha256: str, path: str, threads: int, selftest: bool = True, rows: tuple | None = None
) -> Model:
    """An onnxruntime session built from `data` (verified by the caller), self-tested (on `rows`,
    the probe rows `selftest_rows` read, when the self-test is not embedded in the metadata)."""
    model = Model(Path(path), None, LoadOptions(verify_sha256=False, selftest=False, threads=threads), data)
    model.verified, model.sha256 = True, sha256  # checked against `sha256` by our caller
    if selftest:
        run_selftest(model, rows)
    return model


def selftest_rows(model: Model, root: Root | None, entry: ArtifactEntry | None) -> tuple | None:
    """The probe rows `model`'s self-test runs on when its metadata only names its probe file (read
    through `root` as `entry` names it, its sha256 checked against the metadata); None when the
    rows are embedded or there is no probe (`run_selftest` says what is missing)."""
    if KEY in model.metadata or PROBE_KEY not in model.metadata:
        return None
    return probe_values(model, root, entry)


def run_selftest(model: Model, rows: tuple | None = None) -> None:
    """The loader's self-test of `model` (on `rows` when given); IntegrityError when it fails or
    when the model has none, before any row is scored."""
    if rows is not None:
        run_general(model, given=rows)
        return
    if not any(k in model.metadata for k in (KEY, PROBE_KEY, "selftest_x")):
        raise IntegrityError(
            f"{model.path}: no self-test (its ONNX metadata has no 'selftest', 'selftest_probe' or "
            "'selftest_x'), and serve.batch scores only a model that passes its self-test; "
            f"{fix('onnx')}, or bring the file in with python -m export.all --from-onnx FILE --name NAME"
        )
    model.selftest()


def read_verified(
    path: str | Path,
    sha256: str | None,
    signed_by: str | None,
    threads: int,
    where: tuple[Root | None, ArtifactEntry | None] = (None, None),
    *,
    rows: tuple | None = None,
) -> VerifiedModel:
    """Read `path` once, check the bytes against `sha256` (None: a lone file, nothing to check
    against), build the session from them and self-test it (`where`: the artifacts directory and
    the manifest entry its probe file is read through; `rows`: the probe rows already read)."""
    real = Path(os.path.realpath(path))  # a lone file may be a symlink; the last step is never followed
    data = read_regular(real, MAX_MODEL_BYTES, fix("onnx"))
    if sha256 is not None:
        check_bytes(data, sha256, signed_by, str(path))
    digest = sha256 or hashlib.sha256(data).hexdigest()
    model = session(data, digest, str(path), threads, selftest=False)
    rows = rows if rows is not None else selftest_rows(model, *where)
    run_selftest(model, rows)
    model.verified = sha256 is not None
    return VerifiedModel(str(path), digest, signed_by, model, data, selftest_rows=rows)


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
    return replace(read_verified(path, sha256, signed_by, threads, (root, entry)), entry=entry)
