"""What an answer means for a load test: the rules a scenario checks every response by.

A bad request answered with a 4xx is the service doing its job, so it counts as a
success; a 500 is a failure whatever was sent; a 503 is load shed, counted apart from
errors because it is the service protecting itself, not breaking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

SHED_STATUS = 503


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    """ok, shed, error or bad_input (the labels of `perfserve_loadgen_requests_total`)."""
    failure: str | None
    """Why the request failed, or None when it did what was expected."""


def judge_answer(status: int, body: bytes | None, rows: int, intended_bad: bool) -> Verdict:
    """The verdict on one answer to a request of `rows` rows (`intended_bad`: malformed)."""
    if intended_bad:
        if 400 <= status < 500:
            return Verdict("bad_input", None)
        return Verdict("error", f"bad request answered {status}; expected a 4xx")
    if status == SHED_STATUS:
        return Verdict("shed", "503: load shed")
    if status == 0:
        return Verdict("error", "no answer (connection failed or timed out)")
    if status != 200:
        return Verdict("error", f"answered {status}")
    return _judge_prediction(body, rows)


def _judge_prediction(body: bytes | None, rows: int) -> Verdict:
    try:
        document = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return Verdict("error", "200 with a body that is not JSON")
    if not isinstance(document, dict) or _answered_rows(document) != rows:
        return Verdict("error", f"200 without {rows} predictions")
    return Verdict("ok", None)


def _answered_rows(document: dict[str, Any]) -> int | None:
    """How many rows an answer answers: `predictions` (perfserve, KServe V1), or the first
    output tensor's leading dimension (the Open Inference Protocol)."""
    predictions = document.get("predictions")
    if isinstance(predictions, list):
        return len(predictions)
    outputs = document.get("outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        shape = outputs[0].get("shape")
        if isinstance(shape, list) and shape and isinstance(shape[0], int):
            return shape[0]
    return None


def status_label(status: int) -> str:
    """The status as counted per window: the number, or `no_answer` when there was none."""
    return str(status) if status else "no_answer"


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    status: int
    variant: str | None
    """The variant that answered (`X-Variant`), if the answer says."""
    done: float
    """`time.perf_counter()` when the answer had arrived."""
    server_s: float | None = None
    """The server's own time for the request (`Server-Timing` total), if it said."""


def server_timing_total_s(value: bytes) -> float | None:
    """`total;dur=…` (milliseconds) of a `Server-Timing` header value, in seconds."""
    _, found, rest = value.rpartition(b"total;dur=")
    if not found:
        return None
    try:
        return float(rest.partition(b",")[0]) / 1000
    except ValueError:
        return None


def post_checked(
    client: Any,
    path: str,
    body: bytes,
    headers: dict[str, str],
    rows: int,
    intended_bad: bool = False,
    name: str | None = None,
) -> Answer:
    """POST one prediction body with a FastHttpUser's client, judge the answer, and mark
    it as a success or a failure in Locust's statistics."""
    with client.post(
        path,
        data=body,  # geventhttpclient sends bytes as they are
        headers={"content-type": "application/json", **headers},
        name=name,
        catch_response=True,
    ) as response:
        done = time.perf_counter()
        verdict = judge_answer(response.status_code, response.content, rows, intended_bad)
        if verdict.failure is None:
            response.success()
        else:
            response.failure(verdict.failure)
    headers = response.headers or {}
    timing = headers.get("server-timing")
    server_s = server_timing_total_s(timing.encode("latin-1")) if timing else None
    return Answer(verdict, response.status_code, headers.get("x-variant"), done, server_s)
