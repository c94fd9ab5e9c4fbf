"""Seldon MLServer 1.7 custom runtime over onnxruntime (run by bench/peers.py in MLServer's own
virtual environment, never imported by the toolkit); model-settings.json names
`mlserver_onnx.OnnxRuntime` with `parameters.uri` the ONNX file."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    """The request's first tensor (float32 [batch, ...]) as the model's input -> every output, in one
    onnxruntime session (one intra-op thread, like ours)."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        first = self.session.get_inputs()[0]
        self.input_name, self.row_shape = first.name, first.shape[1:]
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        ys = self.session.run(None, {self.input_name: x.reshape(-1, *self.row_shape)})
        outputs = [NumpyCodec.encode_output(n, y) for n, y in zip(self.output_names, ys, strict=True)]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)
