"""The one dtype table: numpy dtype <-> KServe V2 datatype <-> TF Serving DT_ name <-> the gRPC
`InferTensorContents` field that carries it. Every protocol and the engine read it from here.

BF16 is a wire datatype only (the binary extension and gRPC raw contents): decoded to float32.
"""

from __future__ import annotations

import numpy as np

from oneneuron.dtypes import DTYPES as CONTRACT_DTYPES

# gRPC `InferTensorContents` field per V2 datatype (None: raw bytes only); the rest of each row is
# the shared contract's (oneneuron/dtypes.py, which Node and the page read too)
_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
# numpy name, V2 datatype, TF Serving dtype, gRPC typed contents field, for every served dtype
TABLE = tuple((d.name, d.v2, d.tf, _FIELDS.get(d.v2)) for d in CONTRACT_DTYPES)
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
