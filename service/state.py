"""The running service: loaded variants, their batchers, the router, and readiness.

Models load in the background once the server is up, so `/healthz` answers at once and
`/readyz` turns ready only when every variant is loaded and warmed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import threadpoolctl

from service.batching import BatchResult, MicroBatcher
from service.metrics import Metrics
from service.rollout.replica import RolloutReplica
from service.routing import Router, SharedSplitFile, TrafficSplit
from service.runtimes import Runner, SlowedRunner, open_runner
from service.settings import Settings
from service.shadow import Compared, ShadowMirror
from service.store import Manifest, StoreError, VariantInfo, load_holdout, load_manifest

log = logging.getLogger("perfserve")

SPLIT_POLL_S = 0.2


@dataclass
class LoadedVariant:
    info: VariantInfo
    batcher: MicroBatcher
    memory_bytes: int


class Service:
    """Everything a request handler needs, created once per process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.manifest: Manifest = load_manifest(settings.store)
        self.names = self._variant_names()
        self.router = Router(self.names, self._initial_split(), settings.routing_seed)
        self.split_file = SharedSplitFile(settings.split_file) if settings.split_file else None
        self.variants: dict[str, LoadedVariant] = {}
        self.ready = False
        self.load_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.shadow = ShadowMirror(
            metrics,
            settings.shadow_share,
            settings.shadow_tolerance,
            settings.request_timeout_ms / 1000,
            settings.routing_seed,
        )
        self._private_folder: Path | None = None
        self.rollouts = RolloutReplica(
            self._rollout_folder(),
            metrics,
            settings.rollout_max_samples,
            self._apply_split,
            self._split_version,
        )

    @property
    def inline(self) -> bool:
        """Whether batches run on the event loop (see `Settings.inference`)."""
        if self.settings.inference == "auto":
            return len(os.sched_getaffinity(0)) == 1
        return self.settings.inference == "inline"

    async def start(self) -> None:
        """Begin loading in the background; called from the app's lifespan."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._load(), name="load-models"))
        if self.split_file is not None:
            self._tasks.append(loop.create_task(self._follow_split_file(), name="follow-split"))
        self._tasks.append(loop.create_task(self.rollouts.follow(), name="follow-rollout"))

    async def stop(self) -> None:
        """Finish admitted requests, then release the runners."""
        for task in self._tasks:
            task.cancel()
        await self.rollouts.stop()
        for variant in self.variants.values():
            await variant.batcher.close(self.settings.graceful_shutdown_s)
        if self._private_folder is not None:
            shutil.rmtree(self._private_folder, ignore_errors=True)

    def set_split(self, split: TrafficSplit) -> None:
        """Apply a new split here and, with several workers, in every worker."""
        self.router.update(split)
        self._publish_weights()
        if self.split_file is not None:
            self.split_file.write(split)

    def _apply_split(self, split: TrafficSplit) -> int:
        self.set_split(split)
        return self._split_version()

    def _split_version(self) -> int:
        return 0

    def mirror(self, served: str, rows: np.ndarray, result: BatchResult) -> None:
        """After `served` answered a routed request: a sampled copy to the shadow variant
        (see service/shadow.py); compared rows also feed a running rollout's evidence."""
        shadow = self.router.split.shadow
        if shadow is None or shadow == served or (loaded := self.variants.get(shadow)) is None:
            return
        recorder = self.rollouts.recorder
        on_compared = self._record_comparison if recorder.active else None
        self.shadow.mirror(loaded.batcher, rows, result, on_compared)

    def _record_comparison(self, compared: Compared) -> None:
        self.rollouts.recorder.compare(*compared)

    def _rollout_folder(self) -> Path:
        """Next to the shared split file, so every replica following it shares the rollout;
        a lone process without one keeps its rollout in a private folder."""
        if self.split_file is not None:
            path = self.split_file.path
            return path.with_name(f"{path.stem}.rollout")
        self._private_folder = Path(tempfile.mkdtemp(prefix="perfserve-rollout-"))
        return self._private_folder

    def _variant_names(self) -> list[str]:
        available = list(self.manifest.variants)
        wanted = self.settings.variants or available
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise StoreError(f"variant(s) {unknown} are not in the store; it has {available}")
        return wanted

    def _initial_split(self) -> TrafficSplit:
        default = (
            self.manifest.reference if self.manifest.reference in self.names else self.names[0]
        )
        weights = self.settings.traffic or {default: 1.0}
        return TrafficSplit(weights=weights, shadow=self.settings.shadow)

    async def _load(self) -> None:
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, self._load_runners)
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("loading the model store failed: %s", self.load_error)
            return
        for name, (runner, memory) in loaded.items():
            batcher = MicroBatcher(
                name,
                runner,
                self.metrics.for_variant(name),
                max_batch_size=self.settings.max_batch_size,
                max_batch_delay_s=self.settings.max_batch_delay_ms / 1000,
                max_queue=self.settings.max_queue,
                inline=self.inline,
            )
            batcher.start()
            self.variants[name] = LoadedVariant(self.manifest.variants[name], batcher, memory)
        self._publish_weights()
        self._publish_variants()
        # Objects created so far live as long as the process: take them out of the cyclic
        # collector's scans, which otherwise show up as tail-latency spikes under load.
        gc.collect()
        gc.freeze()
        self.ready = True
        log.info("ready: %s", ", ".join(self.names))

    def _load_runners(self) -> dict[str, tuple[Runner, int]]:
        """Load and warm every variant, measuring the resident memory each one adds."""
        settings = self.settings
        threadpoolctl.threadpool_limits(settings.runtime_threads)
        holdout = load_holdout(settings.store, self.manifest).features
        process = psutil.Process()
        loaded: dict[str, tuple[Runner, int]] = {}
        for name in self.names:
            info = self.manifest.variants[name]
            before = process.memory_info().rss
            runner: Runner = open_runner(
                settings.store / info.path,
                info.format,
                self.manifest.task,
                settings.runtime_threads,
            )
            _warm_up(runner, holdout, settings.max_batch_size)
            memory = max(0, process.memory_info().rss - before)
            if settings.inject_latency_ms > 0:
                runner = SlowedRunner(runner, settings.inject_latency_ms / 1000)
            loaded[name] = (runner, memory)
        return loaded

    def _publish_weights(self) -> None:
        for name in self.names:
            self.metrics.traffic_weight.labels(name).set(self.router.weight(name))

    def _publish_variants(self) -> None:
        for name, variant in self.variants.items():
            info = variant.info
            self.metrics.model_memory.labels(name).set(variant.memory_bytes)
            self.metrics.runners.labels(name).set(1)
            self.metrics.model_info.labels(
                name, info.model_version, info.format, info.precision
            ).set(1)

    async def _follow_split_file(self) -> None:
        assert self.split_file is not None
        while True:
            await asyncio.sleep(SPLIT_POLL_S)
            try:
                split = self.split_file.read_if_changed()
                if split is not None:
                    self.router.update(split)
                    self._publish_weights()
            except Exception as error:  # a torn or hand-edited file must not stop the worker
                log.warning("ignoring traffic split file %s: %s", self.split_file.path, error)


def _warm_up(runner: Runner, holdout: np.ndarray, max_batch_size: int) -> None:
    """Run the sizes the server will see, so first requests pay no allocation or JIT cost."""
    for size in sorted({1, min(8, max_batch_size), max_batch_size}):
        rows = np.resize(holdout, (size, holdout.shape[1])).astype(np.float32)
        for _ in range(3):
            runner.predict(rows)
