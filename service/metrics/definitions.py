"""Every Prometheus metric of the service, defined once.

Names are a contract with the Grafana dashboard, the recording rules and the sweep,
which reads `/metrics` deltas; change them here and there together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector

from service.metrics.folding import FoldedCounter, FoldedHistogram, Folding
from service.metrics.process import ProcessMetrics, collector_time
from service.metrics.rendering import Renderer

# Sub-millisecond to seconds: the hot path answers in well under a millisecond, an
# overloaded queue in seconds; the defaults (5 ms and up) would hide the first.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075,
    0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("preprocess", "infer", "postprocess")
# How far the candidate's probability for the served label is from the baseline's.
DIFFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def multiprocess_mode() -> bool:
    """True when worker processes share metrics through files (several workers)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class Metrics:
    """The service's metrics, registered on one registry (a fresh one per app in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.folding = Folding()
        self.renderer = Renderer(registry)
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
            (
                "Time per stage: preprocess (HTTP and JSON parsing, from the first byte), "
                "infer (batch), postprocess (encode)."
            ),
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
        self.inflight_body_bytes = Gauge(
            "perfserve_inflight_body_bytes",
            "Prediction body bytes being read now, counted against max_inflight_body_bytes "
            "per worker (declared lengths; the largest allowed for a body without one).",
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
            "Requests refused or failed: queue_full, queue_deadline (queued past "
            "queue_deadline_ms, refused before model work), deadline, invalid_input, too_large, "
            "unknown_variant, not_ready, shutting_down, model_error, unavailable, slow_client, "
            "body_budget (the worker holds its budget of request body bytes), "
            "unauthorized (an admin request without the right token), forced_variant (a "
            "variant named that a client may not force without the admin token).",
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
        self.rollout_controller_stale = Gauge(
            "perfserve_rollout_controller_stale",
            "1 while an unfinished rollout's controller has stopped or written no heartbeat "
            "for 5 s (a replica takes it over); 0 otherwise.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rollout_heartbeat_age = Gauge(
            "perfserve_rollout_heartbeat_age_seconds",
            "Seconds since the unfinished rollout's controller last wrote its state (0: none).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.rollout_verdicts = Counter(
            "perfserve_rollout_verdicts",
            "Gate verdicts of the rollout judge, by gate and outcome (pass, fail, inconclusive).",
            ["gate", "outcome"],
            registry=registry,
        )
        self.background_loop_healthy = Gauge(
            "perfserve_background_loop_healthy",
            "1 while a background loop (split, rollout, metrics, watchdog, shadow) runs "
            "cleanly, 0 while it keeps failing (its errors are in the log); with several "
            "workers, the worst of them.",
            ["loop"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.background_loop_failures = Counter(
            "perfserve_background_loop_failures",
            "Runs of a background loop that raised; the loop carries on.",
            ["loop"],
            registry=registry,
        )
        self.feature_out_of_range = Counter(
            "perfserve_feature_out_of_range",
            "Computed feature values below the training minimum or above the training "
            "maximum the store recorded, per variant and feature (series appear with the "
            "first such value); counted by the drift loop (service/drift.py).",
            ["variant", "feature"],
            registry=registry,
        )
        self.input_psi = Gauge(
            "perfserve_input_psi",
            "Population stability index of the last drift_window_rows rows each variant "
            'computed against the training histogram, per feature, and feature="all" the '
            "mean over features; below 0.1 stable, above 0.2 act (service/drift.py). With "
            "several workers, the highest of their windows.",
            ["variant", "feature"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.cache_requests = Counter(
            "perfserve_cache_requests",
            "Prediction requests looked up in a variant's row cache (--cache-rows), by "
            "outcome: hit (answered from the cache, no model call) or miss.",
            ["variant", "outcome"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "perfserve_cache_evictions",
            "Rows dropped from a variant's row cache, least recently used first, to stay "
            "within --cache-rows.",
            ["variant"],
            registry=registry,
        )
        self.cache_rows = Gauge(
            "perfserve_cache_rows",
            "Rows held in each variant's row cache (summed over workers).",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_bytes = Gauge(
            "perfserve_cache_bytes",
            "Memory held by each variant's row cache: keys, answers and the dictionary's "
            "own entries (summed over workers).",
            ["variant"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "perfserve_model_info",
            "Always 1; labels describe each loaded variant.",
            ["variant", "model_version", "format", "precision"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.gc_frozen = Gauge(
            "perfserve_gc_frozen_objects",
            "Objects of the start-up heap (models, app, routes) the cyclic garbage "
            "collector no longer scans (gc.freeze once the models are loaded; 0 before).",
            registry=registry,
            multiprocess_mode="max",
        )

    def for_cache(self, variant: str) -> CacheMetrics:
        """One variant's row-cache metrics, folded like the rest of the hot path."""
        fold = self.folding
        return CacheMetrics(
            hits=fold.counter(self.cache_requests.labels(variant, "hit")),
            misses=fold.counter(self.cache_requests.labels(variant, "miss")),
            evictions=fold.counter(self.cache_evictions.labels(variant)),
            rows=self.cache_rows.labels(variant),
            bytes=self.cache_bytes.labels(variant),
            folding=fold,
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
    folding: Folding


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    hits: FoldedCounter
    misses: FoldedCounter
    evictions: FoldedCounter
    rows: Any
    """Set from the cache's size at each flush (see `Folding.gauge`), as is `bytes`."""
    bytes: Any
    folding: Folding


def new_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors, and the GC's time."""
    # `*_created` series double the scrape for no use on a dashboard or in the sweep.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    # Described collectors can be rendered alone (`/metrics?name[]=`).
    registry = CollectorRegistry(auto_describe=True)
    if not multiprocess_mode():
        ProcessMetrics(registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(collector_time())
    return registry
