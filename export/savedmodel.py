"""Export the Keras model as a TensorFlow SavedModel: `python -m export.savedmodel`.

Serving signature `serving_default`: input `x` float32 [None, n] -> output `y` float32 [None, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.frameworks import quiet_tensorflow
from export._core import Run, entry, export_format, load_source, main_for, store

FORMAT = "savedmodel"
SIGNATURE = "serving_default"

if TYPE_CHECKING:  # imported where used: `--help` never loads TensorFlow (core/frameworks.py)
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


def _write(run: Run) -> list[dict[str, Any]]:
    tf = quiet_tensorflow()
    import keras

    source = load_source(run, "keras_linear")
    name = f"{source.name}.savedmodel"
    stored = store(run, name, lambda p: write_savedmodel(source.model, source.n_features, p))
    producer = {"tensorflow": tf.__version__, "keras": keras.__version__}
    return [entry(run, source, FORMAT, name, stored, signature_name=SIGNATURE, producer=producer)]


def export(artifacts: Path) -> list[dict[str, Any]]:
    """Write the SavedModel and record it in the manifest; returns the manifest entries."""
    return export_format(artifacts, _write)


def main() -> None:
    main_for(FORMAT, export)


if __name__ == "__main__":
    main()
