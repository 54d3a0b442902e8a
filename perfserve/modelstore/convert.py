"""Turn a fitted scikit-learn pipeline into ONNX fp32 and int8 graphs.

Two int8 methods: dynamic quantization computes each activation's scale from the batch at
run time, so a row's answer depends on its batch-mates; static quantization (QDQ) fixes
every scale at build time from calibration rows, so each row is computed the same way
whatever it is batched with. Every ONNX graph is stored already optimized by onnxruntime
(offline, at the portable "extended" level), so the server loads the fused graph.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

# Operators that compute in integers; a graph with none of them was not really quantized.
INTEGER_OPERATORS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
    }
)

ONNX_INPUT_NAME = "input"
ONNX_OPSET = 17

# Static quantization covers the dense layers only: quantizing the output probabilities
# too would round them to steps of 1/255.
STATIC_OPERATORS = ["MatMul", "Gemm", "Add", "Relu"]

# ai.onnx.ml operators whose output is always a float tensor. ONNX shape inference has no
# rule for them, and the quantizer leaves any tensor of unknown type in fp32, which would
# keep every layer after a StandardScaler out of static quantization.
FLOAT_OUTPUT_ML_OPERATORS = frozenset({"Scaler", "Normalizer"})


class ConversionError(Exception):
    """The pipeline cannot be turned into the requested variant; the message says why."""


def convert_to_onnx(pipeline: Any, n_features: int, path: Path) -> None:
    """Write the pipeline as an fp32 ONNX graph taking a float32 matrix of `n_features`.

    Classifiers return plain probability tensors, not ONNX's list-of-maps (ZipMap), which
    would cost a dictionary per row to serve and to read.
    """
    final_step = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    options = {id(final_step): {"zipmap": False}} if hasattr(final_step, "predict_proba") else None
    try:
        graph = to_onnx(
            pipeline,
            initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, n_features]))],
            options=options,
            target_opset={"": ONNX_OPSET, "ai.onnx.ml": 3},
        )
    except Exception as error:  # skl2onnx raises many types; all mean "cannot convert"
        raise ConversionError(
            f"cannot convert {type(pipeline).__name__} to ONNX with skl2onnx: {error}"
        ) from error
    path.write_bytes(graph.SerializeToString())


def quantize_dynamic_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8: weights quantized now, activations per call from the batch's range.

    Raises ConversionError when the result has no integer operator, e.g. for tree models
    whose ONNX operators the quantizer does not touch.
    """
    with _quantizer_errors(fp32_path, int8_path):
        quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    optimize_offline(int8_path)
    _require_integer_operators(fp32_path, int8_path)


def quantize_static_int8(
    fp32_path: Path, int8_path: Path, calibration_rows: np.ndarray, per_channel: bool
) -> None:
    """Static int8 (QDQ): weights per tensor or per output channel, and every activation
    scale fixed from `calibration_rows` (min/max), unsigned activations with signed
    weights, the combination onnxruntime's CPU kernels run fastest."""
    with tempfile.TemporaryDirectory() as folder:
        typed = Path(folder) / "typed.onnx"
        onnx.save(_with_ml_output_types(onnx.load(str(fp32_path))), str(typed))
        with _quantizer_errors(fp32_path, int8_path):
            quantize_static(
                typed,
                int8_path,
                _Rows(calibration_rows),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=STATIC_OPERATORS,
            )
    optimize_offline(int8_path)
    _require_integer_operators(fp32_path, int8_path)


def optimize_offline(path: Path) -> None:
    """Rewrite the graph as onnxruntime optimizes it (constant folding, QDQ pairs fused into
    integer operators, MatMul+Add fusions), so serving loads the fused graph directly.

    The "extended" level, not "all": the latter adds layout changes specific to this CPU,
    and the store may be built on another machine than the one that serves it (the image
    build); the server still applies those at load time.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as folder:
        optimized = Path(folder) / "optimized.onnx"
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized.replace(path)


def operator_types(path: Path) -> list[str]:
    """Operator types of an ONNX graph, in execution order."""
    return [node.op_type for node in onnx.load(str(path)).graph.node]


class _Rows(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    """Calibration input for the quantizer: the rows, in one feed."""

    def __init__(self, rows: np.ndarray) -> None:
        self.feeds = iter([{ONNX_INPUT_NAME: np.ascontiguousarray(rows, dtype=np.float32)}])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _with_ml_output_types(model: onnx.ModelProto) -> onnx.ModelProto:
    known = {info.name for info in model.graph.value_info}
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in FLOAT_OUTPUT_ML_OPERATORS:
            for output in node.output:
                if output not in known:
                    info = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
                    model.graph.value_info.append(info)
    return onnx.shape_inference.infer_shapes(model)


@contextmanager
def _quantizer_errors(fp32_path: Path, int8_path: Path) -> Iterator[None]:
    # onnxruntime's quantizer logs advice on the root logger that means nothing to a user
    # of `perfserve build`, and it has no error type of its own.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    except Exception as error:
        int8_path.unlink(missing_ok=True)
        raise ConversionError(
            f"int8 quantization failed ({error}); the graph has no MatMul/Gemm/Conv it "
            f"could quantize (operators: {_operator_list(fp32_path)})"
        ) from error
    finally:
        root.setLevel(level)


def _require_integer_operators(fp32_path: Path, int8_path: Path) -> None:
    if not INTEGER_OPERATORS.intersection(operator_types(int8_path)):
        int8_path.unlink()
        raise ConversionError(
            "int8 quantization found no MatMul/Gemm/Conv to quantize "
            f"(operators: {_operator_list(fp32_path)})"
        )


def _operator_list(path: Path) -> str:
    return ", ".join(sorted(set(operator_types(path))))
