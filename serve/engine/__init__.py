"""The protocol-neutral inference engine every protocol adapter calls.

- `registry`: the models and their versions, loading, reload, unload (model lifecycle).
- `tensors`: validation of what a protocol decoded into the arrays a model runs on.
- `dtypes`: the one dtype table (numpy, V2, TF Serving, gRPC typed contents).
- `core`: `Engine.infer`, the one sequence lookup -> decode -> validate -> run -> check -> stats.
- `errors`: domain errors, each carrying its HTTP status and gRPC code.
- `stats`, `metrics`: Triton's statistics per version, Prometheus metrics.
"""

from serve.engine.core import Engine, Output, Request, Result
from serve.engine.tensors import Input

__all__ = ["Engine", "Input", "Output", "Request", "Result"]
