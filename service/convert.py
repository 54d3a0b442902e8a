"""Turn a fitted scikit-learn pipeline into ONNX fp32 and int8 graphs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
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


def quantize_to_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantization of weights (activations quantized per call).

    Raises ConversionError when the result has no integer operator, e.g. for tree models
    whose ONNX operators the quantizer does not touch.
    """
    operators = ", ".join(sorted(set(operator_types(fp32_path))))
    try:
        with _quiet_root_logger():
            quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    except Exception as error:  # the quantizer has no error type of its own
        int8_path.unlink(missing_ok=True)
        raise ConversionError(
            f"int8 quantization failed ({error}); the graph has no MatMul/Gemm/Conv it "
            f"could quantize (operators: {operators})"
        ) from error
    if not INTEGER_OPERATORS.intersection(operator_types(int8_path)):
        int8_path.unlink()
        raise ConversionError(
            f"int8 quantization found no MatMul/Gemm/Conv to quantize (operators: {operators})"
        )


def operator_types(path: Path) -> list[str]:
    """Operator types of an ONNX graph, in execution order."""
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime's quantizer logs advice on the root logger that means nothing to a user
    # of `perfserve build`.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
