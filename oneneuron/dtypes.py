"""The one dtype table of the Python side, built from the shared contract (serve/node/contract.json).

    from oneneuron.dtypes import BY_NAME, BY_ORT
    BY_ORT["tensor(float)"].name  # "float32"
    BY_NAME["int64"].v2           # "INT64"

Each `DType` names one tensor dtype in every vocabulary the toolkit speaks: numpy, ONNX
TensorProto, onnxruntime, KServe V2, Triton and TensorFlow. Standard library only (numpy dtypes
are `np.dtype(d.name)` where numpy is already imported). Node and the page read the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oneneuron.contract import CONTRACT


@dataclass(frozen=True)
class DType:
    """One row of the contract's dtype table."""

    name: str  # numpy's name: float32, int64, bool, ...
    kind: str  # float, int, uint or bool
    bits: int
    onnx: int  # onnx.TensorProto element type (FLOAT = 1, ...)
    ort: str  # onnxruntime's type string: tensor(float)
    v2: str  # KServe V2 / Triton client datatype: FP32
    triton: str  # Triton model_config DataType: TYPE_FP32
    tf: str  # TensorFlow DataType: DT_FLOAT
    manifest: bool  # whether a manifest signature may name it


DTYPES: tuple[DType, ...] = tuple(DType(**row) for row in CONTRACT.dtypes)
BY_NAME: Mapping[str, DType] = {d.name: d for d in DTYPES}
BY_ORT: Mapping[str, DType] = {d.ort: d for d in DTYPES}
BY_ONNX: Mapping[int, DType] = {d.onnx: d for d in DTYPES}
BY_V2: Mapping[str, DType] = {d.v2: d for d in DTYPES}
MANIFEST_DTYPES = frozenset(d.name for d in DTYPES if d.manifest)
