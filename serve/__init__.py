"""Inference side: the embeddable ONNX loader, the check and the server.

`from serve import load` imports only numpy and onnxruntime; the server (`python -m serve`)
and the check (`python -m serve.check`) are separate modules.
"""

from serve.loader import Model, PredictInputError, load

__all__ = ["Model", "PredictInputError", "load"]
