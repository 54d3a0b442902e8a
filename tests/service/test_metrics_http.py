"""`/metrics` moves with traffic (in process and over HTTP), passes promtool, and adds up
across worker processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import body, poll, require_tool, server_timing

EXPECTED = {
    "perfserve_request_duration_seconds",
    "perfserve_queue_duration_seconds",
    "perfserve_inference_duration_seconds",
    "perfserve_stage_duration_seconds",
    "perfserve_batch_size",
    "perfserve_inflight_requests",
    "perfserve_queue_depth",
    "perfserve_busy_seconds",
    "perfserve_model_memory_bytes",
    "perfserve_traffic_weight",
    "perfserve_rejected_requests",
    "process_resident_memory_bytes",
}


Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Snapshot:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Snapshot:
    return parse((await client.get("/metrics")).text)


def value(snapshot: Snapshot, name: str, **labels: str) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_every_contract_metric_is_exposed(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names >= EXPECTED


async def test_a_scrape_can_ask_for_some_metrics_only(client: httpx.AsyncClient) -> None:
    asked = ["perfserve_inflight_requests", "process_resident_memory_bytes"]
    text = (await client.get("/metrics", params={"name[]": asked})).text
    assert {family.name for family in text_string_to_metric_families(text)} == set(asked)


async def test_a_plain_scrape_answered_up_front_shows_what_the_route_shows(
    client: httpx.AsyncClient,
) -> None:
    """The plain scrape skips FastAPI (service/scrape.py); asking the route for every
    family by name gives the same series."""
    plain = await client.get("/metrics")
    assert plain.headers["content-type"] == CONTENT_TYPE_LATEST
    families = [family.name for family in text_string_to_metric_families(plain.text)]
    routed = await client.get("/metrics", params={"name[]": families})
    assert set(parse(routed.text)) == set(parse(plain.text))


async def test_metrics_move_when_traffic_flows(client: httpx.AsyncClient, holdout: Dataset) -> None:
    before = await scrape(client)
    for _ in range(20):
        await client.post("/models/onnx_int8/predict", json=body(holdout.features[:2]))
    await client.post("/models/onnx_int8/predict", json={"instances": [[1]]})
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"variant": "onnx_int8", "status": "200"}
    assert delta("perfserve_request_duration_seconds_count", **ok) == 20
    assert delta("perfserve_queue_duration_seconds_count", variant="onnx_int8") == 20
    assert delta("perfserve_batch_size_sum", variant="onnx_int8") == 40
    assert delta("perfserve_busy_seconds_total", variant="onnx_int8") > 0
    assert delta("perfserve_request_duration_seconds_count", variant="onnx_int8", status="422") == 1
    assert delta("perfserve_rejected_requests_total", reason="invalid_input") == 1
    assert value(after, "perfserve_traffic_weight", variant="sklearn_fp32") == 1.0
    # What loading a variant added to the process's resident memory: exported for each, and
    # never negative; in a test process whose earlier tests freed memory, it can be 0.
    assert after[("perfserve_model_memory_bytes", (("variant", "onnx_fp32"),))] >= 0


def test_promtool_accepts_the_exposition(server: ServerProcess) -> None:
    promtool = require_tool("promtool")
    text = httpx.get(f"{server.url}/metrics").content
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


@pytest.mark.integration
def test_several_workers_add_up(store: Path, holdout: Dataset) -> None:
    """Counts and sums equal what was served, whichever worker answered and whichever
    answers the scrape: each worker folds its own observations and flushes them shortly."""
    served = 60
    queued_ms = 0.0
    with running_server(store, options=["--workers", "2"]) as server, httpx.Client() as client:
        for _ in range(served):
            # A fresh connection each time, so both workers get some of the requests.
            response = client.post(
                f"{server.url}/predict",
                json=body(holdout.features[:2]),
                headers={"Connection": "close"},
            )
            response.raise_for_status()
            queued_ms += server_timing(response.headers["server-timing"])["queue"]
        after = _settled(server.url, served)
        text = httpx.get(f"{server.url}/metrics").content
        only = httpx.get(f"{server.url}/metrics", params={"name[]": "perfserve_runners"}).text
    ok = {"variant": "sklearn_fp32", "status": "200"}
    assert value(after, "perfserve_request_duration_seconds_count", **ok) == served
    assert value(after, "perfserve_request_duration_seconds_bucket", le="+Inf", **ok) == served
    assert value(after, "perfserve_request_duration_seconds_sum", **ok) > 0
    variant = {"variant": "sklearn_fp32"}
    assert value(after, "perfserve_queue_duration_seconds_count", **variant) == served
    # The same durations the responses reported, each rounded to a microsecond there.
    queue_sum = value(after, "perfserve_queue_duration_seconds_sum", **variant)
    assert abs(queue_sum * 1000 - queued_ms) <= served * 0.0005 + 1e-9
    preprocess = {**variant, "stage": "preprocess"}
    assert value(after, "perfserve_stage_duration_seconds_count", **preprocess) == served
    assert value(after, "perfserve_batch_size_sum", **variant) == 2 * served
    assert value(after, "perfserve_inflight_requests") == 0
    assert value(after, "perfserve_queue_depth", **variant) == 0
    assert value(after, "perfserve_runners", **variant) == 2
    assert value(after, "process_resident_memory_bytes") > 0
    assert [family.name for family in text_string_to_metric_families(only)] == ["perfserve_runners"]
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode()


def _settled(url: str, served: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics once every worker has flushed what it folded (within a few intervals)."""
    ok = {"variant": "sklearn_fp32", "status": "200"}
    count = "perfserve_request_duration_seconds_count"
    return poll(
        lambda: parse(httpx.get(f"{url}/metrics").text),
        lambda snapshot: value(snapshot, count, **ok) >= served,
    )
