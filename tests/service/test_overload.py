"""Past capacity: 503s with Retry-After (a full queue, or a wait past the queue deadline),
504 past the deadline, admitted work done."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import running_server
from service.store import Dataset
from tests.utils import body

pytestmark = pytest.mark.integration  # real servers under load


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


def test_overload_sheds_while_admitted_requests_succeed(store: Path, holdout: Dataset) -> None:
    # Each batch takes 200 ms and holds one request; only 2 may wait.
    options = ["--max-batch-size", "1", "--max-queue", "2", "--allow-faults"]
    options += ["--inject", "onnx_fp32:latency-ms=200"]
    with running_server(store, options=[*options, "--inference", "thread"]) as server:
        results = asyncio.run(_burst(server.url, body(holdout.features[:1]), 40))
        metrics = httpx.get(f"{server.url}/metrics").text
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 2
    assert statuses.count(503) >= 10
    assert set(statuses) <= {200, 503}
    admitted = [response for status, _, response in results if status == 200]
    assert all(len(response.json()["predictions"]) == 1 for response in admitted)
    shed = [response for status, _, response in results if status == 503]
    assert all(response.headers["retry-after"] == "1" for response in shed)
    assert all("at capacity" in response.json()["detail"] for response in shed)
    # A refusal never reaches the model: one model call per answered request, none for
    # the refused ones. How fast a refusal is, is a figure, not a test bound (timings on
    # a loaded machine vary): docs/PERFORMANCE.md, "Overload", measures it with wrk.
    calls = samples(metrics, "perfserve_batch_size_count", variant="onnx_fp32")
    assert calls == len(admitted)
    assert samples(metrics, "perfserve_request_duration_seconds_count") == len(shed)
    assert samples(metrics, "perfserve_rejected_requests_total", reason="queue_full") == len(shed)


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples with the given labels (default: onnx_fp32's 503s)."""
    wanted = labels or {"variant": "onnx_fp32", "status": "503"}
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


def test_a_backlog_past_the_queue_deadline_gets_fast_503s_not_slow_200s(
    store: Path, holdout: Dataset
) -> None:
    # 30 requests at once, one per 40 ms batch: served in turn, the last would answer
    # after 1.2 s. With a 100 ms queue deadline, whatever waited longer is refused
    # as soon as a batch could take it, before any model work.
    options = ["--max-batch-size", "1", "--queue-deadline-ms", "100", "--allow-faults"]
    options += ["--inject", "onnx_fp32:latency-ms=40", "--inference", "thread"]
    with running_server(store, options=options) as server:
        results = asyncio.run(_burst(server.url, body(holdout.features[:1]), 30))
        metrics = httpx.get(f"{server.url}/metrics").text
    served = [took for status, took, _ in results if status == 200]
    refused = [(took, response) for status, took, response in results if status == 503]
    assert len(served) + len(refused) == 30
    assert 1 <= len(served) <= 10 and len(refused) >= 20
    assert all(r.headers["retry-after"] == "1" for _, r in refused)
    assert all("queue deadline" in r.json()["detail"] for _, r in refused)
    # Refused as soon as a batch ended, not after the backlog was served in turn (1.2 s).
    assert max(took for took, _ in refused) < 0.6
    assert samples(metrics, "perfserve_batch_size_count", variant="onnx_fp32") == len(served)
    late = samples(metrics, "perfserve_rejected_requests_total", reason="queue_deadline")
    assert late == len(refused)


def test_a_hung_model_call_answers_504_at_the_deadline_and_readyz_says_so(
    store: Path, holdout: Dataset
) -> None:
    # Every model call takes 3 s; a request may wait 0.5 s.
    options = ["--allow-faults", "--inject", "sklearn_fp32:latency-ms=3000"]
    options += ["--request-timeout-ms", "500"]
    with running_server(store, options=[*options, "--inference", "thread"]) as server:
        started = time.monotonic()
        late = httpx.post(f"{server.url}/predict", json=body(holdout.features[:1]), timeout=30)
        waited = time.monotonic() - started
        ready = httpx.get(f"{server.url}/readyz")
    assert late.status_code == 504
    assert waited < 2.5  # the deadline plus the watchdog's period, not the 3 s call
    assert ready.status_code == 503 and "running for" in ready.json()["detail"]
