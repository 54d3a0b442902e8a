"""The row cache (`--cache-rows`): least recently used rows go first, its memory is bounded
and shown, equal rows hit whatever their JSON spelling, and hits are kept out of a
rollout's evidence and out of shadow mirroring."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from service.batching import BatchResult
from service.cache import RowCache
from service.metrics import Metrics
from service.settings import Settings
from service.store import Dataset, load_manifest
from tests.utils import ADMIN, ADMIN_TOKEN, body, eventually_async
from tests.utils.inprocess import InProcess, serving

BASELINE, CANDIDATE = "sklearn_fp32", "onnx_fp32"


def new_cache(max_rows: int) -> tuple[RowCache, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return RowCache("v", "m-1", max_rows, metrics.for_cache("v")), metrics


def answer(rows: np.ndarray) -> BatchResult:
    """A classifier's answer to `rows`: label 1 and probability from the first feature."""
    first = rows[:, 0].astype(np.float32)
    probabilities = np.stack([1 - first / 100, first / 100], axis=1)
    return BatchResult(np.ones(len(rows), dtype=np.int64), probabilities, 0.001, 0.002, 8)


def row(value: float, width: int = 30) -> np.ndarray:
    return np.full((1, width), value, dtype=np.float64)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    metrics.folding.flush()
    return metrics.registry.get_sample_value(name, {"variant": "v", **labels}) or 0.0


def test_the_least_recently_used_row_is_evicted_first() -> None:
    cache, metrics = new_cache(max_rows=2)
    for value in (1.0, 2.0):
        cache.store(row(value), answer(row(value)))
    assert cache.lookup(row(1.0)) is not None  # 1 is now the most recently used
    cache.store(row(3.0), answer(row(3.0)))
    assert cache.lookup(row(2.0)) is None
    found = cache.lookup(row(1.0))
    assert found is not None and found.probabilities is not None
    assert found.probabilities[0, 1] == pytest.approx(0.01)
    assert cache.rows == 2
    assert sample(metrics, "perfserve_cache_evictions_total") == 1
    assert sample(metrics, "perfserve_cache_requests_total", outcome="hit") == 2
    assert sample(metrics, "perfserve_cache_requests_total", outcome="miss") == 1
    assert sample(metrics, "perfserve_cache_rows") == 2


def test_a_request_hits_only_when_every_row_is_cached_and_gets_them_in_order() -> None:
    cache, _ = new_cache(max_rows=10)
    both = np.concatenate([row(5.0), row(7.0)])
    cache.store(both, answer(both))
    assert cache.lookup(np.concatenate([row(7.0), row(9.0)])) is None
    found = cache.lookup(np.concatenate([row(7.0), row(5.0)]))
    assert found is not None and found.probabilities is not None
    assert found.probabilities[:, 1].tolist() == pytest.approx([0.07, 0.05])
    assert found.labels.tolist() == [1, 1]
    assert (found.queue_s, found.infer_s, found.batch_rows) == (0.0, 0.0, 0)


def test_a_float32_row_hits_the_same_values_sent_as_float64() -> None:
    cache, _ = new_cache(max_rows=10)
    cache.store(row(0.5), answer(row(0.5)))
    assert cache.lookup(row(0.5).astype(np.float32)) is not None


def test_an_entry_holds_its_own_answer_not_its_whole_batch() -> None:
    cache, _ = new_cache(max_rows=10)
    batch = np.concatenate([row(float(value)) for value in range(64)])
    cache.store(batch[:1], _first(answer(batch)))
    found = cache.lookup(batch[:1])
    assert found is not None and found.probabilities is not None
    assert found.labels.base is None and found.probabilities.base is None


def test_a_one_row_batchs_answer_is_kept_as_it_came_and_its_memory_counted() -> None:
    cache, _ = new_cache(max_rows=10)
    model_labels, model_probabilities = np.ones(1, dtype=np.int64), np.ones((1, 2), np.float32)
    alone = BatchResult(model_labels[0:1], model_probabilities[0:1], 0.001, 0.002, 1)
    cache.store(row(1.0), alone)
    assert cache.lookup(row(1.0)) is alone
    views = sys.getsizeof(alone.labels) + sys.getsizeof(alone.probabilities)
    bases = sys.getsizeof(model_labels) + sys.getsizeof(model_probabilities)
    assert cache.entry_bytes >= views + bases + len(row(1.0).tobytes())


def _first(result: BatchResult) -> BatchResult:
    """The first row's share of a batch, as a view of the batch's arrays (as batches give)."""
    assert result.probabilities is not None
    return BatchResult(result.labels[:1], result.probabilities[:1], 0.0, 0.0, 64)


def test_memory_is_bounded_and_what_it_shows_matches_what_it_takes() -> None:
    rows = 5_000
    cache, metrics = new_cache(max_rows=rows)
    values = np.random.default_rng(0).random((rows * 2, 30))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, len(values), 100):
        chunk = values[start : start + 100]
        cache.store(chunk, answer(chunk))
    taken = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert cache.rows == rows
    assert cache.bytes == rows * cache.entry_bytes
    assert cache.bytes == pytest.approx(taken, rel=0.25)
    assert sample(metrics, "perfserve_cache_bytes") == cache.bytes
    assert cache.describe()["max_bytes"] == cache.bytes


def test_the_cache_and_injected_faults_are_refused_together(store: Path) -> None:
    with pytest.raises(ValidationError, match="cached answers would hide the injected faults"):
        Settings(
            store=store, cache_rows=10, inject={"onnx_int8": {"latency-ms": 5}}, allow_faults=True
        )


async def predict(app: InProcess, text: bytes, **headers: str) -> tuple[int, dict[str, str]]:
    headers = {"content-type": "application/json", **headers}
    answer = await app.client.post("/predict", content=text, headers=headers)
    return answer.status_code, {**answer.json(), "timing": answer.headers["server-timing"]}


async def test_equal_rows_in_other_json_spellings_hit_and_skip_the_model(
    store: Path, holdout: Dataset
) -> None:
    width = holdout.features.shape[1]
    spellings = [
        b'{"instances": [[' + b", ".join([b"1"] * width) + b"]]}",
        b'{"instances":[[' + b",".join([b"1.0"] * width) + b"]]}",
        b'{"instances": [[' + b", ".join([b"1e0"] * width) + b"]]}",
    ]
    async with serving(store, cache_rows=100, routing_seed=7) as app:
        answers = [await predict(app, text) for text in spellings]
        described = (await app.client.get(f"/models/{BASELINE}")).json()["cache"]
        app.service.metrics.folding.flush()
        batches = app.sample("perfserve_batch_size_count", variant=BASELINE)
        hits = app.sample("perfserve_cache_requests_total", variant=BASELINE, outcome="hit")
        misses = app.sample("perfserve_cache_requests_total", variant=BASELINE, outcome="miss")
        cached_rows = app.sample("perfserve_cache_rows", variant=BASELINE)
    assert [status for status, _ in answers] == [200, 200, 200]
    first, *repeated = (content for _, content in answers)
    assert all(a["probabilities"] == first["probabilities"] for a in repeated)
    assert first["timing"].startswith("queue;")
    assert all(a["timing"].startswith("cache;desc=hit") for a in repeated)
    assert (hits, misses, batches, cached_rows) == (2, 1, 1, 1)
    assert described["rows"] == 1 and described["max_rows"] == 100
    assert 0 < described["bytes"] < described["max_bytes"]


async def test_without_the_cache_nothing_is_looked_up_or_shown(
    store: Path, holdout: Dataset
) -> None:
    async with serving(store, routing_seed=7) as app:
        for _ in range(2):
            sent = await app.client.post("/predict", json=body(holdout.features[:1]))
            assert sent.headers["server-timing"].startswith("queue;")
        described = (await app.client.get(f"/models/{BASELINE}")).json()
        app.service.metrics.folding.flush()
        looked_up = app.sample("perfserve_cache_requests_total", variant=BASELINE, outcome="miss")
    assert described["cache"] is None and looked_up == 0


async def test_hits_are_not_mirrored_to_the_shadow(store: Path, holdout: Dataset) -> None:
    async with serving(
        store, cache_rows=100, routing_seed=7, shadow="onnx_int8", shadow_share=1.0
    ) as app:
        shadow = app.service.variants["onnx_int8"].batcher
        for _ in range(5):
            sent = await app.client.post("/predict", json=body(holdout.features[:1]))
            assert sent.status_code == 200
            # The mirror copies only to an idle shadow: let any copy be computed first.
            await eventually_async(lambda: shadow.queued == 0)
            await asyncio.sleep(0.05)  # its model call: no event marks its end from here
        await eventually_async(lambda: _compared(app) >= 1)
        await asyncio.sleep(0.5)  # time for copies of the hits, were any sent
        compared = _compared(app)
    assert compared == 1  # the first request's miss only


def _compared(app: InProcess) -> float:
    """Rows the shadow variant answered and that were compared with the served answer."""
    app.service.metrics.folding.flush()
    return sum(
        app.sample("perfserve_shadow_predictions_total", variant="onnx_int8", outcome=outcome)
        for outcome in ("agree", "disagree")
    )


async def test_hits_are_not_a_rollouts_evidence(
    store: Path, holdout: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the requests the model answered reach the judge: repeated rows answered from
    the cache would make the cached variant look faster than it is."""
    async with serving(store, cache_rows=100, admin_token=ADMIN_TOKEN, routing_seed=7) as app:
        recorder = app.service.canary.rollouts.recorder
        recorded: list[str] = []
        record = recorder.record

        def recording(variant: str, duration_s: float, status: int) -> None:
            recorded.append(variant)
            record(variant, duration_s, status)

        monkeypatch.setattr(recorder, "record", recording)
        plan = {"baseline": BASELINE, "candidate": CANDIDATE, "steps": [50, 100]}
        started = await app.client.post("/rollout/start", json=plan, headers=ADMIN)
        assert started.status_code == 202
        await eventually_async(lambda: recorder.active)
        users = [f"user-{n}" for n in range(40)]
        for user in users * 3:  # each user sends the same row three times
            sent = await app.client.post(
                "/predict", json=body(holdout.features[:1]), headers={"x-user-id": user}
            )
            assert sent.status_code == 200
        app.service.metrics.folding.flush()
        hits = sum(
            app.sample("perfserve_cache_requests_total", variant=name, outcome="hit")
            for name in (BASELINE, CANDIDATE)
        )
    # One miss per variant the row reached; every other request was a hit, unrecorded.
    assert set(recorded) == {BASELINE, CANDIDATE}
    assert len(recorded) == 2 and hits == len(users) * 3 - 2


async def test_hits_still_count_as_inputs_for_drift(store: Path, holdout: Dataset) -> None:
    """A repeated row is what users keep sending: drift sees it every time, answered from
    the cache or not."""
    outside = holdout.features[:1].copy()
    outside[0, 0] = float(app_training_max(store)) * 1.5  # above the training maximum
    async with serving(
        store, cache_rows=100, routing_seed=7, drift_interval_s=0.1, drift_min_rows=100
    ) as app:
        for _ in range(5):
            sent = await app.client.post("/predict", json=body(outside))
            assert sent.status_code == 200
        feature = app.service.manifest.feature_names[0]
        await eventually_async(
            lambda: (
                app.sample(
                    "perfserve_feature_out_of_range_total", variant=BASELINE, feature=feature
                )
                >= 5
            )
        )
        app.service.metrics.folding.flush()
        hits = app.sample("perfserve_cache_requests_total", variant=BASELINE, outcome="hit")
    assert hits == 4


def app_training_max(store: Path) -> float:
    """The first feature's training maximum, as the store recorded it."""
    ranges = load_manifest(store).feature_ranges
    assert ranges is not None
    return float(ranges.high[0])
