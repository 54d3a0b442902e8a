"""Every Prometheus metric of the service, defined once.

Names are a contract with the Grafana dashboard, the recording rules and the sweep,
which reads `/metrics` deltas; change them here and there together.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# Sub-millisecond to seconds: the hot path answers in well under a millisecond, an
# overloaded queue in seconds; the defaults (5 ms and up) would hide the first.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075,
    0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("preprocess", "infer", "postprocess")
# How often each process adds what it folded to the exposition (see `Folding`); a scrape
# answered by a process flushes that process first.
FLUSH_INTERVAL_S = 0.1
# How far the candidate's probability for the served label is from the baseline's.
DIFFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# prometheus_client's file for one process's gauges in a `live*` multiprocess mode.
LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def multiprocess_mode() -> bool:
    """True when worker processes share metrics through files (several workers)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class Metrics:
    """The service's metrics, registered on one registry (a fresh one per app in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.folding = Folding()
        self.request_duration = Histogram(
            "perfserve_request_duration_seconds",
            "Server-side time of a prediction request, from its first byte to its answer.",
            ["variant", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_duration = Histogram(
            "perfserve_queue_duration_seconds",
            "Time a request waited in its variant's batch queue before its batch started.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "perfserve_inference_duration_seconds",
            "Model compute time of one batch.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "perfserve_stage_duration_seconds",
            "Time per stage: preprocess (parse, validate), infer (batch), postprocess (encode).",
            ["variant", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "perfserve_batch_size",
            "Rows per executed batch.",
            ["variant"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "perfserve_inflight_requests",
            "Prediction requests inside the server now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "perfserve_queue_depth",
            "Requests waiting in each variant's batch queue.",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.busy = Counter(
            "perfserve_busy_seconds",
            "Time each variant's runner spent computing; rate() / runners = utilization.",
            ["variant"],
            registry=registry,
        )
        self.runners = Gauge(
            "perfserve_runners",
            "Model runners per variant (one per worker process).",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_memory = Gauge(
            "perfserve_model_memory_bytes",
            "Resident memory taken by loading each variant.",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.traffic_weight = Gauge(
            "perfserve_traffic_weight",
            "Current share of routed traffic per variant (0..1).",
            ["variant"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.split_version = Gauge(
            "perfserve_split_version",
            "Version of the traffic split this replica routes by; with several workers, the "
            "oldest any of them follows, so a controller can wait until all have the new one.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.injected_fault = Gauge(
            "perfserve_injected_fault",
            "Fault injected on purpose for a rehearsal, valued as set: latency-ms in "
            "milliseconds, error-rate and flip-rate as fractions.",
            ["variant", "kind"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.rejected = Counter(
            "perfserve_rejected_requests",
            "Requests refused or failed: queue_full, deadline, invalid_input, too_large, "
            "unknown_variant, not_ready, shutting_down, model_error, unavailable, slow_client, "
            "unauthorized (an admin request without the right token).",
            ["reason"],
            registry=registry,
        )
        self.shadow_predictions = Counter(
            "perfserve_shadow_predictions",
            "Mirrored predictions by the shadow variant, by agreement with the served answer.",
            ["variant", "outcome"],
            registry=registry,
        )
        self.shadow_duration = Histogram(
            "perfserve_shadow_duration_seconds",
            "Time the shadow variant took to answer a mirrored request, queue included.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.shadow_difference = Histogram(
            "perfserve_shadow_probability_difference",
            "Per mirrored row, |candidate - baseline| probability of the served label "
            "(regressors: of the value); _sum / _count is the mean absolute difference.",
            ["variant"],
            buckets=DIFFERENCE_BUCKETS,
            registry=registry,
        )
        self.rollout_step = Gauge(
            "perfserve_rollout_step",
            "Step of the current or last rollout (1-based; 0: none since start-up).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rollout_candidate_weight = Gauge(
            "perfserve_rollout_candidate_weight",
            "Share of traffic the rollout gives its candidate now (0..1).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rollout_status = Gauge(
            "perfserve_rollout_status",
            "1 for the rollout's status: running, paused, promoted, rolled_back, aborted, "
            "dry_run_done; 0 for the others.",
            ["status"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rollout_verdicts = Counter(
            "perfserve_rollout_verdicts",
            "Gate verdicts of the rollout judge, by gate and outcome (pass, fail, inconclusive).",
            ["gate", "outcome"],
            registry=registry,
        )
        self.model_info = Gauge(
            "perfserve_model_info",
            "Always 1; labels describe each loaded variant.",
            ["variant", "model_version", "format", "precision"],
            registry=registry,
            multiprocess_mode="max",
        )

    def for_variant(self, variant: str) -> VariantMetrics:
        """Folded children bound to one variant's labels: no label lookups, no locks."""
        fold = self.folding
        return VariantMetrics(
            queue_duration=fold.histogram(self.queue_duration.labels(variant)),
            inference_duration=fold.histogram(self.inference_duration.labels(variant)),
            preprocess=fold.histogram(self.stage_duration.labels(variant, "preprocess")),
            infer=fold.histogram(self.stage_duration.labels(variant, "infer")),
            postprocess=fold.histogram(self.stage_duration.labels(variant, "postprocess")),
            batch_size=fold.histogram(self.batch_size.labels(variant)),
            queue_depth=self.queue_depth.labels(variant),
            busy=fold.counter(self.busy.labels(variant)),
            request_ok=fold.histogram(self.request_duration.labels(variant, "200")),
            folding=fold,
        )


@dataclass(frozen=True, slots=True)
class VariantMetrics:
    queue_duration: FoldedHistogram
    inference_duration: FoldedHistogram
    preprocess: FoldedHistogram
    infer: FoldedHistogram
    postprocess: FoldedHistogram
    batch_size: FoldedHistogram
    queue_depth: Any
    """Set from the queue's length at each flush (see `Folding.gauge`)."""
    busy: FoldedCounter
    request_ok: FoldedHistogram
    folding: Folding


class FoldedHistogram:
    """A histogram child's observations, kept in plain Python until `flush` adds them.

    `Histogram.observe` checks, takes a lock and walks the buckets for each observation
    (with several workers it also writes a shared file): about 1.4 µs, and the hot path
    made eight such updates per request. Here an observation is a bisect and two
    additions; `flush` adds each bucket's count and the sum to the very values
    prometheus_client keeps for the child, so the exposition, in one process or merged
    across workers, is what one `observe` per value would have produced.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_dirty", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child: Any = child
        self._bounds: list[float] = list(self._child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._dirty = False

    def observe(self, value: float) -> None:
        # The bucket `Histogram.observe` picks: the first upper bound >= value.
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        buckets = self._child._buckets
        for index, count in enumerate(self._counts):
            if count:
                buckets[index].inc(count)
                self._counts[index] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0
        self._dirty = False


class FoldedCounter:
    """A counter child's increments, summed in plain Python until `flush` adds them."""

    __slots__ = ("_child", "_total")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._total += amount

    def flush(self) -> None:
        if self._total:
            self._child.inc(self._total)
            self._total = 0.0


class Folding:
    """The hot path's metrics of one process, written to prometheus_client in bulk.

    Observations and increments are folded as they happen; gauges are read from their
    source (a counter of requests in flight, a queue's length) instead of being moved up
    and down per request. `flush` runs every `FLUSH_INTERVAL_S` and before this process
    answers a scrape, so a single process exposes exact figures and, with several workers,
    the others' share is at most one interval old. Used from the event loop thread only.
    """

    def __init__(self) -> None:
        self._folded: list[FoldedHistogram | FoldedCounter] = []
        self._gauges: list[tuple[Gauge, Callable[[], float]]] = []

    def histogram(self, child: Histogram) -> FoldedHistogram:
        folded = FoldedHistogram(child)
        self._folded.append(folded)
        return folded

    def counter(self, child: Counter) -> FoldedCounter:
        folded = FoldedCounter(child)
        self._folded.append(folded)
        return folded

    def gauge(self, child: Gauge, read: Callable[[], float]) -> None:
        """Set `child` to `read()` at every flush."""
        self._gauges.append((child, read))

    def flush(self) -> None:
        for folded in self._folded:
            folded.flush()
        for gauge, read in self._gauges:
            gauge.set(read())


def new_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors."""
    # `*_created` series double the scrape for no use on a dashboard or in the sweep.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    # Described collectors can be rendered alone (`/metrics?name[]=`).
    registry = CollectorRegistry(auto_describe=True)
    if not multiprocess_mode():
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, names: Sequence[str] = ()) -> bytes:
    """The text to answer `/metrics` with, only `names` if given; with several workers,
    the sum over all of them."""
    if multiprocess_mode():
        forget_dead_workers()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        merged.register(SiblingWorkersCollector())
        return generate_latest(_Only(merged, names) if names else merged)
    return generate_latest(registry.restricted_registry(names) if names else registry)


class _Only:
    """The metrics of a registry with the given names; the workers' merged metrics are
    read from their files as a whole, so they can only be filtered after collection."""

    def __init__(self, registry: CollectorRegistry, names: Sequence[str]) -> None:
        self.registry = registry
        self.names = set(names)

    def collect(self) -> Iterator[Metric]:
        return (metric for metric in self.registry.collect() if metric.name in self.names)


def workers_with_all_variants(variants: list[str]) -> int:
    """With several workers, how many have loaded every variant (from the shared gauges)."""
    forget_dead_workers()
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    counts = [merged.get_sample_value("perfserve_runners", {"variant": v}) or 0 for v in variants]
    return int(min(counts, default=0))


def forget_dead_workers() -> None:
    """Delete the live gauges (in flight, queue depth, runners, memory) of dead workers.

    uvicorn replaces a worker that dies, but the dead one's gauge files stay in the shared
    folder: a live sum would go on counting its runners, in-flight requests and queue,
    and readiness would count it as loaded while its replacement is still loading. This
    is `multiprocess.mark_process_dead`, for every worker that is no longer a child of
    the supervisor, tolerating a sibling that deletes the same file first. Counters and
    histograms keep the dead worker's share: totals must never go backwards.
    """
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    living = set()
    for child in psutil.Process(os.getppid()).children():
        # A killed worker stays a zombie child until the supervisor reaps it.
        with suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                living.add(child.pid)
    for name in os.listdir(folder):
        match = LIVE_GAUGE_FILE.fullmatch(name)
        if match is not None and int(match[1]) not in living:
            with suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))


class SiblingWorkersCollector:
    """`process_*` memory and CPU summed over every worker of this server.

    The standard process collector would describe only the worker that happens to answer
    the scrape; the workers are the children of one supervisor, so sum over those.
    """

    def collect(self) -> list[Any]:
        workers = psutil.Process(os.getppid()).children()
        rss = cpu = 0.0
        for worker in workers:
            try:
                rss += worker.memory_info().rss
                times = worker.cpu_times()
                cpu += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return [
            GaugeMetricFamily(
                "process_resident_memory_bytes", "Resident memory of all workers.", value=rss
            ),
            CounterMetricFamily(
                "process_cpu_seconds", "CPU time of all workers (user + system).", value=cpu
            ),
        ]
