"""The running service: its variants (loaded by service/loading.py), the traffic split
(service/traffic.py), and readiness."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from service.batching import BatchResult
from service.drift import DriftMetrics, DriftMonitor
from service.forcing import ForcingPolicy
from service.guards import FeatureRangeGuard
from service.loading import VariantLoader
from service.metrics import FLUSH_INTERVAL_S, Metrics, workers_with_all_variants
from service.receiving import BodyBudget, BodyDeadlines
from service.request_metrics import RequestMetrics
from service.rollout.controller import TICK_S
from service.rollout.replica import RolloutReplica
from service.settings import Settings
from service.shadow import Compared, ShadowMirror
from service.store import Manifest, load_manifest
from service.supervision import LoopHealth, supervise
from service.traffic import Traffic

log = logging.getLogger("perfserve")

# How often deadlines nothing else watches are enforced: slow bodies, requests stuck
# behind a hung model call. A late answer comes at most this much after its deadline.
WATCHDOG_PERIOD_S = 0.1


class Service:
    """The running service, created once per process: the request path's `Serving`
    (service/serving.py), and what only the lifespan, the admin routes and rollouts use."""

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
        self.traffic = Traffic(self.names, self.manifest, settings, metrics)
        self.variants = self.loader.variants
        self.body_deadlines = BodyDeadlines(settings.body_timeout_s)
        budget = self.body_budget = BodyBudget(settings.max_inflight_body_bytes)
        metrics.folding.gauge(metrics.inflight_body_bytes, lambda: budget.held)
        self._tasks: list[asyncio.Task[None]] = []
        requests = RequestMetrics(metrics)
        self.shadow = ShadowMirror(
            metrics,
            settings.shadow_share,
            settings.shadow_tolerance,
            settings.request_timeout_ms / 1000,
            settings.routing_seed,
            self.health,
        )
        self._private_folder: Path | None = None
        rollouts = self.rollouts = RolloutReplica(
            self._rollout_folder(),
            metrics,
            settings.rollout_max_samples,
            settings.rollout_samples_per_user,
            self.traffic.set,
            self.traffic.version,
            settings.rollout_takeover_s,
        )
        self.forcing = ForcingPolicy(
            settings.force_variants, self.names, settings.admin_token, lambda: rollouts.guarded
        )
        # What a request calls, as the parts' own methods: nothing in between.
        self.choose = self.traffic.router.choose
        self.split_variants = self.traffic.variants
        self.observe_request = requests.observe_request
        self.count_rejection = requests.count_rejection
        self.publish_inflight = requests.publish_inflight

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
            ("rollout", self.rollouts.tick, TICK_S),
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
        await self.rollouts.stop()
        await self.loader.close(self.settings.graceful_shutdown_s)
        self.discard()
        self.metrics.folding.flush()

    def discard(self) -> None:
        """Remove what building this service created on disk (a private rollout folder):
        after `stop`, or for a service built only to check the settings, as
        `perfserve serve --workers N` does once before starting its workers."""
        if self._private_folder is not None:
            shutil.rmtree(self._private_folder, ignore_errors=True)

    def mirror(
        self, served: str, rows: np.ndarray, result: BatchResult, evidence: bool = False
    ) -> None:
        """After `served` answered a routed request: a sampled copy to the shadow variant
        (see service/shadow.py); with `evidence`, compared rows also feed the running
        rollout's evidence."""
        shadow = self.traffic.router.split.shadow
        if shadow is None or shadow == served or (loaded := self.variants.get(shadow)) is None:
            return
        on_compared = self._record_comparison if evidence else None
        self.shadow.mirror(loaded.batcher, rows, result, on_compared)

    def record_evidence(
        self, variant: str, user_id: bytes | None, elapsed_s: float, status: int
    ) -> bool:
        """A request the split routed to `variant`, as the running rollout's evidence when
        one runs and this user's share of the window is not used up (see
        `SampleRecorder.admit`); whether it counted."""
        recorder = self.rollouts.recorder
        if not (recorder.active and recorder.admit(user_id)):
            return False
        recorder.record(variant, elapsed_s, status)
        return True

    def _record_comparison(self, compared: Compared) -> None:
        self.rollouts.recorder.compare(*compared)

    def _rollout_folder(self) -> Path:
        """Next to the shared split file, so every replica following it shares the rollout;
        a lone process without one, or one that only follows a read-only split (which no
        rollout can change), keeps its rollout in a private folder, named here but created
        only when a rollout writes to it (a Service built only to check settings, as
        `serve --workers N` does first, leaves nothing behind) and removed at stop."""
        split = self.traffic.split
        if split.file is not None and not split.read_only:
            path = split.file.path
            return path.with_name(f"{path.stem}.rollout")
        name = f"perfserve-rollout-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._private_folder = Path(tempfile.gettempdir()) / name
        return self._private_folder

    def _watch(self) -> None:
        """Enforce the deadlines nothing else watches: slow bodies, hung model calls."""
        now = time.perf_counter()
        self.body_deadlines.sweep(now)
        for variant in self.variants.values():
            variant.batcher.reap(now)
