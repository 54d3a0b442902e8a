"""The rules a scenario judges answers by, and the CI gate's thresholds."""

from __future__ import annotations

import orjson

from loadtests.bodies import bad_bodies
from loadtests.checks import judge_answer
from loadtests.scenarios.gate import Limits, gate_failures

ANSWER = orjson.dumps({"variant": "onnx_int8", "predictions": [1, 0], "probabilities": None})


def test_a_bad_request_answered_4xx_is_a_success_and_a_500_never_is() -> None:
    assert judge_answer(422, b'{"detail": "x"}', 1, intended_bad=True).failure is None
    assert judge_answer(500, b"", 1, intended_bad=True).failure is not None
    assert judge_answer(200, ANSWER, 2, intended_bad=True).failure is not None
    assert judge_answer(500, b"", 1, intended_bad=False).outcome == "error"


def test_good_requests_need_one_prediction_per_row() -> None:
    assert judge_answer(200, ANSWER, 2, intended_bad=False).outcome == "ok"
    assert judge_answer(200, ANSWER, 3, intended_bad=False).outcome == "error"
    assert judge_answer(503, b"", 1, intended_bad=False).outcome == "shed"
    assert judge_answer(0, None, 1, intended_bad=False).outcome == "error"


def test_bad_bodies_cover_the_kinds_of_mistake() -> None:
    assert {"wrong_feature_count", "malformed_json", "empty"} <= set(bad_bodies(30))


def test_gate() -> None:
    limits = Limits(max_fail_ratio=0.01, max_p99_ms=50.0)
    assert gate_failures(1000, 0.0, 5.0, 20.0, limits) == []
    assert gate_failures(1000, 0.02, 5.0, 20.0, limits) == ["fail ratio 2.00% > 1.00%"]
    assert gate_failures(1000, 0.0, 5.0, 60.0, limits) == ["p99 60.00 ms > 50 ms"]
    assert gate_failures(0, 0.0, float("nan"), float("nan"), limits)[0] == "no requests were made"
