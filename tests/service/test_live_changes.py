"""Changing the split under concurrent load loses nothing; shutdown finishes admitted work."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import running_server
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_ENV, body, eventually, eventually_async

pytestmark = pytest.mark.integration  # real servers under load

SPLITS = [
    {"weights": {"sklearn_fp32": 0.9, "onnx_int8": 0.1}},
    {"weights": {"sklearn_fp32": 0.5, "onnx_int8": 0.5}, "shadow": "onnx_fp32"},
    {"weights": {"onnx_int8": 1.0}},
    {"weights": {"sklearn_fp32": 1.0}},
]


async def _load_while_changing_split(url: str, payload: dict[str, object]) -> Counter[int | str]:
    outcomes: Counter[int | str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def user(index: int) -> None:
            for _ in range(40):
                response = await client.post(
                    "/predict", json=payload, headers={"X-User-Id": f"user-{index}"}
                )
                outcomes[response.status_code] += 1
                outcomes[response.headers.get("x-variant", "none")] += 1

        async def operator() -> None:
            for split in SPLITS * 3:
                (await client.put("/traffic", json=split, headers=ADMIN)).raise_for_status()
                await asyncio.sleep(0.02)  # changes spread among the users' requests

        await asyncio.gather(operator(), *(user(i) for i in range(16)))
    return outcomes


def test_split_changes_under_load_drop_no_request(store: Path, holdout: Dataset) -> None:
    with running_server(store, env=ADMIN_ENV) as server:
        outcomes = asyncio.run(_load_while_changing_split(server.url, body(holdout.features[:1])))
        shadow = httpx.get(f"{server.url}/metrics").text
    assert outcomes[200] == 16 * 40
    assert outcomes["sklearn_fp32"] > 0 and outcomes["onnx_int8"] > 0
    assert 'perfserve_shadow_predictions_total{outcome="agree",variant="onnx_fp32"}' in shadow


def test_workers_share_split_changes(store: Path, holdout: Dataset) -> None:
    with running_server(store, options=["--workers", "2"], env=ADMIN_ENV) as server:
        split = {"weights": {"onnx_int8": 1.0}}
        changed = httpx.put(f"{server.url}/traffic", json=split, headers=ADMIN)
        version = changed.raise_for_status().json()["version"]

        def every_worker_follows() -> bool:  # each new connection may reach either worker
            readings = [
                httpx.get(f"{server.url}/traffic", headers={"Connection": "close"}).json()
                for _ in range(10)
            ]
            return {reading["version"] for reading in readings} == {version}

        assert version == 2
        eventually(every_worker_follows)
        variants = {
            httpx.post(
                f"{server.url}/predict",
                json=body(holdout.features[:1]),
                headers={"Connection": "close"},
            ).headers["x-variant"]
            for _ in range(30)
        }
    assert variants == {"onnx_int8"}


async def _until_admitted(url: str, count: int, timeout_s: float = 20.0) -> None:
    """Wait until the server holds or has answered `count` prediction requests: a fixed
    sleep is too short on a loaded machine, and a request not yet admitted when SIGTERM
    arrives is refused by design, which is not what this test is about."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:

        async def admitted() -> bool:
            return _admitted((await client.get("/metrics")).text) >= count

        await eventually_async(admitted, timeout_s, what=f"{count} requests admitted")


def _admitted(metrics: str) -> float:
    """Requests in flight plus requests answered, from the exposition text."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("perfserve_inflight_requests ") or line.startswith(
            "perfserve_request_duration_seconds_count{"
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _slow_requests(url: str, payload: dict[str, object]) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return [
            r.status_code
            for r in await asyncio.gather(
                *(client.post("/models/onnx_fp32/predict", json=payload) for _ in range(5))
            )
        ]


def test_sigterm_finishes_admitted_requests_then_exits_cleanly(
    store: Path, holdout: Dataset
) -> None:
    options = ["--allow-faults", "--inject", "onnx_fp32:latency-ms=300", "--max-batch-size", "1"]
    options += ["--inference", "thread"]
    with running_server(store, options=options) as server:

        async def scenario() -> list[int]:
            requests = asyncio.create_task(_slow_requests(server.url, body(holdout.features[:1])))
            await _until_admitted(server.url, 5)  # most still queued: 1.5 s of work
            await asyncio.to_thread(server.stop)
            return await requests

        statuses = asyncio.run(scenario())
        assert statuses == [200] * 5
        assert server.process.returncode == 0
