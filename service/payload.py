"""Parse and validate prediction bodies once, straight into a numeric matrix; encode answers.

Every way a body can be wrong maps to one `Reject` with a status and a message that says
what was wrong and what is expected, never a stack trace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

NUMBER_TYPES = frozenset((int, float))
EXPECTED = 'expected {"instances": [[x1, ..., xN], ...]}'


class Reject(Exception):
    """A request refused with an HTTP status; `reason` labels the rejection metric."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def parse_instances(body: bytes, n_features: int, max_rows: int) -> np.ndarray:
    """The rows of a `{"instances": [...]}` body as a (rows, n_features) float64 matrix.

    float64 holds every number orjson parses, so nothing can overflow here; the batcher
    casts a whole batch to the model's float32 at once and screens it there (values beyond
    float32's range become infinite and fail the screen, see service/guards.py): numpy's
    per-call overhead, paid once per batch instead of once per request."""
    if not body:
        raise Reject(400, "invalid_input", f"request body is empty; {EXPECTED}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Reject(400, "invalid_input", _json_error_message(body, error)) from None
    if type(document) is not dict or "instances" not in document:
        raise Reject(422, "invalid_input", f'body has no "instances" field; {EXPECTED}')
    instances = document["instances"]
    if type(instances) is not list:
        raise Reject(422, "invalid_input", f'"instances" must be a list of rows; {EXPECTED}')
    if not instances:
        raise Reject(422, "invalid_input", f'"instances" is empty; send 1 to {max_rows} rows')
    if len(instances) > max_rows:
        raise Reject(
            413, "too_large", f"too many rows: {len(instances)}; at most {max_rows} per request"
        )
    for index, row in enumerate(instances):
        if type(row) is not list:
            raise Reject(422, "invalid_input", f"row {index} is not a list of numbers; {EXPECTED}")
        if len(row) != n_features:
            raise Reject(
                422,
                "invalid_input",
                f"row {index} has {len(row)} features; the model expects {n_features}",
            )
        if not NUMBER_TYPES.issuperset(map(type, row)):
            offender = next(v for v in row if type(v) not in NUMBER_TYPES)
            raise Reject(
                422,
                "invalid_input",
                f"row {index} holds {orjson.dumps(offender).decode()[:40]}; "
                "features must be JSON numbers",
            )
    return np.array(instances, dtype=np.float64)


def _json_error_message(body: bytes, error: orjson.JSONDecodeError) -> str:
    if b"NaN" in body or b"Infinity" in body:
        return "NaN and Infinity are not allowed; features must be finite JSON numbers"
    return f"malformed JSON ({error}); {EXPECTED}"


def encode_prediction(
    variant: str, model_version: str, labels: np.ndarray, probabilities: np.ndarray | None
) -> bytes:
    return orjson.dumps(
        {
            "variant": variant,
            "model_version": model_version,
            "predictions": _jsonable(labels),
            "probabilities": None if probabilities is None else _jsonable(probabilities),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def encode_error(message: str) -> bytes:
    return orjson.dumps({"detail": message})


def _jsonable(array: np.ndarray) -> Any:
    # orjson writes numeric, C-contiguous arrays directly (and float32 without float64
    # noise); strings and anything else go through Python lists.
    if array.dtype.kind in "iufb" and array.flags.c_contiguous:
        return array
    return array.tolist()
