"""KServe 0.21 ModelServer with a small custom onnxruntime model (run by bench/peers.py in KServe's
own virtual environment, never imported by the toolkit):
`python kserve_onnx.py --model_name keras_linear --model_path F.onnx --http_port P --grpc_port G`."""

import argparse
import uuid

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class OnnxModel(Model):
    """The request's first tensor (float32 [batch, ...]) as the model's input -> every output, in one
    onnxruntime session (one intra-op thread, like ours)."""

    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name, self.row_shape = first.name, first.shape[1:]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        ys = self.session.run(None, {self.input_name: x.reshape(-1, *self.row_shape)})
        binary = payload.use_binary_outputs
        outs = []
        for name, y in zip(self.output_names, ys, strict=True):
            outs.append(InferOutput(name=name, shape=list(y.shape), datatype="FP32"))
            outs[-1].set_data_from_numpy(y, binary_data=binary)
        return InferResponse(
            model_name=self.name,
            infer_outputs=outs,
            response_id=payload.id or str(uuid.uuid4()),  # the response model requires one
            from_grpc=payload.from_grpc,
            use_binary_outputs=binary,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([OnnxModel(args.model_name, args.model_path)])
