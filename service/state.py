"""The running service: loaded variants, their batchers, the router, and readiness.

Models load in the background once the server is up, so `/healthz` answers at once and
`/readyz` turns ready only when every variant is loaded and warmed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import psutil
import threadpoolctl
from pydantic import ValidationError

from perfserve_common.usage import UsageError, validation_message
from service.batching import BatchResult, MicroBatcher
from service.cache import RowCache
from service.drift import DriftMetrics, DriftMonitor
from service.faults import FaultyRunner, latency_s
from service.forcing import ForcingPolicy
from service.guards import FeatureRangeGuard
from service.metrics import FLUSH_INTERVAL_S, FoldedCounter, Metrics, workers_with_all_variants
from service.receiving import BodyBudget, BodyDeadlines
from service.rollout.controller import TICK_S
from service.rollout.replica import RolloutReplica
from service.routing import Router, TrafficSplit, UnknownVariant
from service.runtimes import Runner, open_variant
from service.serving import LoadedVariant
from service.settings import Settings
from service.shadow import Compared, ShadowMirror
from service.shared_split import SharedSplit
from service.store import Manifest, StoreError, VariantInfo, load_holdout, load_manifest
from service.supervision import LoopHealth, supervise

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
        self.names = self._variant_names()
        self._check_faults()
        try:
            self.router = Router(self.names, self._initial_split(), settings.routing_seed)
        except UnknownVariant as error:
            raise UsageError(f"--traffic/--shadow: {error}") from None
        self.choose = self.router.choose
        """The variant for one request (`Serving.choose`): the router's own method, so a
        request pays no call in between."""
        self.split = SharedSplit(self.router, settings.split_file, self._split_changed)
        self._start_split()
        self.variants: dict[str, LoadedVariant] = {}
        self.body_deadlines = BodyDeadlines(settings.body_timeout_s)
        budget = self.body_budget = BodyBudget(settings.max_inflight_body_bytes)
        metrics.folding.gauge(metrics.inflight_body_bytes, lambda: budget.held)
        self.ready = False
        self.load_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._rejections: dict[str, FoldedCounter] = {}
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
            self.set_split,
            self.split_version,
            settings.rollout_takeover_s,
        )
        self.forcing = ForcingPolicy(
            settings.force_variants, self.names, settings.admin_token, lambda: rollouts.guarded
        )

    @property
    def inline(self) -> bool:
        """Whether batches run on the event loop (see `Settings.inference`)."""
        if self.settings.inference == "auto":
            return len(os.sched_getaffinity(0)) == 1
        return self.settings.inference == "inline"

    async def start(self) -> None:
        """Begin loading in the background; called from the app's lifespan. Every loop
        is supervised (service/supervision.py): it logs and survives its exceptions."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._load(), name="load-models"))
        loops: list[tuple[str, Callable[[], Awaitable[None] | None], float]] = [
            ("metrics", self.metrics.folding.flush, FLUSH_INTERVAL_S),
            ("watchdog", self._watch, WATCHDOG_PERIOD_S),
            ("rollout", self.rollouts.tick, TICK_S),
        ]
        if self.split.file is not None:
            loops.append(("split", self.split.poll, self.settings.split_poll_s))
        if self.drift.enabled:
            loops.append(("drift", self.drift.step, self.settings.drift_interval_s))
        for name, step, period_s in loops:
            task = supervise(name, step, period_s, self.health)
            self._tasks.append(loop.create_task(task, name=f"loop-{name}"))

    @property
    def unavailable(self) -> list[str]:
        """Loaded variants that cannot answer now, each with the reason."""
        return [
            f"{name}: {reason}"
            for name, variant in self.variants.items()
            if (reason := variant.batcher.unavailable) is not None
        ]

    def not_ready(self) -> str | None:
        """Why the service cannot take every request yet, or None once it can: `/readyz`
        and the protocols' readiness routes answer from it."""
        if not self.ready:
            return f"loading failed: {self.load_error}" if self.load_error else "loading"
        if unavailable := self.unavailable:
            return f"unavailable: {'; '.join(unavailable)}"
        if failing := self.health.unready():
            return "; ".join(failing)
        workers = self.settings.workers
        if workers > 1 and (loaded := workers_with_all_variants(self.names)) < workers:
            return f"{loaded} of {workers} workers loaded"
        return None

    def split_variants(self) -> list[str]:
        """The variants the live split names, whatever their weight."""
        return list(self.router.split.weights)

    def publish_inflight(self, read: Callable[[], int]) -> None:
        """The one owner of `perfserve_inflight_requests`: set from `read()` (the request
        handler's own count) at each flush."""
        self.metrics.folding.gauge(self.metrics.inflight, read)

    async def stop(self) -> None:
        """Finish admitted requests, then release the runners: every batcher at once,
        within one shared grace period."""
        for task in self._tasks:
            task.cancel()
        await self.rollouts.stop()
        grace = self.settings.graceful_shutdown_s
        await asyncio.gather(*(v.batcher.close(grace) for v in self.variants.values()))
        self.discard()
        self.metrics.folding.flush()

    def discard(self) -> None:
        """Remove what building this service created on disk (a private rollout folder):
        after `stop`, or for a service built only to check the settings, as
        `perfserve serve --workers N` does once before starting its workers."""
        if self._private_folder is not None:
            shutil.rmtree(self._private_folder, ignore_errors=True)

    def set_split(self, split: TrafficSplit) -> int:
        """Apply a new split here and in every process following the split file; its
        version. Raises UnknownVariant for a variant this service does not serve."""
        version = self.split.set(split)
        log.warning(
            "traffic split version %d set: weights %s, shadow %s",
            version,
            split.weights,
            split.shadow,
        )
        return version

    def split_version(self) -> int:
        """The version of the split this process routes by."""
        return self.split.current[1]

    def mirror(
        self, served: str, rows: np.ndarray, result: BatchResult, evidence: bool = False
    ) -> None:
        """After `served` answered a routed request: a sampled copy to the shadow variant
        (see service/shadow.py); with `evidence`, compared rows also feed the running
        rollout's evidence."""
        shadow = self.router.split.shadow
        if shadow is None or shadow == served or (loaded := self.variants.get(shadow)) is None:
            return
        on_compared = self._record_comparison if evidence else None
        self.shadow.mirror(loaded.batcher, rows, result, on_compared)

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
        if self.split.file is not None and not self.split.read_only:
            path = self.split.file.path
            return path.with_name(f"{path.stem}.rollout")
        name = f"perfserve-rollout-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._private_folder = Path(tempfile.gettempdir()) / name
        return self._private_folder

    def _variant_names(self) -> list[str]:
        available = list(self.manifest.variants)
        wanted = self.settings.variants or available
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise StoreError(f"--variants {unknown}: not in the store; it has {available}")
        return wanted

    def _check_faults(self) -> None:
        for name, faults in self.settings.inject.items():
            if name not in self.names:
                raise UsageError(f"--inject names variant {name!r}; loaded: {self.names}")
            if "flip-rate" in faults and self.manifest.task != "classification":
                raise UsageError("--inject flip-rate needs a classifier; this model is not one")

    def _initial_split(self) -> TrafficSplit:
        default = (
            self.manifest.reference if self.manifest.reference in self.names else self.names[0]
        )
        weights = self.settings.traffic or {default: 1.0}
        return TrafficSplit(weights=weights, shadow=self.settings.shadow)

    def _start_split(self) -> None:
        """Start from the split file's split when it has one (see service/shared_split.py)."""
        path = self.settings.split_file
        try:
            from_file = self.split.start(self.router.split)
        except ValidationError as error:
            raise UsageError(f"--split-file {path}: {validation_message(error, str)}") from None
        except (OSError, ValueError) as error:
            raise UsageError(f"--split-file {path}: {error}") from None
        if from_file and self.settings.traffic is not None:
            log.warning("following the split in %s; --traffic is ignored", path)

    async def _load(self) -> None:
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, self._load_runners)
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("loading the model store failed: %s", self.load_error)
            return
        for name, (runner, memory) in loaded.items():
            drift = self.drift.for_variant(name)
            batcher = MicroBatcher(
                name,
                runner,
                self.metrics.for_variant(name),
                max_batch_size=self.settings.max_batch_size,
                max_batch_delay_s=self.settings.max_batch_delay_ms / 1000,
                max_queue=self.settings.max_queue,
                # A model call longer than a request may wait can no longer answer anyone.
                hung_after_s=self.settings.request_timeout_ms / 1000,
                inline=self.inline,
                screen=self.row_screen.bad_rows,
                observe=None if drift is None else drift.observe,
                added_latency_s=latency_s(self.settings.inject.get(name, {})),
                queue_deadline_s=self.settings.queue_deadline_ms / 1000 or math.inf,
            )
            batcher.start()
            info = self.manifest.variants[name]
            self.variants[name] = LoadedVariant(info, batcher, memory, self._cache(info))
        self._publish_variants()
        self._settle_collector()
        self.ready = True
        log.info("ready: %s", ", ".join(self.names))

    def _settle_collector(self) -> None:
        """Ready the cyclic garbage collector for serving (docs/PERFORMANCE.md, "The
        cyclic collector under a backlog"). Objects created so far (models, app, routes)
        live as long as the process: frozen, no collection scans them again, where they
        would show up as tail-latency spikes. Then a collection comes when live objects
        have grown by `gc_threshold` instead of 700, which a backlog does not reach: the
        objects of the requests waiting in it are freed by reference counting when they
        are answered, not scanned and kept first."""
        gc.collect()
        gc.freeze()
        self.metrics.gc_frozen.set(gc.get_freeze_count())
        _, *older = gc.get_threshold()
        gc.set_threshold(self.settings.gc_threshold, *older)

    def _cache(self, info: VariantInfo) -> RowCache | None:
        """The row cache of one loaded model, or None when `cache_rows` is 0. It belongs
        to the model it was created with: another version starts with its own, empty."""
        if not self.settings.cache_rows:
            return None
        metrics = self.metrics.for_cache(info.name)
        return RowCache(info.name, info.model_version, self.settings.cache_rows, metrics)

    def _load_runners(self) -> dict[str, tuple[Runner, int]]:
        """Load and warm every variant, measuring the resident memory each one adds."""
        settings = self.settings
        threadpoolctl.threadpool_limits(settings.runtime_threads)
        holdout = load_holdout(settings.store, self.manifest).features
        process = psutil.Process()
        loaded: dict[str, tuple[Runner, int]] = {}
        for position, name in enumerate(self.names):
            info = self.manifest.variants[name]
            before = process.memory_info().rss
            runner: Runner = open_variant(
                settings.store, info, self.manifest.task, settings.runtime_threads
            )
            _warm_up(runner, holdout, settings.max_batch_size)
            memory = max(0, process.memory_info().rss - before)
            if faults := settings.inject.get(name):
                seed = None if settings.routing_seed is None else [settings.routing_seed, position]
                runner = FaultyRunner(runner, faults, self.manifest.classes or [], seed)
            loaded[name] = (runner, memory)
        return loaded

    def _split_changed(self, split: TrafficSplit, version: int) -> None:
        for name in self.names:
            self.metrics.traffic_weight.labels(name).set(split.weights.get(name, 0.0))
        self.metrics.split_version.set(version)
        log.info("following traffic split version %d", version)

    def _publish_variants(self) -> None:
        for name, variant in self.variants.items():
            info = variant.info
            self.metrics.model_memory.labels(name).set(variant.memory_bytes)
            self.metrics.runners.labels(name).set(1)
            self.metrics.model_info.labels(
                name, info.model_version, info.format, info.precision
            ).set(1)
        for name, faults in self.settings.inject.items():
            for kind, value in faults.items():
                self.metrics.injected_fault.labels(name, kind).set(value)

    def _watch(self) -> None:
        """Enforce the deadlines nothing else watches: slow bodies, hung model calls."""
        now = time.perf_counter()
        self.body_deadlines.sweep(now)
        for variant in self.variants.values():
            variant.batcher.reap(now)


def _warm_up(runner: Runner, holdout: np.ndarray, max_batch_size: int) -> None:
    """Run the sizes the server will see, so first requests pay no allocation or JIT cost."""
    for size in sorted({1, min(8, max_batch_size), max_batch_size}):
        rows = np.resize(holdout, (size, holdout.shape[1])).astype(np.float32)
        for _ in range(3):
            runner.predict(rows)
