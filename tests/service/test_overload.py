"""Past capacity: fast 503s with Retry-After, 504 past the deadline, admitted work done."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from common.processes import running_server
from service.store import Dataset
from tests.utils import body


async def _burst(
    url: str, payload: dict[str, object], count: int
) -> list[tuple[int, float, httpx.Response]]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one() -> tuple[int, float, httpx.Response]:
            started = time.perf_counter()
            response = await client.post("/models/onnx_fp32/predict", json=payload)
            return response.status_code, time.perf_counter() - started, response

        return await asyncio.gather(*(one() for _ in range(count)))


def test_overload_sheds_fast_while_admitted_requests_succeed(store: Path, holdout: Dataset) -> None:
    # Each batch takes 200 ms and holds one request; only 2 may wait.
    options = ["--max-batch-size", "1", "--max-queue", "2", "--allow-faults"]
    options += ["--inject", "onnx_fp32:latency-ms=200"]
    with running_server(store, options=[*options, "--inference", "thread"]) as server:
        results = asyncio.run(_burst(server.url, body(holdout.features[:1]), 40))
        metrics = httpx.get(f"{server.url}/metrics").text
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 2
    assert statuses.count(503) >= 20
    assert set(statuses) <= {200, 503}
    shed = [(seconds, response) for status, seconds, response in results if status == 503]
    assert all(response.headers["retry-after"] == "1" for _, response in shed)
    assert all("at capacity" in response.json()["detail"] for _, response in shed)
    # Refusals never wait behind the 200 ms model calls: the server answered every one in
    # under half a model call (its own histogram, which includes waiting for the client's
    # body), and clients had them all before the last admitted answer.
    shed_count = samples(metrics, "perfserve_request_duration_seconds_count")
    shed_fast = samples(metrics, "perfserve_request_duration_seconds_bucket", le="0.1")
    assert shed_count == shed_fast == len(shed)
    slowest_admitted = max(seconds for status, seconds, _ in results if status == 200)
    assert max(seconds for seconds, _ in shed) < slowest_admitted
    assert samples(metrics, "perfserve_rejected_requests_total", reason="queue_full") == len(shed)


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples for the 503s of onnx_fp32 (or the given labels)."""
    wanted = (
        {"variant": "onnx_fp32", "status": "503", **labels} if "reason" not in labels else labels
    )
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items())
    )


def test_requests_queued_past_their_deadline_get_504(store: Path, holdout: Dataset) -> None:
    options = ["--max-batch-size", "1", "--request-timeout-ms", "100", "--allow-faults"]
    options += ["--inject", "onnx_fp32:latency-ms=40"]
    with running_server(store, options=[*options, "--inference", "thread"]) as server:
        results = asyncio.run(_burst(server.url, body(holdout.features[:1]), 10))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 2
    assert statuses.count(504) >= 3
    late = next(response for status, _, response in results if status == 504)
    assert "deadline" in late.json()["detail"]
