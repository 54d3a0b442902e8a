"""Parsing prediction bodies: one table of bad inputs, each with its status and message."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service.payload import Reject, encode_prediction, parse_instances

ROW = [1.5] * 4


def test_rows_become_a_float64_matrix_the_batcher_casts_once_per_batch() -> None:
    rows = parse_instances(orjson.dumps({"instances": [ROW, [1, 2, 3, 4]]}), 4, 10)
    assert rows.dtype == np.float64
    assert rows.shape == (2, 4)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "body is empty"),
        (b'{"instances": [[1,2', 400, "malformed JSON"),
        (b'{"instances": [[NaN, 1, 2, 3]]}', 400, "NaN and Infinity are not allowed"),
        (b'{"instances": [[Infinity, 1, 2, 3]]}', 400, "NaN and Infinity are not allowed"),
        (b"[[1, 2, 3, 4]]", 422, 'no "instances" field'),
        (b'{"rows": [[1, 2, 3, 4]]}', 422, 'no "instances" field'),
        (b'{"instances": "1,2,3,4"}', 422, '"instances" must be a list'),
        (b'{"instances": []}', 422, '"instances" is empty'),
        (b'{"instances": [1.5]}', 422, "row 0 is not a list"),
        (b'{"instances": [[1, 2, 3]]}', 422, "row 0 has 3 features; the model expects 4"),
        (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 422, "row 1 has 2 features"),
        (b'{"instances": [[1, 2, "3", 4]]}', 422, 'row 0 holds "3"; features must be'),
        (b'{"instances": [[1, 2, null, 4]]}', 422, "row 0 holds null"),
        (b'{"instances": [[1, 2, true, 4]]}', 422, "row 0 holds true"),
        (b'{"instances": [[1, 2, [3], 4]]}', 422, "row 0 holds [3]"),
        (b'{"instances": [[1,2,3,4],[1,2,3,4],[1,2,3,4]]}', 413, "too many rows: 3"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body: bytes, status: int, message: str) -> None:
    with pytest.raises(Reject) as refused:
        parse_instances(body, 4, 2)
    assert refused.value.status == status
    assert message in refused.value.message


def test_answers_encode_numpy_directly() -> None:
    encoded = encode_prediction(
        "onnx_int8", "v1", np.array([1, 0]), np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    )
    assert orjson.loads(encoded) == {
        "variant": "onnx_int8",
        "model_version": "v1",
        "predictions": [1, 0],
        "probabilities": [[0.25, 0.75], [1.0, 0.0]],
    }


def test_string_labels_and_regression_values_encode_too() -> None:
    labels = orjson.loads(encode_prediction("v", "1", np.array(["cat", "dog"]), None))
    assert labels["predictions"] == ["cat", "dog"]
    assert labels["probabilities"] is None
