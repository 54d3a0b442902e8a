"""Past capacity through V2: the same fast 503 with Retry-After as `/predict`, in V2's
error shape, and admitted requests answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import running_server
from service.store import Dataset
from tests.utils.protocols import v2_body

pytestmark = pytest.mark.integration


async def _burst(url: str, body: dict[str, object], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        requests = (client.post("/v2/models/onnx_fp32/infer", json=body) for _ in range(count))
        return await asyncio.gather(*requests)


def test_v2_sheds_with_503_in_its_own_shape(store: Path, holdout: Dataset) -> None:
    options = ["--max-batch-size", "1", "--max-queue", "2", "--allow-faults"]
    options += ["--inject", "onnx_fp32:latency-ms=200", "--inference", "thread"]
    with running_server(store, options=options) as server:
        answers = asyncio.run(_burst(server.url, v2_body(holdout.features[:1]), 40))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 10
    assert statuses.count(200) >= 2
    shed = [answer for answer in answers if answer.status_code == 503]
    assert all(answer.headers["retry-after"] == "1" for answer in shed)
    assert all(answer.json() == {"error": shed[0].json()["error"]} for answer in shed)
    assert "at capacity" in shed[0].json()["error"]
