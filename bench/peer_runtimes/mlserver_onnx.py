"""Seldon MLServer 1.7 custom runtime over onnxruntime (run by bench/peers.py in MLServer's own
virtual environment, never imported by the toolkit); model-settings.json names
`mlserver_onnx.OnnxRuntime` with `parameters.uri` the ONNX file."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    """x float32 [batch, n] -> y, in one onnxruntime session (one intra-op thread, like ours)."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self.session.run(None, {"x": x.reshape(-1, x.shape[-1])})[0]
        return InferenceResponse(
            model_name=self.name, id=payload.id, outputs=[NumpyCodec.encode_output("y", y)]
        )
