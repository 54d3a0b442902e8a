"""Input drift while serving: the PSI formula, the window, the out-of-range counts, and the
service exporting them for what it is sent (service/drift.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.drift import EPSILON, DriftMetrics, VariantDrift, bin_counts, histograms, psi
from service.metrics import Metrics
from service.store import Dataset, Manifest
from tests.utils import eventually_async
from tests.utils.inprocess import InProcess, serving


def variant_drift(manifest: Manifest, window_rows: int = 2000, min_rows: int = 100) -> VariantDrift:
    assert manifest.feature_ranges is not None and manifest.feature_histograms is not None
    metrics = Metrics(CollectorRegistry())
    return VariantDrift(
        "v",
        manifest.feature_ranges,
        manifest.feature_histograms,
        manifest.feature_names,
        DriftMetrics(metrics.feature_out_of_range, metrics.input_psi),
        window_rows,
        min_rows,
    )


def sample(drift: VariantDrift, name: str, feature: str) -> float | None:
    """The variant's PSI ("psi") or out-of-range count ("out") for `feature`, None if unset."""
    family = drift.metrics.psi if name == "psi" else drift.metrics.out_of_range
    for metric in family.collect():
        for found in metric.samples:
            if found.labels.get("feature") == feature and not found.name.endswith("_created"):
                return float(found.value)
    return None


def test_psi_is_zero_for_equal_shares_and_grows_with_the_move() -> None:
    expected = np.full(10, 0.1)
    assert psi(expected, expected) == 0.0
    moved = np.array([0.05, 0.15, *([0.1] * 8)])
    # (0.05 - 0.1) ln(0.5) + (0.15 - 0.1) ln(1.5)
    assert psi(expected, moved) == pytest.approx(0.05 * np.log(2) + 0.05 * np.log(1.5))
    assert psi(expected, np.array([1.0, *([0.0] * 9)])) > psi(expected, moved)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    expected = np.array([0.5, 0.5])
    value = psi(expected, np.array([1.0, 0.0]))
    assert np.isfinite(value)
    assert value == pytest.approx(0.5 * np.log(1.0 / 0.5) + (EPSILON - 0.5) * np.log(EPSILON / 0.5))


def test_training_histograms_hold_every_row_and_merge_repeated_edges() -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=1000), np.zeros(1000), rng.integers(0, 3, 1000)])
    found = histograms(rows.astype(np.float32), "training")
    assert len(found.edges[0]) == 9  # deciles
    assert found.edges[1] == [0.0]  # a constant: everything in [0, inf)
    assert found.proportions[1] == [0.0, 1.0]
    assert found.edges[2] == [0.0, 1.0, 2.0]  # three values: one bin each
    assert found.proportions[2][0] == 0.0
    for edges, shares in zip(found.edges, found.proportions, strict=True):
        assert len(shares) == len(edges) + 1
        assert sum(shares) == pytest.approx(1.0)
    assert found.proportions[0] == pytest.approx([0.1] * 10, abs=0.002)
    assert bin_counts(np.asarray(found.edges[1]), np.array([-1.0, 0.0, 5.0])).tolist() == [1, 2]
    few = histograms(rows[:200].astype(np.float32), "training")  # 50 rows a bin: 4 bins
    assert len(few.proportions[0]) == 4


def test_hold_out_traffic_stays_below_the_alert_and_a_shifted_feature_crosses_it(
    manifest: Manifest, holdout: Dataset
) -> None:
    rows = np.resize(holdout.features, (3000, manifest.n_features)).astype(np.float32)
    calm = variant_drift(manifest)
    calm.observe(rows)
    calm.update(calm.take())
    per_feature = [sample(calm, "psi", name) for name in manifest.feature_names]
    assert max(v for v in per_feature if v is not None) < 0.2

    shifted = variant_drift(manifest)
    moved = rows.copy()
    moved[:, 0] *= 2
    shifted.observe(moved)
    shifted.update(shifted.take())
    first = manifest.feature_names[0]
    assert (sample(shifted, "psi", first) or 0.0) > 0.2
    assert (sample(shifted, "psi", manifest.feature_names[1]) or 1.0) < 0.2
    mean = sample(shifted, "psi", "all")
    assert mean == pytest.approx(
        np.mean([sample(shifted, "psi", n) for n in manifest.feature_names])
    )
    assert manifest.feature_ranges is not None
    beyond = int(np.count_nonzero(moved[:, 0] > manifest.feature_ranges.high[0]))
    assert beyond > 0
    assert sample(shifted, "out", first) == beyond


def test_the_window_keeps_the_last_rows_and_waits_for_enough(
    manifest: Manifest, holdout: Dataset
) -> None:
    drift = variant_drift(manifest, window_rows=1000, min_rows=500)
    rows = np.resize(holdout.features, (400, manifest.n_features)).astype(np.float32)
    first = manifest.feature_names[0]
    drift.observe(rows * np.float32(2))
    drift.update(drift.take())
    assert sample(drift, "psi", first) is None  # 400 rows: fewer than min_rows
    drift.observe(rows * np.float32(2))
    drift.update(drift.take())
    assert (sample(drift, "psi", first) or 0.0) > 0.2
    for _ in range(4):  # back to normal: the shifted rows leave the window
        drift.observe(rows)
        drift.update(drift.take())
    assert (sample(drift, "psi", first) or 1.0) < 0.2


def test_the_pending_buffer_is_bounded(manifest: Manifest, holdout: Dataset) -> None:
    drift = variant_drift(manifest)
    drift.max_pending_rows = 10
    for _ in range(5):
        drift.observe(holdout.features[:4])
    assert sum(len(rows) for rows in drift.take()) == 12  # three batches, then full
    assert drift.take() == []


async def wait_for(app: InProcess, name: str, **labels: str) -> float:
    """The sample once it is set, polled with a deadline that holds on a busy machine."""
    await eventually_async(lambda: app.sample(name, **labels) != 0.0, what=f"{name}{labels} set")
    return app.sample(name, **labels)


async def test_the_service_exports_drift_of_what_it_is_sent(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    shifted = holdout.features[:64].astype(float) * [2.0, *([1.0] * (manifest.n_features - 1))]
    settings = {"drift_interval_s": 0.05, "drift_min_rows": 100, "drift_window_rows": 500}
    async with serving(store, **settings) as app:
        described = (await app.client.get("/models")).json()["drift"]
        assert described == {"watched": True, "reason": None, "window_rows": 500}
        for _ in range(4):
            answer = await app.client.post("/predict", json={"instances": shifted.tolist()})
            assert answer.status_code == 200
        first = manifest.feature_names[0]
        labels = {"variant": "sklearn_fp32", "feature": first}
        assert await wait_for(app, "perfserve_input_psi", **labels) > 0.2
        assert await wait_for(app, "perfserve_feature_out_of_range_total", **labels) > 0
        assert app.sample("perfserve_input_psi", variant="sklearn_fp32", feature="all") > 0
        healthy = {"loop": "drift"}
        assert app.sample("perfserve_background_loop_healthy", **healthy) == 1.0


async def test_drift_turned_off_watches_nothing(store: Path, holdout: Dataset) -> None:
    async with serving(store, drift=False, drift_interval_s=0.05) as app:
        described = (await app.client.get("/models")).json()["drift"]
        assert described["watched"] is False and "turned off" in described["reason"]
        assert all(v.batcher.observe is None for v in app.service.variants.values())
        await app.client.post("/predict", json={"instances": holdout.features[:4].tolist()})
        # Nothing marks that nothing was exported: give a wrong export time to show.
        await asyncio.sleep(0.2)
        text = (await app.client.get("/metrics")).text
        assert "perfserve_input_psi{" not in text
        assert 'loop="drift"' not in text


async def test_a_store_without_histograms_serves_with_drift_off_and_says_so(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stores built before histograms were recorded still load."""
    old = tmp_path / "old_store"
    shutil.copytree(store, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["feature_histograms"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="perfserve"):
        async with serving(old) as app:
            described = (await app.client.get("/models")).json()["drift"]
            answer = await app.client.post("/predict", json={"instances": [[1.0] * 30]})
    assert answer.status_code == 200
    assert described["watched"] is False
    assert "rebuild it with `perfserve build`" in described["reason"]
    assert any("input drift is not watched" in r.getMessage() for r in caplog.records)


def test_many_single_rows_count_like_one_matrix(manifest: Manifest, holdout: Dataset) -> None:
    """An unbatched server hands over one array per row; joined in groups, they count as
    the same rows joined at once would, and the window holds the last of them."""
    rows = np.resize(holdout.features, (3000, manifest.n_features)).astype(np.float32)
    rows[:, 0] *= np.linspace(1, 3, 3000, dtype=np.float32)  # moving: the tail matters
    one_by_one, at_once = variant_drift(manifest, 1000), variant_drift(manifest, 1000)
    for row in rows:
        one_by_one.observe(row[None, :])
    one_by_one.update(one_by_one.take())
    at_once.update([rows[-1000:]])
    first = manifest.feature_names[0]
    assert sample(one_by_one, "psi", first) == pytest.approx(sample(at_once, "psi", first))
    ranges = manifest.feature_ranges
    assert ranges is not None
    outside = (rows[:, 0] > ranges.high[0]) | (rows[:, 0] < ranges.low[0])
    assert sample(one_by_one, "out", first) == int(np.count_nonzero(outside))
