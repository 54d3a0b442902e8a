"""Shadow traffic: a sampled share of served requests mirrored to another variant, after
the served answer has gone out, and compared with it.

The mirror must never cost the user anything: a request is copied only once its response
is sent, only if it was routed by the split (a request that names its variant is a test
of that variant, not traffic), only for a `shadow_share` sample, and only when the shadow
variant's queue is empty, so with inline inference the copy runs in an idle moment of
the loop and with a runner thread it never queues ahead of real work. Regressors agree
within `shadow_tolerance`; classifiers when the labels match.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from service.batching import (
    BatchResult,
    MicroBatcher,
    QueueFull,
    ShuttingDown,
    VariantUnavailable,
)
from service.metrics import Metrics
from service.supervision import LoopHealth

Compared = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Per row: disagreed (bool), the served score and the shadow's score."""
OnCompared = Callable[[Compared], None]


def compare_answers(served: BatchResult, mirrored: BatchResult, tolerance: float) -> Compared:
    """Row by row, whether the shadow disagrees with the served answer, and both scores.

    A classifier's score is the probability each variant gives the label that was served
    (so it is comparable whatever the number of classes); a regressor's is its value."""
    if served.probabilities is None or mirrored.probabilities is None:
        baseline = np.asarray(served.labels, dtype=np.float64)
        candidate = np.asarray(mirrored.labels, dtype=np.float64)
        return ~np.isclose(candidate, baseline, rtol=tolerance, atol=tolerance), baseline, candidate
    rows = np.arange(len(served.labels))
    served_class = served.probabilities.argmax(axis=1)
    return (
        served.labels != mirrored.labels,
        served.probabilities[rows, served_class].astype(np.float64),
        mirrored.probabilities[rows, served_class].astype(np.float64),
    )


class ShadowMirror:
    """Sends sampled copies to the shadow variant and records how it compares."""

    def __init__(
        self,
        metrics: Metrics,
        share: float,
        tolerance: float,
        timeout_s: float,
        seed: int | None,
        health: LoopHealth,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.share = share
        self.tolerance = tolerance
        self.timeout_s = timeout_s
        self._random = random.Random(seed)

    def mirror(
        self,
        shadow: MicroBatcher,
        rows: np.ndarray,
        served: BatchResult,
        on_compared: OnCompared | None,
    ) -> None:
        """Copy `rows` to `shadow` if sampled and its queue is empty; never raises."""
        if self._random.random() >= self.share or shadow.queued:
            return
        started = time.perf_counter()
        try:
            copy = shadow.submit(rows, started + self.timeout_s)
        except (QueueFull, ShuttingDown, VariantUnavailable):
            return
        copy.add_done_callback(partial(self._compare, shadow.name, served, started, on_compared))

    def _compare(
        self,
        variant: str,
        served: BatchResult,
        started: float,
        on_compared: OnCompared | None,
        copy: asyncio.Future[BatchResult],
    ) -> None:
        if copy.cancelled() or copy.exception() is not None:
            return  # a shadow that failed or timed out changes nothing for the user
        with self.health.guard("shadow"):  # a callback's error would otherwise go unseen
            self._record(variant, served, started, on_compared, copy.result())

    def _record(
        self,
        variant: str,
        served: BatchResult,
        started: float,
        on_compared: OnCompared | None,
        mirrored: BatchResult,
    ) -> None:
        metrics = self.metrics
        metrics.shadow_duration.labels(variant).observe(time.perf_counter() - started)
        compared = compare_answers(served, mirrored, self.tolerance)
        disagreed, baseline, candidate = compared
        differing = int(np.count_nonzero(disagreed))
        metrics.shadow_predictions.labels(variant, "agree").inc(len(disagreed) - differing)
        metrics.shadow_predictions.labels(variant, "disagree").inc(differing)
        difference = metrics.shadow_difference.labels(variant)
        for value in np.abs(candidate - baseline):
            difference.observe(float(value))
        if on_compared is not None:
            on_compared(compared)
