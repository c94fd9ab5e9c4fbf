"""Export the Keras model as a TensorFlow SavedModel: `python -m export.savedmodel`.

Serving signature `serving_default`: input `x` float32 [None, n] -> output `y` float32 [None, 1].
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from export._core import Run, entry, export_formats, load_source, main_for, store, trained
from oneneuron.frameworks import quiet_tensorflow
from oneneuron.manifest import KEEP_VERSIONS, Seal
from oneneuron.schema import ArtifactEntry

FORMAT = "savedmodel"
SIGNATURE = "serving_default"

if TYPE_CHECKING:  # imported where used: `--help` never loads TensorFlow (oneneuron/frameworks.py)
    import keras


def write_savedmodel(model: keras.Model, n_features: int, path: Path) -> None:
    """Write `model` as a SavedModel at `path` with one named serving signature."""
    tf = quiet_tensorflow()
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda x: {"y": model(x, training=False)},
        input_signature=[tf.TensorSpec([None, n_features], tf.float32, name="x")],
    )
    archive.write_out(str(path), verbose=False)
    stable_fingerprint(path)


def stable_fingerprint(path: Path) -> None:
    """Give `path/fingerprint.pb` a content-derived `uuid`, so the same SavedModel has the same bytes.

    TensorFlow writes a random uuid into every fingerprint (the only byte that differed between two
    exports of one model, issue 19); the other fields are hashes of the content. The uuid becomes one
    of those hashes: still 128 bits in TensorFlow's decimal form, equal for equal content.
    """
    from tensorflow.core.protobuf import fingerprint_pb2

    file = Path(path) / "fingerprint.pb"
    if not file.is_file():  # an older TensorFlow writes none
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(file.read_bytes())
    fingerprint.ClearField("uuid")
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))
    file.write_bytes(fingerprint.SerializeToString(deterministic=True))


def singleprint(path: Path) -> str:
    """TensorFlow's own content identity of a SavedModel (graph, signatures, object graph and
    checkpoint, with function names regularised): equal for equal models even when the bytes are not
    (a tf.function's name carries a per-process counter)."""
    tf = quiet_tensorflow()
    return tf.saved_model.experimental.read_fingerprint(str(path)).singleprint()


def same_computation(run: Run, new: Path, old: Path) -> bool:
    """Whether two SavedModels of one source are the same model: TensorFlow's fingerprint of each
    (`singleprint`) is equal. export._core.reuse_unchanged asks."""
    return singleprint(new) == singleprint(old)


def write(run: Run) -> list[ArtifactEntry]:
    """Store each Keras model's SavedModel; returns their manifest entries (uncommitted)."""
    tf = quiet_tensorflow()
    import keras

    entries = []
    for model in trained(run, "tensorflow"):
        source = load_source(run, model)
        name = f"{source.name}.savedmodel"
        stored = store(run, name, lambda p, s=source: _write_or_raise_oserror(s.model, s.n_features, p))
        producer = {"tensorflow": tf.__version__, "keras": keras.__version__}
        entries.append(entry(run, source, FORMAT, name, stored, signature_name=SIGNATURE, producer=producer))
    return entries


def _write_or_raise_oserror(model: keras.Model, n_features: int, path: Path) -> None:
    """TensorFlow reports a full disk or a read-only directory as its own errors: make them OSErrors,
    which every CLI reports as one line (nothing is half-written: `store` removes its temporary)."""
    tf = quiet_tensorflow()
    try:
        write_savedmodel(model, n_features, path)
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError, tf.errors.UnknownError) as exc:
        text = str(getattr(exc, "message", exc)).lower()
        if "space" in text or isinstance(exc, tf.errors.ResourceExhaustedError):
            code = errno.ENOSPC
        else:
            code = errno.EROFS if "read-only" in text else errno.EACCES
        raise OSError(
            code, f"{os.strerror(code)} while TensorFlow wrote the SavedModel", str(path.parent)
        ) from None


def export(
    artifacts: Path, keep_versions: int = KEEP_VERSIONS, seal: Seal | None = None
) -> list[ArtifactEntry]:
    """Write the SavedModel and record it in the manifest; returns the manifest entries."""
    return export_formats(artifacts, [write], keep_versions, seal=seal)


def main() -> None:
    main_for(FORMAT, export)


if __name__ == "__main__":
    main()
