"""The load generator's own Prometheus metrics, served while a Locust run or a sweep runs.

Names are a contract with the Grafana dashboard: it puts the generator's view (offered
rate, outcomes, latency from the scheduled send time) beside the server's, so a reader
can tell a slow server from a slow generator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from hdrh.histogram import HdrHistogram
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric

from loadtests.recorder import Window, WindowKey, bucket_counts, new_histogram

DEFAULT_PORT = 9465
# 100 µs to 10 s: loopback answers take a fraction of a millisecond, a stalled server
# seconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

log = logging.getLogger(__name__)


class LoadgenMetrics:
    """Counters and a latency histogram fed from merged measurement windows."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        self.target_rps = Gauge(
            "perfserve_loadgen_target_rps",
            "Request rate the generator is offering now.",
            registry=self.registry,
        )
        self.requests = Counter(
            "perfserve_loadgen_requests",
            "Requests by answering variant and outcome (ok, shed, error, bad_input).",
            ["variant", "outcome"],
            registry=self.registry,
        )
        self.late = Counter(
            "perfserve_loadgen_late_arrivals",
            "Requests sent later than scheduled, beyond a small tolerance.",
            registry=self.registry,
        )
        self.dropped = Counter(
            "perfserve_loadgen_dropped_arrivals",
            "Scheduled requests never sent (still waiting when their step ended).",
            registry=self.registry,
        )
        self._latency: dict[str, HdrHistogram] = {}
        self.registry.register(self)

    def observe(self, windows: dict[WindowKey, Window]) -> None:
        for window in windows.values():
            self.late.inc(window.late)
            self.dropped.inc(window.dropped)
            for variant, tally in window.tallies.items():
                for outcome, count in tally.outcomes.items():
                    self.requests.labels(variant, outcome).inc(count)
                self._latency.setdefault(variant, new_histogram()).add(tally.scheduled)

    def collect(self) -> Iterator[Metric]:
        """The latency histogram, computed from the cumulative HdrHistograms on scrape."""
        family = HistogramMetricFamily(
            "perfserve_loadgen_latency_seconds",
            "Client latency of successful answers, from each request's scheduled send time.",
            labels=["variant"],
        )
        for variant, histogram in sorted(self._latency.items()):
            counts = bucket_counts(histogram, LATENCY_BUCKETS)
            total = histogram.get_total_count()
            buckets: list[tuple[str, float]] = [
                (str(bound), count) for bound, count in zip(LATENCY_BUCKETS, counts, strict=True)
            ]
            buckets.append(("+Inf", total))
            total_s = histogram.get_mean_value() * total / 1e6 if total else 0.0
            family.add_metric([variant], buckets, total_s)
        yield family

    def describe(self) -> list[Any]:
        return []

    def serve(self, port: int, host: str = "0.0.0.0") -> Any:
        """Serve `/metrics` on `port` (0: not at all); a busy port is logged, not fatal,
        because losing the dashboard must not abort a load test."""
        if port <= 0:
            return None
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            log.warning("load generator metrics not served on port %d: %s", port, error)
            return None
        return server
