"""Export stage: write SavedModel, TorchScript and ONNX artifacts from the trained models.

One module per format, each with `export(artifacts) -> list[entry]` and a CLI:
`python -m export.savedmodel`, `python -m export.torchscript`, `python -m export.onnx`,
or all of them with `python -m export.all`.
"""

# Format name -> module. tests/test_export_parity.py fails when a format here has no parity test.
FORMATS = {
    "savedmodel": "export.savedmodel",
    "torchscript": "export.torchscript",
    "onnx": "export.onnx",
}
# Format name -> how help texts and messages spell it.
FORMAT_TITLES = {"savedmodel": "SavedModel", "torchscript": "TorchScript", "onnx": "ONNX"}
