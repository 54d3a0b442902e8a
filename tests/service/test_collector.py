"""The cyclic garbage collector while serving: the start-up heap frozen out of its scans,
collections as rare as `gc_threshold` says, their time shown, and a prediction leaving
nothing that only the collector could free."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfserve.benchmarks.http.gc_cost import drive, ready_app, row_body
from tests.utils.inprocess import serving


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """This test process's own thresholds back, whatever the app set."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


async def test_once_ready_the_start_up_heap_is_frozen_and_the_threshold_set(
    store: Path,
) -> None:
    gc.set_threshold(700)
    async with serving(store, variants=["onnx_int8"], gc_threshold=12_345) as app:
        assert gc.get_threshold()[0] == 12_345
        frozen = app.sample("perfserve_gc_frozen_objects")
        assert frozen > 10_000  # the models, the app and its routes, at the least


async def test_the_collectors_time_is_counted_by_generation(store: Path) -> None:
    async with serving(store, variants=["onnx_int8"]) as app:
        before = app.sample("perfserve_gc_seconds_total", generation="2")
        gc.collect()
        assert app.sample("perfserve_gc_seconds_total", generation="2") > before
        scraped = (await app.client.get("/metrics")).text
        assert 'perfserve_gc_seconds_total{generation="0"}' in scraped
        assert "perfserve_gc_frozen_objects " in scraped


async def test_predictions_leave_no_reference_cycles(store: Path) -> None:
    """What a request allocates is freed by reference counting when it is answered, so
    the collector can run rarely: with it off, a backlog's requests leave it nothing."""
    body = row_body(store)
    async with ready_app(store, max_queue=256) as app:
        assert await drive(app, body, 256, 64) == 0  # warm: first-use caches, children
        gc.collect()
        gc.disable()
        try:
            failed = await drive(app, body, 1000, 200)
            found = gc.collect()
        finally:
            gc.enable()
    assert failed == 0
    assert found < 1000  # a cycle per request would be several objects per request
