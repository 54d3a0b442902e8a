"""The running service: its parts put together, started and stopped.

Each concern is a module of its own: loading the variants (service/loading.py), the
traffic split (service/traffic.py), the shadow and rollouts (service/canary.py), the
request metrics (service/request_metrics.py). `Service` composes them, serves the request
path its `Serving` (service/serving.py), and runs the background loops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from service.canary import Canary
from service.drift import DriftMetrics, DriftMonitor
from service.forcing import ForcingPolicy
from service.guards import FeatureRangeGuard
from service.loading import VariantLoader
from service.metrics import FLUSH_INTERVAL_S, Metrics, workers_with_all_variants
from service.receiving import BodyBudget, BodyDeadlines
from service.request_metrics import RequestMetrics
from service.rollout.controller import TICK_S
from service.settings import Settings
from service.store import Manifest, load_manifest
from service.supervision import LoopHealth, supervise
from service.traffic import Traffic

# How often deadlines nothing else watches are enforced: slow bodies, requests stuck
# behind a hung model call. A late answer comes at most this much after its deadline.
WATCHDOG_PERIOD_S = 0.1


class Service:
    """The running service, created once per process by the app: the request path's
    `Serving`, and the parts the lifespan, the admin routes and rollouts use (`loader`,
    `traffic`, `canary`, `drift`)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = LoopHealth(
            metrics.background_loop_healthy,
            metrics.background_loop_failures,
            settings.loop_unready_after_s,
        )
        self.manifest: Manifest = load_manifest(settings.store)
        self.row_screen = FeatureRangeGuard(self.manifest, settings.max_feature_range_factor)
        self.drift = DriftMonitor(
            self.manifest,
            DriftMetrics(metrics.feature_out_of_range, metrics.input_psi),
            enabled=settings.drift,
            window_rows=settings.drift_window_rows,
            min_rows=settings.drift_min_rows,
        )
        self.loader = VariantLoader(settings, self.manifest, metrics, self.row_screen, self.drift)
        self.names = self.loader.names
        self.variants = self.loader.variants
        self.traffic = Traffic(self.names, self.manifest, settings, metrics)
        self.body_deadlines = BodyDeadlines(settings.body_timeout_s)
        budget = self.body_budget = BodyBudget(settings.max_inflight_body_bytes)
        metrics.folding.gauge(metrics.inflight_body_bytes, lambda: budget.held)
        requests = RequestMetrics(metrics)
        canary = self.canary = Canary(settings, metrics, self.health, self.traffic, self.variants)
        self.forcing = ForcingPolicy(
            settings.force_variants,
            self.names,
            settings.admin_token,
            lambda: canary.rollouts.guarded,
        )
        self._tasks: list[asyncio.Task[None]] = []
        # What a request calls, as the parts' own methods: nothing in between.
        self.choose = self.traffic.router.choose
        self.split_variants = self.traffic.variants
        self.observe_request = requests.observe_request
        self.count_rejection = requests.count_rejection
        self.publish_inflight = requests.publish_inflight
        self.record_evidence = canary.record_evidence
        self.mirror = canary.mirror

    @property
    def ready(self) -> bool:
        """Every variant loaded and warmed."""
        return self.loader.ready

    @property
    def load_error(self) -> str | None:
        """Why loading failed, if it did."""
        return self.loader.load_error

    async def start(self) -> None:
        """Begin loading in the background; called from the app's lifespan. Every loop
        is supervised (service/supervision.py): it logs and survives its exceptions."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.loader.load(), name="load-models"))
        loops: list[tuple[str, Callable[[], Awaitable[None] | None], float]] = [
            ("metrics", self.metrics.folding.flush, FLUSH_INTERVAL_S),
            ("watchdog", self._watch, WATCHDOG_PERIOD_S),
            ("rollout", self.canary.rollouts.tick, TICK_S),
        ]
        if (split := self.traffic.split).file is not None:
            loops.append(("split", split.poll, self.settings.split_poll_s))
        if self.drift.enabled:
            loops.append(("drift", self.drift.step, self.settings.drift_interval_s))
        for name, step, period_s in loops:
            task = supervise(name, step, period_s, self.health)
            self._tasks.append(loop.create_task(task, name=f"loop-{name}"))

    def not_ready(self) -> str | None:
        """Why the service cannot take every request yet, or None once it can: `/readyz`
        and the protocols' readiness routes answer from it."""
        if not self.ready:
            return f"loading failed: {self.load_error}" if self.load_error else "loading"
        if unavailable := self.loader.unavailable:
            return f"unavailable: {'; '.join(unavailable)}"
        if failing := self.health.unready():
            return "; ".join(failing)
        workers = self.settings.workers
        if workers > 1 and (loaded := workers_with_all_variants(self.names)) < workers:
            return f"{loaded} of {workers} workers loaded"
        return None

    async def stop(self) -> None:
        """Finish admitted requests, then release the runners: every batcher at once,
        within one shared grace period."""
        for task in self._tasks:
            task.cancel()
        await self.canary.rollouts.stop()
        await self.loader.close(self.settings.graceful_shutdown_s)
        self.discard()
        self.metrics.folding.flush()

    def discard(self) -> None:
        """Remove what building this service created on disk (a private rollout folder):
        after `stop`, or for a service built only to check the settings, as
        `perfserve serve --workers N` does once before starting its workers."""
        self.canary.discard()

    def _watch(self) -> None:
        """Enforce the deadlines nothing else watches: slow bodies, hung model calls."""
        now = time.perf_counter()
        self.body_deadlines.sweep(now)
        for variant in self.variants.values():
            variant.batcher.reap(now)
