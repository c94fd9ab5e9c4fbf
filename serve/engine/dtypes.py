"""The one dtype table: numpy dtype <-> KServe V2 datatype <-> TF Serving DT_ name <-> the gRPC
`InferTensorContents` field that carries it. Every protocol and the engine read it from here.

BF16 is a wire datatype only (the binary extension and gRPC raw contents): decoded to float32.
"""

from __future__ import annotations

import numpy as np

# numpy name, V2 datatype, TF Serving dtype, gRPC typed contents field (None: raw bytes only)
TABLE = (
    ("bool", "BOOL", "DT_BOOL", "bool_contents"),
    ("int8", "INT8", "DT_INT8", "int_contents"),
    ("int16", "INT16", "DT_INT16", "int_contents"),
    ("int32", "INT32", "DT_INT32", "int_contents"),
    ("int64", "INT64", "DT_INT64", "int64_contents"),
    ("uint8", "UINT8", "DT_UINT8", "uint_contents"),
    ("uint16", "UINT16", "DT_UINT16", "uint_contents"),
    ("uint32", "UINT32", "DT_UINT32", "uint_contents"),
    ("uint64", "UINT64", "DT_UINT64", "uint64_contents"),
    ("float16", "FP16", "DT_HALF", None),
    ("float32", "FP32", "DT_FLOAT", "fp32_contents"),
    ("float64", "FP64", "DT_DOUBLE", "fp64_contents"),
)
V2_TYPES = {numpy: v2 for numpy, v2, _, _ in TABLE}  # numpy dtype name -> V2 datatype
TF_TYPES = {numpy: tf for numpy, _, tf, _ in TABLE}  # numpy dtype name -> TF Serving dtype
TYPED_FIELDS = {v2: field for _, v2, _, field in TABLE if field}  # V2 datatype -> gRPC contents field
# V2 datatype -> little-endian numpy dtype of its values (BF16: its raw 16 bits, see `decode_raw`)
NUMPY_TYPES = {v2: np.dtype(numpy).newbyteorder("<") for numpy, v2, _, _ in TABLE}
WIRE_TYPES = NUMPY_TYPES | {"BF16": np.dtype("<u2")}
_DATATYPES = {np.dtype(numpy): v2 for numpy, v2, _, _ in TABLE}  # native dtype -> V2 datatype


def datatype(dtype: np.dtype | str) -> str:
    """The V2 datatype of a numpy dtype (metadata and responses)."""
    found = _DATATYPES.get(dtype) if isinstance(dtype, np.dtype) else None
    return found or V2_TYPES[np.dtype(dtype).name]
