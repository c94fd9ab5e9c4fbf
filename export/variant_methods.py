"""The ways export/optimize.py makes a variant of an fp32 ONNX model, each `bytes -> bytes` in memory
(temporary files outside the artifacts directory), with onnxruntime's own tools:

- `int8-dynamic`: `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantized
  per call: a row's outputs depend on the other rows of the same call);
- `int8-static`: `quantize_static` (QDQ, uint8 activations and int8 per-channel weights, the
  U8S8 onnxruntime recommends on x86) calibrated with MinMax on `--calibration` rows, after
  onnxruntime's `quant_pre_process` (shape inference and basic graph optimisation, which folds
  BatchNormalization into the Conv before it: a QDQ pair between them would keep both in float
  and cost a dequantize per layer; measured on a ResNet-18-shaped CNN at 112 px, the batch-8
  latency went from 0.65x to 0.26x the fp32 parent's). When pre-processing fails on a graph the
  raw model is quantized and the settings say why;
- `fp16`: `onnxruntime.transformers.float16.convert_float_to_float16`, float32 inputs and outputs
  kept (`keep_io_types`), so the signature and every consumer stay as they are;
- `graph-opt`: onnxruntime's offline graph optimisation (`ORT_ENABLE_EXTENDED` written out with
  `optimized_model_filepath`): the file may hold onnxruntime-specific fused ops and is only
  guaranteed for the onnxruntime version that wrote it, which the variant records.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# --int8 / --fp16 / --graph-opt -> method; each variant's model name is <parent>.<KIND[method]>
KIND = {"int8-dynamic": "int8", "int8-static": "int8", "fp16": "fp16", "graph-opt": "opt"}
CALIBRATION_BATCH = 32


def make(method: str, parent: bytes, calibration: Mapping[str, np.ndarray] | None) -> tuple[bytes, dict]:
    """The variant's ONNX bytes (metadata not yet set) and the settings to record."""
    import onnxruntime as ort

    maker: Callable[..., dict] = {
        "int8-dynamic": _int8_dynamic,
        "int8-static": _int8_static,
        "fp16": _fp16,
        "graph-opt": _graph_opt,
    }[method]
    with tempfile.TemporaryDirectory(prefix="oneneuron-optimize-") as tmp:
        src, dst = Path(tmp) / "parent.onnx", Path(tmp) / "variant.onnx"
        src.write_bytes(parent)
        # onnxruntime.quantization logs "consider pre-processing" on the root logger for every model
        logging.disable(logging.WARNING)
        try:
            settings = maker(src, dst, calibration)
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes(), {"onnxruntime": ort.__version__, **settings}


def _int8_dynamic(src: Path, dst: Path, _calibration) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    return {"weight_type": "QInt8", "activations": "uint8, per call"}


class _Reader:
    """onnxruntime's CalibrationDataReader over named arrays, CALIBRATION_BATCH rows at a time."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        rows = len(next(iter(arrays.values())))
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [
                {k: v[i : i + CALIBRATION_BATCH] for k, v in arrays.items()}
                for i in range(0, rows, CALIBRATION_BATCH)
            ]
        )

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # part of CalibrationDataReader's interface; MinMax reads once
        raise NotImplementedError


def _int8_static(src: Path, dst: Path, calibration) -> dict:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    assert calibration is not None, "int8-static needs calibration rows (export/optimize.py checks)"
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calibration)
    source, preprocess = _preprocessed(src)
    quantize_static(
        source,
        dst,
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )  # MinMax holds every intermediate output of every calibration row in memory (~27 MB a row for
    # ResNet-18 at 224 px); its CalibMaxIntermediateOutputs drops the batches it should merge
    # (onnxruntime 1.32 calibrate.py collect_data clears them uncomputed), so --calibration-rows bounds it
    rows = len(next(iter(calibration.values())))
    return {
        "format": "QDQ",
        "types": "uint8 activations / int8 weights",
        "per_channel": "true",
        "calibration_rows": str(rows),
        "preprocess": preprocess,
    }


def _preprocessed(src: Path) -> tuple[Path, str]:
    """`src` after onnxruntime's quant_pre_process (beside it), or `src` itself and why not."""
    from onnxruntime.quantization import quant_pre_process

    dst = src.with_name("preprocessed.onnx")
    try:
        quant_pre_process(str(src), str(dst))
    except Exception as exc:  # symbolic shape inference refuses some graphs: quantize the raw one
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        logger.info("quant_pre_process failed (%s); quantizing the model as it is", why)
        return src, f"skipped ({why})"
    return dst, "quant_pre_process"


def _fp16(src: Path, dst: Path, _calibration) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(src), keep_io_types=True)
    onnx.save(proto, dst)
    return {"keep_io_types": "true"}


def _graph_opt(src: Path, dst: Path, _calibration) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return {"level": "ORT_ENABLE_EXTENDED", "only_for": f"onnxruntime {ort.__version__}"}


def session(data: bytes):
    """An onnxruntime session on `data`, 1 thread (what the measurements and the proof use)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
