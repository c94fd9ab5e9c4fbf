"""The embeddable ONNX loader: `from serve import load`.

    model = load("keras_linear", artifacts="artifacts")   # by name: looked up in manifest.json only
    model = load("artifacts/keras_linear.onnx")            # or by path (a .onnx name or a '/' in it)
    model = load("keras_linear.onnx", artifacts="artifacts")  # a bare file name: inside artifacts/
    model.predict([10.0])                                   # -> array([[18.98...]], dtype=float32)

Imports only numpy, onnxruntime and the standard library (tests/test_loader.py checks
`sys.modules`), so an app embedding a model never pays for TensorFlow or torch.
On load it reads the file once, verifies those bytes' sha256 against the manifest (and the
signature, with a trust key), hands the same bytes to onnxruntime (the file is never opened again
by path: a file swapped after the check is not what runs; issue 19), reads the ONNX metadata and
runs the embedded self-test; each check can be turned off explicitly. With `min_generation` it
refuses a manifest older than that floor (docs/reliability.md "Rollback").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from oneneuron.errors import InputError, MissingArtifactError
from oneneuron.fsio import Root, read_regular
from oneneuron.manifest import MAX_ARTIFACT_BYTES, check_sha256, require_generation
from oneneuron.schema import MANIFEST, ArtifactEntry, Manifest
from serve.inputs import PredictInputError
from serve.model import EXPORT_FIX, LoadOptions, Model

__all__ = [
    "EXPORT_FIX",
    "LoadOptions",
    "Model",
    "PredictInputError",
    "check_floor",
    "load",
    "load_entry",
    "open_model",
    "resolve",
]


def is_path(model: str | Path) -> bool:
    """The resolution rule: a `Path`, a name ending in `.onnx` or one containing a path separator is a
    file path; anything else is a model name, looked up in the manifest only. A file path without a
    directory component, given with artifacts=DIR, is a file in DIR (`resolve`)."""
    return (
        isinstance(model, Path)
        or str(model).endswith(".onnx")
        or "/" in str(model)
        or (os.sep != "/" and os.sep in str(model))
    )


def resolve(
    model: str | Path, artifacts: str | Path | None
) -> tuple[Path, ArtifactEntry | None, Root | None]:
    """A model's file, its manifest entry and directory (entry None: a lone file no manifest lists)."""
    return _resolve(model, artifacts)[:3]


def _resolve(
    model: str | Path, artifacts: str | Path | None
) -> tuple[Path, ArtifactEntry | None, Root | None, Manifest | None]:
    """`resolve`, and the manifest the entry was found in (None for a lone file)."""
    if is_path(model):
        candidate = Path(model)
        if artifacts is not None and str(model) == candidate.name:
            # a bare file name with artifacts=DIR names DIR's file, whatever the working directory holds
            candidate = Path(artifacts) / candidate.name
        if not candidate.is_file():
            raise MissingArtifactError(
                f"{candidate}: no such file; {EXPORT_FIX}, or pass a model name and artifacts=DIR"
            )
        root = Root(artifacts if artifacts is not None else candidate.parent)
        if not (root.dir / MANIFEST).exists():
            return candidate, None, None, None
        manifest = Manifest.load(root.dir)
        for entry in manifest.all_entries():  # a previous version's stored file is verified too
            # the stored version itself, or its stable alias (keras_linear.onnx), in that directory
            if (
                entry.format == "onnx"
                and candidate.parent.resolve() == root.real
                and candidate.name in (entry.path, entry.alias)
            ):
                # the stored version is what the manifest's sha256 describes: load that, not the alias,
                # which an export in progress may not have repointed yet
                return root.existing(entry.path), entry, root, manifest
        return candidate, None, None, None
    root = Root(artifacts if artifacts is not None else "artifacts")
    manifest = Manifest.load(root.dir)
    entry = manifest.find(str(model), "onnx")
    if entry is None:
        known = ", ".join(sorted(e.model for e in manifest.entries("onnx"))) or "none"
        raise InputError(
            f"model {str(model)[:80]!r} is not an ONNX model in {root.dir / MANIFEST}; known: {known}"
        )
    if entry.format != "onnx":
        raise InputError(
            f"{entry.name} is a {entry.format} artifact; the loader runs ONNX models only "
            "(code-bearing formats are never loaded here)"
        )
    return root.existing(entry.path), entry, root, manifest


def _verify_signature(
    path: Path, data: bytes, artifacts: Path, trust_key: str | Path, entry: ArtifactEntry | None
) -> tuple[str, ArtifactEntry | None, Manifest]:
    """The signature check of `data`, the bytes read from `path` (imported only when a key is given:
    the cold start without one is unchanged). Returns the key's fingerprint, `entry` as the signed
    manifest records it (the manifest read before may have been replaced since; what was verified
    is what is used) and that signed manifest."""
    from oneneuron.signing import verify_file

    verified = verify_file(path, artifacts, trust_key, data)
    if entry is not None:
        entry = next((e for e in verified.manifest.all_entries() if e.path == entry.path), entry)
    return verified.key_fingerprint, entry, verified.manifest


def load(
    model: str | Path,
    artifacts: str | Path | None = None,
    *,
    verify_sha256: bool = True,
    selftest: bool = True,
    threads: int = 1,
    trust_key: str | Path | None = None,
    min_generation: int | None = None,
) -> Model:
    """Load an ONNX model by manifest name or by path, verify it and return a `Model`.

    Args:
        model: a model name from the manifest ("keras_linear"), or a path to a `.onnx` file
            (see `is_path` for the rule). A file no manifest lists runs its embedded self-test
            and `Model.verified` is False.
        artifacts: the artifacts directory holding manifest.json (default: the file's own
            directory for a path, `artifacts/` for a name). A bare file name ("keras_linear.onnx")
            is looked up in it, not in the working directory.
        verify_sha256, selftest: turn the integrity checks off explicitly (both on by default).
        threads: onnxruntime intra-op threads.
        trust_key: a PEM public key (python -m export.keys); the directory's `model.sig` must be
            its signature over the manifest and every stored version, and the model file one of
            them, before onnxruntime reads a byte (oneneuron/signing.py; raises SignatureError).
        min_generation: refuse (RollbackError, exit 1) a manifest whose `generation` is lower:
            an older manifest put back in place (with `trust_key`, the signed manifest's generation).
    """
    options = LoadOptions(
        verify_sha256=verify_sha256,
        selftest=selftest,
        threads=threads,
        trust_key=trust_key,
        min_generation=min_generation,
    )
    path, entry, root, manifest = _resolve(model, artifacts)
    return open_model(path, entry, root, options, manifest)


def open_model(
    path: Path,
    entry: ArtifactEntry | None,
    root: Root | None,
    options: LoadOptions,
    manifest: Manifest | None = None,
    data: bytes | None = None,
) -> Model:
    """Read `path` once (or take `data`, the bytes a caller already read from it), verify those bytes
    (signature with a trust key; the generation floor; sha256 against `entry`, when given), open the
    same bytes in onnxruntime, then run the self-test. The file is never opened again by path
    (issue 19). `manifest`: the one `entry` comes from."""
    if data is None:
        data = read_regular(path, MAX_ARTIFACT_BYTES, EXPORT_FIX)
    signed_by = None
    artifacts = root.dir if root is not None else path.parent
    if options.trust_key is not None:  # from here on, the signed manifest is the only one used
        signed_by, entry, manifest = _verify_signature(path, data, artifacts, options.trust_key, entry)
    elif manifest is None and root is not None and options.min_generation is not None:
        manifest = Manifest.load(root.dir)
    generation = check_floor(artifacts, options.min_generation, manifest)
    if options.verify_sha256 and entry is not None and root is not None:
        check_sha256(root, entry, path, hashlib.sha256(data).hexdigest())
    loaded = Model(path, entry, options, data)
    loaded.signed_by, loaded.generation = signed_by, generation
    if options.selftest:
        loaded.selftest(root, entry)
    return loaded


def check_floor(artifacts: Path, floor: int | None, manifest: Manifest | None) -> int | None:
    """The generation floor (`min_generation`) for `manifest`, the one a model was found in in
    `artifacts` (with a trust key, the signed one; None: a lone file no manifest lists, generation
    0): RollbackError below `floor`. Returns the manifest's generation (None without one)."""
    generation = manifest.generation if manifest is not None else None
    if floor is not None:
        require_generation(Path(artifacts) / MANIFEST, generation or 0, floor)
    return generation


def load_entry(
    root: Root, entry: ArtifactEntry, options: LoadOptions = LoadOptions(), manifest: Manifest | None = None
) -> Model:
    """Load the ONNX artifact of a parsed manifest `entry` (what the server and batch jobs do);
    `manifest`: the one it comes from (else read again, or the signed one with a trust key)."""
    if entry.format != "onnx":
        raise InputError(f"{entry.name} is a {entry.format} artifact; the loader runs ONNX models only")
    return open_model(root.existing(entry.path), entry, root, options, manifest)
