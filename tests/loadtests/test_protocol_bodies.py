"""The load tools' side of the protocols, in process: paths, bodies, answers judged in
each protocol's shape, and a target without perfserve's metrics read as unknown."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from loadtests.bodies import encode_bodies
from loadtests.checks import judge_answer
from loadtests.engines.native_generator import encode_requests
from loadtests.sweep.server_metrics import exports_perfserve_metrics, scrape, server_split
from loadtests.targets import TargetFacts, describe_target
from perfserve_common.protocols import predict_path, request_body
from perfserve_common.usage import UsageError

ROWS = np.arange(6, dtype=np.float64).reshape(2, 3)


@pytest.mark.parametrize(
    ("protocol", "model", "path"),
    [
        ("perfserve", None, "/predict"),
        ("perfserve", "onnx_int8", "/models/onnx_int8/predict"),
        ("v1", None, "/v1/models/perfserve:predict"),
        ("v1", "sklearn", "/v1/models/sklearn:predict"),
        ("v2", None, "/v2/models/perfserve/infer"),
        ("v2", "sklearn", "/v2/models/sklearn/infer"),
    ],
)
def test_each_protocol_has_its_path(protocol: str, model: str | None, path: str) -> None:
    assert predict_path(protocol, model) == path  # type: ignore[arg-type]


def test_bodies_in_each_protocol() -> None:
    assert orjson.loads(request_body("v1", ROWS)) == {"instances": ROWS.tolist()}
    [tensor] = orjson.loads(request_body("v2", ROWS))["inputs"]
    assert tensor["shape"] == [2, 3] and tensor["datatype"] == "FP32"
    assert tensor["data"] == ROWS.ravel().tolist()
    bodies = encode_bodies(ROWS, 2, count=3, protocol="v2")
    assert all(orjson.loads(body)["inputs"][0]["shape"] == [2, 3] for body in bodies)


def test_the_native_generator_posts_to_the_protocols_path() -> None:
    [one] = encode_requests([b"{}"], "onnx_int8", "h:1", "v2")
    assert one.startswith(b"POST /v2/models/onnx_int8/infer HTTP/1.1\r\n")
    split = encode_requests([b"{}"], "split", "h:1", "v1")
    assert split[0].startswith(b"POST /v1/models/perfserve:predict HTTP/1.1\r\n")
    assert b"x-user-id: user-" in split[0]


def test_answers_are_judged_in_each_protocols_shape() -> None:
    v2 = {"outputs": [{"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [0, 1]}]}
    assert judge_answer(200, orjson.dumps(v2), 2, False).outcome == "ok"
    assert judge_answer(200, orjson.dumps(v2), 3, False).outcome == "error"
    assert judge_answer(200, orjson.dumps({"predictions": [1, 0]}), 2, False).outcome == "ok"
    assert judge_answer(200, orjson.dumps({"outputs": []}), 1, False).outcome == "error"


def test_a_target_without_perfserves_metrics_has_unknown_server_figures() -> None:
    assert scrape("http://127.0.0.1:9") == {}  # nothing listens there
    assert not exports_perfserve_metrics({})
    split = server_split({}, {}, 1.0, ["sklearn"], [2.0, 4.0])
    assert math.isnan(split.utilization) and math.isnan(split.p99_ms_at_most)
    assert math.isnan(split.requests) and split.sampled_in_flight == 3.0


def test_another_server_is_taken_at_its_word_for_its_models() -> None:
    facts = describe_target("http://127.0.0.1:9", "v2", ["sklearn"])
    assert facts == TargetFacts("http://127.0.0.1:9", ["sklearn"])
    assert facts.split_weights == {} and facts.model_versions == {}
    with pytest.raises(UsageError, match="cannot read"):
        describe_target("http://127.0.0.1:9", "perfserve", ["sklearn"])
    with pytest.raises(UsageError, match="'split' is perfserve's traffic split"):
        describe_target("http://127.0.0.1:9", "v2", ["split"])
