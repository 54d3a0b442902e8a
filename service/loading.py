"""Loading the variants: each one's runner opened and warmed, its batcher, its row cache.

Models load in the background once the server is up (`VariantLoader.load`, started by
`Service.start`), so `/healthz` answers at once and `/readyz` turns ready only when every
variant is loaded and warmed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os

import numpy as np
import psutil
import threadpoolctl

from perfserve_common.usage import UsageError
from service.batching import MicroBatcher
from service.cache import RowCache
from service.drift import DriftMonitor
from service.faults import FaultyRunner, latency_s
from service.guards import FeatureRangeGuard
from service.metrics import Metrics
from service.runtimes import Runner, open_variant
from service.serving import LoadedVariant
from service.settings import Settings
from service.store import Manifest, StoreError, VariantInfo, load_holdout

log = logging.getLogger("perfserve")


class VariantLoader:
    """The variants this process serves: named and checked when built, loaded by `load`.

    `variants` is one dict for the process's life, filled once loading ends (the request
    path keeps a reference to it, see `Serving.variants`)."""

    def __init__(
        self,
        settings: Settings,
        manifest: Manifest,
        metrics: Metrics,
        row_screen: FeatureRangeGuard,
        drift: DriftMonitor,
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.metrics = metrics
        self.row_screen = row_screen
        self.drift = drift
        self.names = self._variant_names()
        self._check_faults()
        self.variants: dict[str, LoadedVariant] = {}
        self.ready = False
        self.load_error: str | None = None

    @property
    def inline(self) -> bool:
        """Whether batches run on the event loop (see `Settings.inference`)."""
        if self.settings.inference == "auto":
            return len(os.sched_getaffinity(0)) == 1
        return self.settings.inference == "inline"

    @property
    def unavailable(self) -> list[str]:
        """Loaded variants that cannot answer now, each with the reason."""
        return [
            f"{name}: {reason}"
            for name, variant in self.variants.items()
            if (reason := variant.batcher.unavailable) is not None
        ]

    async def load(self) -> None:
        """Load and warm every variant off the event loop, then start their batchers; a
        failure is kept in `load_error` (and said by `/readyz`) instead of raised."""
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, self._load_runners)
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("loading the model store failed: %s", self.load_error)
            return
        for name, (runner, memory) in loaded.items():
            batcher = self._batcher(name, runner)
            batcher.start()
            info = self.manifest.variants[name]
            self.variants[name] = LoadedVariant(info, batcher, memory, self._cache(info))
        self._publish_variants()
        self._settle_collector()
        self.ready = True
        log.info("ready: %s", ", ".join(self.names))

    async def close(self, grace_s: float) -> None:
        """Finish the admitted requests and release the runners: every batcher at once,
        within one shared grace period."""
        await asyncio.gather(*(v.batcher.close(grace_s) for v in self.variants.values()))

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

    def _batcher(self, name: str, runner: Runner) -> MicroBatcher:
        settings = self.settings
        drift = self.drift.for_variant(name)
        return MicroBatcher(
            name,
            runner,
            self.metrics.for_variant(name),
            max_batch_size=settings.max_batch_size,
            max_batch_delay_s=settings.max_batch_delay_ms / 1000,
            max_queue=settings.max_queue,
            # A model call longer than a request may wait can no longer answer anyone.
            hung_after_s=settings.request_timeout_ms / 1000,
            inline=self.inline,
            screen=self.row_screen.bad_rows,
            observe=None if drift is None else drift.observe,
            added_latency_s=latency_s(settings.inject.get(name, {})),
            queue_deadline_s=settings.queue_deadline_ms / 1000 or math.inf,
        )

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


def _warm_up(runner: Runner, holdout: np.ndarray, max_batch_size: int) -> None:
    """Run the sizes the server will see, so first requests pay no allocation or JIT cost."""
    for size in sorted({1, min(8, max_batch_size), max_batch_size}):
        rows = np.resize(holdout, (size, holdout.shape[1])).astype(np.float32)
        for _ in range(3):
            runner.predict(rows)
