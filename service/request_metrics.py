"""The request path's metrics, each with one owner: a prediction's duration, a refused
request, and the requests in flight.

Each series is a folded child (service/metrics/folding.py), made on first use and kept,
so a request pays a dict lookup and an addition.
"""

from __future__ import annotations

from collections.abc import Callable

from service.metrics import FoldedCounter, Metrics
from service.serving import LoadedVariant


class RequestMetrics:
    """`observe_request`, `count_rejection` and `publish_inflight` of `Serving`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._rejections: dict[str, FoldedCounter] = {}

    def observe_request(self, variant: LoadedVariant, status: int, elapsed_s: float) -> None:
        """The one place a prediction's duration is observed
        (`perfserve_request_duration_seconds`), whatever its status."""
        if (folded := variant.durations.get(status)) is None:
            child = self.metrics.request_duration.labels(variant.info.name, str(status))
            folded = variant.durations[status] = self.metrics.folding.histogram(child)
        folded.observe(elapsed_s)

    def count_rejection(self, reason: str) -> None:
        """The one place a refused request is counted (`perfserve_rejected_requests_total`),
        for the prediction path and the admin guard alike."""
        if (folded := self._rejections.get(reason)) is None:
            child = self.metrics.rejected.labels(reason)
            folded = self._rejections[reason] = self.metrics.folding.counter(child)
        folded.inc()

    def publish_inflight(self, read: Callable[[], int]) -> None:
        """The one owner of `perfserve_inflight_requests`: set from `read()` (the request
        handler's own count) at each flush."""
        self.metrics.folding.gauge(self.metrics.inflight, read)
