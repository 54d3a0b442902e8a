"""The Open Inference Protocol (V2 REST) inference request and response, as KServe and
Triton define them (the metadata and health routes are in service/protocols/api.py).

A request carries one tensor, FP32 or FP64, of shape `[rows, features]`, its data flat
in row-major order or nested by row, or as raw little-endian bytes after the JSON
(the binary tensor extension that Triton's clients use by default:
`Inference-Header-Content-Length` says where the JSON ends, the tensor's
`binary_data_size` how many bytes are its data). The tensor's name is not checked: servers differ
in what they call their input, and a client written for one should work here. What
`/predict` refuses in its rows (too many, too wide, not numbers, NaN, beyond float32) is
refused here with the same status, by the same checks; errors are `{"error": "..."}`.
The answer carries the outputs the model's metadata names (`predictions`, and
`probabilities` for a classifier), or those the request asks for, its `id` echoed, and
the variant that answered under `parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.batching import BatchResult
from service.payload import (
    NUMBER_TYPES,
    Reject,
    jsonable,
    load_json,
    not_a_number,
    rows_matrix,
)
from service.protocols.codec import Headers

MODELS, INFER = "/v2/models/", "/infer"
OCTET_STREAM = b"application/octet-stream"
JSON_LENGTH_HEADER = b"inference-header-content-length"
LITTLE_ENDIAN: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
EXPECTED = (
    'expected {"inputs": [{"name": "input-0", "shape": [rows, features], '
    '"datatype": "FP32", "data": [x1, ..., xN]}]}'
)
DATATYPES = ("FP32", "FP64")
PREDICTIONS, PROBABILITIES = "predictions", "probabilities"
OUTPUTS = (PREDICTIONS, PROBABILITIES)
TENSOR_TYPES = {
    np.dtype(name): datatype
    for name, datatype in (
        ("bool", "BOOL"),
        ("int8", "INT8"),
        ("int16", "INT16"),
        ("int32", "INT32"),
        ("int64", "INT64"),
        ("uint8", "UINT8"),
        ("uint16", "UINT16"),
        ("uint32", "UINT32"),
        ("uint64", "UINT64"),
        ("float16", "FP16"),
        ("float32", "FP32"),
        ("float64", "FP64"),
    )
}
"""V2 tensor datatypes by numpy dtype; anything else (strings) is BYTES."""
TYPES_BY_ID = {id(dtype): datatype for dtype, datatype in TENSOR_TYPES.items()}
"""The numeric datatypes by the identity of a dtype object, learned as they are met."""
LEARNED_DTYPES: list[np.dtype[Any]] = []
"""The dtype objects `TYPES_BY_ID` learned, kept alive so that no other object can take
their id; at most `MAX_LEARNED_DTYPES`."""
MAX_LEARNED_DTYPES = 32


@dataclass(frozen=True, slots=True)
class V2Request:
    """What the answer repeats of the request."""

    id: str | None
    outputs: tuple[str, ...]


ALL_OUTPUTS = V2Request(None, OUTPUTS)


class V2Codec:
    """Reads and writes V2 inference bodies."""

    media_types = frozenset((OCTET_STREAM,))

    def parse(
        self, body: bytes, n_features: int, max_rows: int, headers: Headers
    ) -> tuple[np.ndarray, Any]:
        json_length = _json_length(headers, len(body))
        document = load_json(body if json_length is None else body[:json_length], EXPECTED)
        if type(document) is not dict or type(inputs := document.get("inputs")) is not list:
            raise _invalid(f'body has no "inputs" list; {EXPECTED}')
        if len(inputs) != 1 or type(tensor := inputs[0]) is not dict:
            raise _invalid(f'"inputs" must hold exactly one tensor; {EXPECTED}')
        # A body holding only "inputs" (most do) has nothing more to check or echo.
        request = ALL_OUTPUTS if len(document) == 1 else _request(document)
        if type(tensor.get("name")) is not str:
            raise _invalid(f'the input tensor has no "name"; {EXPECTED}')
        if (datatype := tensor.get("datatype")) not in DATATYPES:
            shown = orjson.dumps(datatype).decode()[:40]
            raise _invalid(f"datatype {shown}: this model takes FP32 or FP64")
        rows = _rows(tensor.get("shape"), n_features, max_rows)
        if not _object_or_null(parameters := tensor.get("parameters")):
            raise _invalid('the input\'s "parameters" must be an object')
        if json_length is not None and "data" not in tensor:
            size = (parameters or {}).get("binary_data_size")
            binary = memoryview(body)[json_length:]
            return _binary(binary, size, datatype, rows, n_features), request
        return _matrix(tensor.get("data"), rows, n_features, max_rows), request

    def encode(
        self, model: str, variant: str, version: str, result: BatchResult, request: Any
    ) -> bytes:
        labels, probabilities = result.labels, result.probabilities
        label_type = TYPES_BY_ID.get(id(labels.dtype))
        # The common answer (both outputs, numeric, contiguous labels) is built as one
        # literal: per request, the general loop's calls cost as much again as orjson's
        # writing of the whole answer. `ravel` always gives a contiguous array.
        if (
            request.outputs is OUTPUTS
            and probabilities is not None
            and label_type is not None
            and (probability_type := TYPES_BY_ID.get(id(probabilities.dtype))) is not None
            and labels.flags.c_contiguous
        ):
            outputs = [
                {
                    "name": PREDICTIONS,
                    "datatype": label_type,
                    "shape": labels.shape,
                    "data": labels,
                },
                {
                    "name": PROBABILITIES,
                    "datatype": probability_type,
                    "shape": probabilities.shape,
                    "data": probabilities.ravel(),
                },
            ]
        else:
            outputs = _outputs(request.outputs, labels, probabilities)
        answer: dict[str, Any] = {
            "model_name": model,
            "model_version": version,
            "outputs": outputs,
            "parameters": {"variant": variant},
        }
        if request.id is not None:
            answer["id"] = request.id
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)

    def error(self, message: str) -> bytes:
        return orjson.dumps({"error": message})


CODEC = V2Codec()


def tensor_type(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype. Looked up by identity first: numpy's built-in
    dtypes are singletons, a runtime's own (onnxruntime's int64 labels) is one object
    call after call, and hashing a dtype costs a third of a microsecond. A numeric dtype
    object met for the first time is remembered by identity."""
    if (known := TYPES_BY_ID.get(id(dtype))) is not None:
        return known
    if (datatype := TENSOR_TYPES.get(dtype)) is None:
        return "BYTES"
    if len(LEARNED_DTYPES) < MAX_LEARNED_DTYPES:
        LEARNED_DTYPES.append(dtype)
        TYPES_BY_ID[id(dtype)] = datatype
    return datatype


def _outputs(
    names: tuple[str, ...], labels: np.ndarray, probabilities: np.ndarray | None
) -> list[dict[str, Any]]:
    """The output tensors `names` asks for, of any datatype and layout."""
    outputs = []
    for name in names:
        if name == PREDICTIONS:
            outputs.append(
                {
                    "name": PREDICTIONS,
                    "datatype": tensor_type(labels.dtype),
                    "shape": labels.shape,
                    "data": jsonable(labels),
                }
            )
        elif probabilities is not None:
            outputs.append(
                {
                    "name": PROBABILITIES,
                    "datatype": tensor_type(probabilities.dtype),
                    "shape": probabilities.shape,
                    "data": jsonable(probabilities.ravel()),
                }
            )
    return outputs


def _request(document: dict[str, Any]) -> V2Request:
    """The request's `id` and the outputs it asks for; checks its `parameters`."""
    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise _invalid('"id" must be a string')
    if not _object_or_null(document.get("parameters")):
        raise _invalid('"parameters" must be an object')
    if (wanted := document.get("outputs")) is None:
        return ALL_OUTPUTS if request_id is None else V2Request(request_id, OUTPUTS)
    if type(wanted) is not list or any(
        type(output) is not dict or output.get("name") not in OUTPUTS for output in wanted
    ):
        raise _invalid(f'"outputs" must be a list of {{"name": ...}} with names from {OUTPUTS}')
    return V2Request(request_id, tuple(output["name"] for output in wanted))


def _rows(shape: Any, n_features: int, max_rows: int) -> int:
    """The row count of a `[rows, features]` shape, refused as `/predict` refuses rows."""
    if (
        type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
    ):
        raise _invalid(f'"shape" must be [rows, features]; {EXPECTED}')
    rows: int = shape[0]
    features: int = shape[1]
    if features != n_features:
        raise _invalid(f"shape {shape} has {features} features; the model expects {n_features}")
    if rows < 1:
        raise _invalid(f"shape {shape} has no rows; send 1 to {max_rows} rows")
    if rows > max_rows:
        raise Reject(413, "too_large", f"too many rows: {rows}; at most {max_rows} per request")
    return rows


def _matrix(data: Any, rows: int, n_features: int, max_rows: int) -> np.ndarray:
    """The tensor's data, flat or nested by row, as a (rows, n_features) float64 matrix."""
    if type(data) is not list:
        raise _invalid(f'"data" must be a list of numbers; {EXPECTED}')
    if data and type(data[0]) is list:
        matrix = rows_matrix(data, n_features, max_rows, EXPECTED, '"data"')
        if len(matrix) != rows:
            raise _invalid(f'"data" holds {len(matrix)} rows; the shape says {rows}')
        return matrix
    if len(data) != rows * n_features:
        raise _invalid(
            f'"data" holds {len(data)} values; shape [{rows}, {n_features}] needs '
            f"{rows * n_features}"
        )
    if not NUMBER_TYPES.issuperset(map(type, data)):
        raise not_a_number('"data"', data)
    matrix = np.array(data, dtype=np.float64)
    matrix.shape = (rows, n_features)  # in place: no view to make, unlike reshape
    return matrix


def _json_length(headers: Headers, body_length: int) -> int | None:
    """Where the JSON ends in a body with binary tensors, or None for a JSON body."""
    for name, value in headers:
        if name == JSON_LENGTH_HEADER:
            if not value.isdigit() or int(value) > body_length:
                raise Reject(
                    400,
                    "invalid_input",
                    f"Inference-Header-Content-Length {value[:20]!r} "
                    f"is not a length within the body's {body_length} bytes",
                )
            return int(value)
    return None


def _binary(data: memoryview, size: Any, datatype: str, rows: int, n_features: int) -> np.ndarray:
    """A tensor sent as raw little-endian bytes, as a (rows, n_features) matrix."""
    dtype = LITTLE_ENDIAN[datatype]
    expected = rows * n_features * dtype.itemsize
    if type(size) is not int or size != len(data) or size != expected:
        raise _invalid(
            f"binary data of {len(data)} bytes (binary_data_size {size}); shape "
            f"[{rows}, {n_features}] of {datatype} needs {expected}"
        )
    matrix: np.ndarray = np.frombuffer(data, dtype=dtype).reshape(rows, n_features)
    return matrix


def _object_or_null(value: Any) -> bool:
    return value is None or type(value) is dict


def _invalid(message: str) -> Reject:
    return Reject(422, "invalid_input", message)
