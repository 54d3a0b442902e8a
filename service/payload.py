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
    document = load_json(body, EXPECTED)
    if type(document) is not dict or "instances" not in document:
        raise Reject(422, "invalid_input", f'body has no "instances" field; {EXPECTED}')
    instances = document["instances"]
    if type(instances) is not list:
        raise Reject(422, "invalid_input", f'"instances" must be a list of rows; {EXPECTED}')
    return rows_matrix(instances, n_features, max_rows, EXPECTED, '"instances"')


def load_json(body: bytes, expected: str) -> Any:
    """The parsed document; 400 for an empty body or what is not JSON (NaN, Infinity)."""
    if not body:
        raise Reject(400, "invalid_input", f"request body is empty; {expected}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Reject(400, "invalid_input", _json_error_message(body, error, expected)) from None


def rows_matrix(
    rows: list[Any], n_features: int, max_rows: int, expected: str, field: str
) -> np.ndarray:
    """A list of rows as a float64 matrix, or the `Reject` naming the first thing wrong:
    the same checks whichever protocol's body the rows came from."""
    if not rows:
        raise Reject(422, "invalid_input", f"{field} is empty; send 1 to {max_rows} rows")
    if len(rows) > max_rows:
        raise Reject(
            413, "too_large", f"too many rows: {len(rows)}; at most {max_rows} per request"
        )
    for index, row in enumerate(rows):
        if type(row) is not list:
            raise Reject(422, "invalid_input", f"row {index} is not a list of numbers; {expected}")
        if len(row) != n_features:
            raise Reject(
                422,
                "invalid_input",
                f"row {index} has {len(row)} features; the model expects {n_features}",
            )
        if not NUMBER_TYPES.issuperset(map(type, row)):
            raise not_a_number(f"row {index}", row)
    return np.array(rows, dtype=np.float64)


def not_a_number(where: str, values: list[Any]) -> Reject:
    """The 422 for a list holding something other than JSON numbers, showing the first."""
    offender = next(v for v in values if type(v) not in NUMBER_TYPES)
    return Reject(
        422,
        "invalid_input",
        f"{where} holds {orjson.dumps(offender).decode()[:40]}; features must be JSON numbers",
    )


def _json_error_message(body: bytes, error: orjson.JSONDecodeError, expected: str) -> str:
    if b"NaN" in body or b"Infinity" in body:
        return "NaN and Infinity are not allowed; features must be finite JSON numbers"
    return f"malformed JSON ({error}); {expected}"


def encode_prediction(
    variant: str, model_version: str, labels: np.ndarray, probabilities: np.ndarray | None
) -> bytes:
    return orjson.dumps(
        {
            "variant": variant,
            "model_version": model_version,
            "predictions": jsonable(labels),
            "probabilities": None if probabilities is None else jsonable(probabilities),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def encode_error(message: str) -> bytes:
    return orjson.dumps({"detail": message})


def jsonable(array: np.ndarray) -> Any:
    """An array as orjson writes it fastest (with `OPT_SERIALIZE_NUMPY`)."""
    # orjson writes numeric, C-contiguous arrays directly (and float32 without float64
    # noise); strings and anything else go through Python lists.
    if array.dtype.kind in "iufb" and array.flags.c_contiguous:
        return array
    return array.tolist()
