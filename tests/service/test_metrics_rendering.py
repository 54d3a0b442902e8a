"""The fast `/metrics` renderer writes what prometheus_client writes, and a scrape shows
what was counted before it, though a series keeps its text between scrapes."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from service.metrics import new_registry
from service.metrics.rendering import Renderer
from service.store import Dataset
from tests.utils import body
from tests.utils.inprocess import serving

# Series whose values move by themselves between two renders of the same registry.
MOVING = ("process_", "python_gc_", "perfserve_gc_seconds")


class _Odd:
    """A collector of its own, with an integer value and labels that need escaping."""

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("odd_things", 'Things "odd"\\ 100%\nat once.', labels=["k"])
        family.add_metric(['a"b\\c\nd %s'], 3)
        family.add_metric(["big"], 12_345_678.5)
        return [family]


def test_the_text_is_prometheus_clients_as_values_move() -> None:
    registry = new_registry()
    hist = Histogram("h_seconds", "A histogram.", ["variant"], registry=registry)
    count = Counter("c", "A counter, 100%.", ["reason"], registry=registry)
    gauge = Gauge("g", "An unlabelled gauge.", registry=registry)
    edges = Gauge("e", "Values Go writes its own way.", ["k"], registry=registry)
    registry.register(_Odd())
    renderer = Renderer(registry)
    for step in range(4):
        hist.labels("x").observe(0.003 * step)
        if step % 2:
            hist.labels('y "%s"').observe(7.5)
            count.labels("full").inc()
        if step == 2:  # a NaN sum after finite counts, then a million and more
            hist.labels("nan").observe(float("nan"))
            hist.labels("big").observe(2e6)
        gauge.set(-2.5e9 * step)
        for label, value in zip(
            "abcd", (float("inf"), -float("inf"), 999_999.5, 1e6 * step), strict=True
        ):
            edges.labels(label).set(value)
        assert _steady(renderer.render()) == _steady(generate_latest(registry))


async def test_the_service_registry_renders_as_before(store: Path, holdout: Dataset) -> None:
    async with serving(store) as app:
        for variant in app.service.names:
            await app.client.post(f"/models/{variant}/predict", json=body(holdout.features[:3]))
        await app.client.post("/models/onnx_int8/predict", json={"instances": [[1]]})
        metrics = app.service.metrics
        metrics.folding.flush()
        assert _steady(metrics.renderer.render()) == _steady(generate_latest(metrics.registry))


async def test_a_scrape_after_a_flush_shows_the_new_counts(store: Path, holdout: Dataset) -> None:
    async with serving(store) as app:
        answered = 'perfserve_request_duration_seconds_count{status="200",variant="onnx_int8"}'
        refused = 'perfserve_rejected_requests_total{reason="invalid_input"}'
        counts = []
        for _ in range(3):
            text = (await app.client.get("/metrics")).text
            counts.append((_sample(text, answered), _sample(text, refused)))
            for _ in range(5):
                await app.client.post("/models/onnx_int8/predict", json=body(holdout.features[:1]))
            await app.client.post("/models/onnx_int8/predict", json={"instances": [[1]]})
        moved = [(a - counts[0][0], r - counts[0][1]) for a, r in counts]
        assert moved == [(0, 0), (5, 1), (10, 2)]


def _steady(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if not line.startswith(MOVING)]


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
